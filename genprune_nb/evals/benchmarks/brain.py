"""Brain encoding as benchmarks: ridge from model features to the language network's fMRI responses (Tuckute et
al. 2024, DESIGN.md §5), per layer with all units and with the model's localized language units.

``Settings.options["protocol"]`` picks the encoding protocol (``alignment.encoding.PROTOCOLS``): ``authors`` by
default, since the paper's Figure 1D comes from the authors' code; ``standardized`` is stored under its own label
(``brain_encoding@protocol=standardized``), so rows of the two never mix.
"""
from __future__ import annotations

from typing import Callable

import xarray as xr

from ...alignment import encoding, localizer
from ...alignment.neural import tuckute2024
from ..registry import Benchmark, Evaluator, Settings, register

NOISE_CEILING = 0.559  # the language network's noise ceiling for the Tuckute 2024 sentences (paper: 0.56)
METRICS = ("r", "r_fold_se")
SIZES = {"n_sentences": "sentences"}
OPTIONS = {"protocol": encoding.DEFAULT_PROTOCOL}  # options that change the numbers -> their default


def sentences(s: Settings) -> xr.DataArray:
    """The fMRI responses, the first ``n_sentences`` sentences for a quick run."""
    return tuckute2024(limit=s.sizes.get("n_sentences"))


def protocol(s: Settings) -> str:
    """The encoding protocol of these settings (checked before any data is read)."""
    name = s.options.get("protocol", encoding.DEFAULT_PROTOCOL)
    encoding.get_protocol(name)
    return name


def _by_layer(s: Settings) -> Evaluator:
    chosen = protocol(s)
    neural = sentences(s)
    return lambda model: encoding.encoding_rows(model, neural, protocol=chosen)


def _localized(s: Settings) -> Evaluator:
    chosen = protocol(s)
    neural, stimuli = sentences(s), localizer.langloc_stimuli()
    return lambda model: localizer.localized_encoding_rows(model, neural, stimuli=stimuli, protocol=chosen)


def _register(name: str, description: str, prepare: Callable[[Settings], Evaluator]) -> None:
    register(Benchmark(name, description, prepare, METRICS, "r", ceiling=NOISE_CEILING, sizes=SIZES,
                       labelled_options=OPTIONS, revision=2))  # 2: the authors' protocol by default


_register(encoding.TASK, "Tuckute 2024 sentences: cross-validated ridge r per layer (last token)", _by_layer)
_register(localizer.TASK, "Tuckute 2024 sentences: ridge r from the top 1% / 10% localized language units",
          _localized)
