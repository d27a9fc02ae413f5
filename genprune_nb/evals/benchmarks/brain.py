"""Brain encoding as benchmarks: ridge from model features to the language network's fMRI responses (Tuckute et
al. 2024, DESIGN.md §5), per layer with all units and with the model's localized language units."""
from __future__ import annotations

from typing import Callable

import xarray as xr

from ...alignment import encoding, localizer
from ...alignment.neural import tuckute2024
from ..registry import Benchmark, Evaluator, Settings, register

NOISE_CEILING = 0.559  # the language network's noise ceiling for the Tuckute 2024 sentences (paper: 0.56)
METRICS = ("r", "r_fold_se")
SIZES = {"n_sentences": "sentences"}


def sentences(s: Settings) -> xr.DataArray:
    """The fMRI responses, the first ``n_sentences`` sentences for a quick run."""
    return tuckute2024(limit=s.sizes.get("n_sentences"))


def _by_layer(s: Settings) -> Evaluator:
    neural = sentences(s)
    return lambda model: encoding.encoding_rows(model, neural)


def _localized(s: Settings) -> Evaluator:
    neural, stimuli = sentences(s), localizer.langloc_stimuli()
    return lambda model: localizer.localized_encoding_rows(model, neural, stimuli=stimuli)


def _register(name: str, description: str, prepare: Callable[[Settings], Evaluator]) -> None:
    register(Benchmark(name, description, prepare, METRICS, "r", ceiling=NOISE_CEILING, sizes=SIZES))


_register(encoding.TASK, "Tuckute 2024 sentences: cross-validated ridge r per layer (last token)", _by_layer)
_register(localizer.TASK, "Tuckute 2024 sentences: ridge r from the top 1% / 10% localized language units",
          _localized)
