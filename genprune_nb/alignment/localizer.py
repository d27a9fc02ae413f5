"""Language localizer (DESIGN.md §5, after AlKhamissi et al. 2025): the model's units that prefer sentences.

Every block's last-token output is read for the 240 sentences and 240 non-word lists of the Fedorenko et al. (2010)
localizer; each unit gets a Welch t statistic (sentences > non-words); the top k% units across all blocks form the
language mask, and encoding then uses only those units.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import xarray as xr
from scipy import stats
from torch import nn

from ..data import catalog
from ..model.features import sentence_features
from ..stats import mean_se
from ..study.results import final_rows, select
from .encoding import encode, summary_rows

TASK = "brain_encoding_localized"
LANGLOC_CONDITIONS = {"S": "sentence", "N": "nonwords"}
_WORDS = [f"stim{i}" for i in range(2, 14)]  # 12 words per trial; stim1 = trial number, stim14 = condition


def langloc_stimuli(folder: str | Path | None = None) -> pd.DataFrame:
    """The localizer trials: columns ``stimulus`` (lower-case words joined by spaces), ``condition``
    (``sentence`` / ``nonwords``), ``file``, ``trial``; 240 of each condition. ``folder`` overrides the catalog."""
    paths = (sorted(Path(folder).glob("langloc_fmri_run*_stim_set*.csv")) if folder
             else catalog.files("langloc_fedorenko2010", "langloc_fmri_run*_stim_set*.csv"))
    if not paths:
        raise FileNotFoundError(f"no langloc_fmri_run*_stim_set*.csv files in {folder}")
    tables = []
    for path in paths:
        raw = pd.read_csv(path)
        missing = [c for c in ["stim1", *_WORDS, "stim14"] if c not in raw.columns]
        if missing:
            raise ValueError(f"{path}: missing column(s) {missing}")
        unknown = sorted(set(raw["stim14"]) - set(LANGLOC_CONDITIONS))
        if unknown:
            raise ValueError(f"{path}: unknown condition(s) {unknown} in column stim14; expected S or N")
        tables.append(pd.DataFrame({
            "stimulus": raw[_WORDS].astype(str).apply(lambda row: " ".join(row).lower(), axis=1),
            "condition": raw["stim14"].map(LANGLOC_CONDITIONS),
            "file": path.name,
            "trial": raw["stim1"],
        }))
    return pd.concat(tables, ignore_index=True)


def welch_t(sentences: xr.DataArray, nonwords: xr.DataArray) -> xr.DataArray:
    """Per-unit Welch t statistic of sentences > non-words (both [presentation, neuroid]); constant units get -inf."""
    t = stats.ttest_ind(sentences.values, nonwords.values, axis=0, equal_var=False).statistic
    return xr.DataArray(np.nan_to_num(t, nan=-np.inf), dims="neuroid",
                        coords={k: v for k, v in sentences.coords.items() if v.dims == ("neuroid",)})


def language_mask(t: xr.DataArray, percent: float) -> xr.DataArray:
    """The ``percent``% units with the largest t (at least one) across all layers, as a boolean mask over neuroid."""
    if not 0 < percent <= 100:
        raise ValueError(f"percent must be in (0, 100], got {percent}")
    k = max(1, round(percent / 100 * t.sizes["neuroid"]))
    mask = np.zeros(t.sizes["neuroid"], dtype=bool)
    mask[np.argsort(-t.values, kind="stable")[:k]] = True
    return t.copy(data=mask).assign_attrs(percent=percent)


def localizer_t(model: nn.Module, stimuli: pd.DataFrame | None = None, *, batch_size: int = 64) -> xr.DataArray:
    """Welch t of every block output's units (layers 1..n_layer, last token) on the localizer stimuli."""
    stimuli = langloc_stimuli() if stimuli is None else stimuli
    layers = range(1, model.config.n_layer + 1)
    feats = {c: sentence_features(model, list(stimuli.loc[stimuli["condition"] == c, "stimulus"]), layers=layers,
                                  batch_size=batch_size)
             for c in LANGLOC_CONDITIONS.values()}
    return welch_t(feats["sentence"], feats["nonwords"])


def localized_encoding_rows(
    model: nn.Module,
    neural: xr.DataArray,
    *,
    percents: Sequence[float] = (1, 10),
    stimuli: pd.DataFrame | None = None,
    batch_size: int = 64,
    **encode_kw: Any,
) -> list[dict[str, Any]]:
    """Results-table rows of encoding from the localized units (task :data:`TASK`): per mask, the
    rows of :func:`~genprune_nb.alignment.encoding.summary_rows` with key ``units`` (``"top 1%"``, ...).
    ``encode_kw`` go to :func:`~genprune_nb.alignment.encoding.encode`."""
    t = localizer_t(model, stimuli, batch_size=batch_size)
    X = sentence_features(model, list(neural["stimulus"].values), layers=range(1, model.config.n_layer + 1),
                          batch_size=batch_size)
    rows = []
    for percent in percents:
        mask = language_mask(t, percent)
        r = encode(X.isel(neuroid=mask.values), neural, by_layer=False, **encode_kw)
        rows += summary_rows(r, neural.sizes["presentation"], units=f"top {percent:g}%")
    return rows


def layer_fractions(mask: xr.DataArray) -> pd.Series:
    """The share of each layer's units inside a :func:`language_mask`: where the model's language units sit."""
    return mask.groupby("layer").mean().to_series().rename(f"fraction of units in the top {mask.attrs['percent']:g}%")


def final_scores(results: pd.DataFrame, task: str = TASK, metric: str = "r") -> pd.DataFrame:
    """Mean, SE and number of seeds of each seed's final localized-units ``metric``, per mask (``units``) and
    condition."""
    return mean_se(final_rows(select(results, task, metric, breakdown="units")), ["units", "condition"], "value")
