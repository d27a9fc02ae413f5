"""Sentence-level neural responses as an xarray DataArray (presentation x neuroid), with noise ceilings.

Any dataset of sentences with one or more response columns plugs in through :func:`sentence_dataset`;
:func:`tuckute2024` reads the Tuckute et al. (2024) language-network responses (DESIGN.md §5).
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import xarray as xr

from ..data import catalog
from ..errors import GenpruneError

TUCKUTE_SETS = {"baseline": "B", "drive": "D", "suppress": "S"}
TUCKUTE_RESPONSES = "tuckute_averaged.csv"
TUCKUTE_CEILINGS = "NC-allroi-data_lang_extract.csv"


class SentenceTableError(GenpruneError, ValueError):
    """A table of sentences and responses lacks a column or holds a value that cannot be used."""


def _cell(value: object) -> str:
    return repr(value.item() if isinstance(value, np.generic) else value)


def sentence_dataset(
    table: pd.DataFrame,
    *,
    responses: str | Sequence[str],
    sentence: str = "sentence",
    stimulus_id: str | None = None,
    coords: Sequence[str] = (),
    noise_ceiling: float | Mapping[str, float] | None = None,
    normalize_whitespace: bool = False,
    source: str = "table",
) -> xr.DataArray:
    """Responses [presentation, neuroid] from a table with one row per sentence, in the table's order.

    ``responses`` name the response columns (one neuroid each; a string is one column name); ``stimulus_id`` names
    the id column (default: the sentence text is the id); ``coords`` are further per-sentence columns to keep.
    ``noise_ceiling`` is one value for every neuroid or one per response column (missing: NaN). With
    ``normalize_whitespace`` (off by default: the text is used as given) every run of whitespace in a sentence
    becomes one space and the ends are stripped, before the duplicate check. ``source`` names the table in errors.
    Refused, naming column and row: a missing sentence, an empty one, the same sentence text twice, a repeated id,
    a response that is not a finite number.
    Coordinates: ``stimulus_id``, ``stimulus`` (+ ``coords``) on presentation; ``neuroid_id``, ``noise_ceiling``
    on neuroid.
    """
    responses = [responses] if isinstance(responses, str) else list(responses)
    id_col = stimulus_id or sentence
    needed = list(dict.fromkeys([sentence, id_col, *responses, *coords]))
    missing = [c for c in needed if c not in table.columns]
    if missing:
        raise SentenceTableError(f"{source}: missing column(s) {missing}; it has {list(table.columns)}")
    if not len(responses):
        raise SentenceTableError(f"{source}: no response columns given")
    if table.empty:
        raise SentenceTableError(f"{source}: no rows")
    text = table[sentence]
    for row, value in enumerate(text):
        if pd.isna(value) or not str(value).strip():
            raise SentenceTableError(f"{source}: column {sentence!r}, row {row}: the sentence is "
                                     f"{'missing' if pd.isna(value) else _cell(value)}")
    text = text.astype(str)
    if normalize_whitespace:
        text = text.str.split().str.join(" ")
    dup = table[id_col][table[id_col].duplicated()].unique()
    if len(dup):
        raise SentenceTableError(f"{source}: {len(dup)} duplicate sentence id(s) in column {id_col!r}, e.g. "
                                 f"{dup[:3].tolist()}")
    repeated = np.flatnonzero(text.duplicated().to_numpy())
    if len(repeated):
        row = int(repeated[0])
        first = int(np.flatnonzero((text == text.iloc[row]).to_numpy())[0])
        raise SentenceTableError(f"{source}: column {sentence!r}, row {row}: the sentence {text.iloc[row]!r} "
                                 f"repeats row {first}")
    columns = []
    for column in responses:
        values = pd.to_numeric(table[column], errors="coerce").to_numpy(dtype=np.float64)
        bad = np.flatnonzero(~np.isfinite(values))
        if len(bad):
            row = int(bad[0])
            raise SentenceTableError(f"{source}: column {column!r}, row {row} (id {_cell(table[id_col].iloc[row])}): "
                                     f"response {_cell(table[column].iloc[row])} is not a finite number")
        columns.append(values)
    if isinstance(noise_ceiling, Mapping):
        ceilings = [noise_ceiling.get(c, np.nan) for c in responses]
    else:
        ceilings = [np.nan if noise_ceiling is None else noise_ceiling] * len(responses)
    return xr.DataArray(
        np.column_stack(columns),
        dims=("presentation", "neuroid"),
        coords={
            "stimulus_id": ("presentation", text.to_numpy(dtype=object) if stimulus_id is None
                            else table[id_col].to_numpy()),
            "stimulus": ("presentation", text.to_numpy(dtype=object)),
            **{c: ("presentation", table[c].to_numpy()) for c in coords},
            "neuroid_id": ("neuroid", np.asarray(responses, dtype=object)),
            "noise_ceiling": ("neuroid", np.asarray(ceilings, dtype=np.float64)),
        },
        attrs={"source": source},
    )


def tuckute2024(
    sets: Sequence[str] = ("baseline",),
    *,
    ceiling_roi: str = "lang_LH_netw",
    path: str | Path | None = None,
    ceiling_path: str | Path | None = None,
    limit: int | None = None,
) -> xr.DataArray:
    """Tuckute et al. (2024) per-sentence language-network responses; by default the 1,000 baseline sentences.

    ``sets``: any of ``baseline``, ``drive``, ``suppress``. The response (one neuroid, ``language_network``) is the
    z-scored BOLD response averaged over the five left-hemisphere language fROIs, then over participants (see the
    data's SOURCE.md). ``noise_ceiling`` is the split-half ceiling of ``ceiling_roi`` (``lang_LH_netw``: 0.559),
    estimated on the baseline set. ``path`` / ``ceiling_path`` override the catalog's files. ``limit`` keeps the
    first sentences only, for a quick run (None or 0: all).
    """
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be a number of sentences >= 0 (0: all), got {limit}")
    unknown = [s for s in sets if s not in TUCKUTE_SETS]
    if unknown or not sets:
        raise ValueError(f"unknown Tuckute 2024 set(s) {unknown or list(sets)}; choose from {list(TUCKUTE_SETS)}")
    path = Path(path) if path else catalog.locate("tuckute2024_devarda", TUCKUTE_RESPONSES)
    ceiling_path = Path(ceiling_path) if ceiling_path else catalog.locate("tuckute2024_devarda", TUCKUTE_CEILINGS)
    raw = pd.read_csv(path)
    if "cond" not in raw.columns:
        raise ValueError(f"{path}: missing column(s) ['cond']; it has {list(raw.columns)}")
    codes = {code: name for name, code in TUCKUTE_SETS.items()}
    table = raw[raw["cond"].isin([TUCKUTE_SETS[s] for s in sets])].assign(set=lambda d: d["cond"].map(codes))
    ceilings = pd.read_csv(ceiling_path, index_col="roi")
    if ceiling_roi not in ceilings.index:
        raise ValueError(f"{ceiling_path}: no noise ceiling for roi {ceiling_roi!r}; it has {list(ceilings.index)}")
    data = sentence_dataset(table, responses=["EffectSize"], sentence="Sentence", coords=["set"],
                            noise_ceiling=float(ceilings.loc[ceiling_roi, "nc"]), source=str(path))
    data = data.assign_coords(neuroid_id=("neuroid", np.array(["language_network"], dtype=object)))
    return data.isel(presentation=slice(0, limit)) if limit else data
