"""Data efficiency: validation loss and benchmarks against tokens seen, and the effective data multiplier.

The effective data multiplier at a milestone of m tokens is the number of tokens the baseline (NoConnectome)
needs to reach the loss the Connectome run has after m tokens, divided by m: a multiplier of 2 means the
connectome is worth as much as doubling the inner-loop data at that point. Where the baseline never reaches that
loss within its run, the multiplier is reported as a lower bound (the baseline's last logged tokens / m), never
extrapolated.
"""
from __future__ import annotations

from fractions import Fraction
from typing import Any, Iterable, NamedTuple, Sequence

import numpy as np
import pandas as pd

from ..config import PAPER_PRESET, Preset, get_preset
from ..stats import mean_se
from ..study import curves as study_curves
from ..study.conditions import BASELINE, condition_order
from ..study.generations import parse_condition
from ..study.layout import StudyLayout
from ..study.results import COLUMNS as RESULT_COLUMNS
from ..study.results import final_rows, select

# The paper's inner loop (2,000 steps x 524,288 tokens = 1,048,576,000) and its token milestones, from its preset.
_PAPER = get_preset(PAPER_PRESET)
PAPER_INNER_TOKENS = _PAPER.inner_train.steps * _PAPER.inner_train.tokens_per_step
PAPER_MILESTONES = _PAPER.inner.token_milestones


class Multiplier(NamedTuple):
    """The effective data multiplier: one row per (milestone, seed), and its mean ± SE over seeds."""

    per_seed: pd.DataFrame
    summary: pd.DataFrame


# --- milestones -------------------------------------------------------------------------------------------------

def scaled_milestones(total_tokens: int) -> tuple[int, ...]:
    """The paper's milestones scaled by ``total_tokens / PAPER_INNER_TOKENS``, rounded to whole tokens
    (half to even), deduplicated, sorted and kept within (0, total_tokens]."""
    total = int(total_tokens)
    if total <= 0:
        raise ValueError(f"total_tokens must be positive, got {total_tokens!r}")
    scaled = {round(Fraction(int(m)) * total / PAPER_INNER_TOKENS) for m in PAPER_MILESTONES}
    return tuple(sorted(m for m in scaled if 0 < m <= total))


def milestones(preset: Preset) -> tuple[int, ...]:
    """Token milestones of a preset's inner loop: ``preset.inner.token_milestones`` when set, else the paper's
    milestones scaled to this preset's inner tokens (``inner_train.steps x tokens_per_step``); within (0, total]."""
    total = preset.inner_train.steps * preset.inner_train.tokens_per_step
    if preset.inner.token_milestones:
        return tuple(sorted({int(m) for m in preset.inner.token_milestones if 0 < m <= total}))
    return scaled_milestones(total)


# --- the curves compared -----------------------------------------------------------------------------------------

def inner_curves_of(study: StudyLayout, conditions: Sequence[str], metric: str = "val_loss") -> pd.DataFrame:
    """The inner loop's ``metric`` curves (``curves.inner_curves``) of ``conditions`` only, e.g. the three
    conditions beside the ``Connectome[criterion]`` runs; a condition without any logged run is refused by name."""
    curves = study_curves.inner_curves(study, metric)
    missing = [c for c in conditions if c not in set(curves["condition"])]
    if missing:
        raise ValueError(f"no inner-loop {metric} curves of {missing} under {study.root / 'inner'}: run the inner "
                         "loop of those conditions first")
    return curves[curves["condition"].isin(list(conditions))].reset_index(drop=True)


def final_summary(curves: pd.DataFrame, metric: str = "val_loss") -> pd.DataFrame:
    """Each condition's ``metric`` at its seeds' last logged step, mean ± SE over seeds, best (lowest) first."""
    require_columns(curves, ["condition", "seed", "step", metric], "curves")
    return mean_se(final_rows(curves), ["condition"], metric).sort_values("mean", kind="stable").reset_index(drop=True)


# --- one curve --------------------------------------------------------------------------------------------------

def _clean_curve(tokens, values) -> tuple[np.ndarray, np.ndarray]:
    """Finite points sorted by tokens; a repeated token count keeps its last logged value (a resumed run)."""
    t = np.asarray(tokens, dtype=float)
    v = np.asarray(values, dtype=float)
    if t.shape != v.shape or t.ndim != 1:
        raise ValueError(f"tokens and values must be 1-D of equal length, got shapes {t.shape} and {v.shape}")
    keep = np.isfinite(t) & np.isfinite(v)
    t, v = t[keep], v[keep]
    order = np.argsort(t, kind="stable")
    t, v = t[order], v[order]
    last = np.r_[t[1:] != t[:-1], True] if len(t) else np.zeros(0, dtype=bool)
    return t[last], v[last]


def curve_at(tokens, values, at):
    """``values`` linearly interpolated at ``at`` tokens (scalar or array); NaN outside the logged range."""
    t, v = _clean_curve(tokens, values)
    if not len(t):
        out = np.full(np.shape(at), np.nan)
    else:
        out = np.interp(np.asarray(at, dtype=float), t, v, left=np.nan, right=np.nan)
    return float(out) if np.ndim(out) == 0 else out


def tokens_to_reach(tokens, losses, target: float) -> float:
    """Tokens at which a loss curve first reaches ``target`` (loss <= target): the first crossing, linearly
    interpolated between the two logged points around it; NaN when the curve never gets there (no extrapolation)."""
    t, v = _clean_curve(tokens, losses)
    hits = np.flatnonzero(v <= target)
    if not len(hits):
        return float("nan")
    i = int(hits[0])
    if i == 0:
        return float(t[0])
    t0, t1, v0, v1 = t[i - 1], t[i], v[i - 1], v[i]  # v0 > target >= v1
    return float(t0 + (v0 - target) / (v0 - v1) * (t1 - t0))


# --- the multiplier ---------------------------------------------------------------------------------------------

def require_columns(df: pd.DataFrame, columns: Iterable[str], what: str) -> None:
    """Refuse ``df`` (called ``what`` in the message) unless it has every one of ``columns``."""
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{what} lacks column(s) {missing}; it has {list(df.columns)}")


def _mean_curve(curves: pd.DataFrame, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Mean over seeds on the union of their token grids, where every seed's curve is defined."""
    seeds = [(t, v) for _, g in curves.groupby("seed", sort=True) for t, v in [_clean_curve(g["tokens"], g[metric])]
             if len(t)]
    if not seeds:
        return np.zeros(0), np.zeros(0)
    grid = np.unique(np.concatenate([t for t, _ in seeds]))
    stacked = np.vstack([np.interp(grid, t, v, left=np.nan, right=np.nan) for t, v in seeds])
    defined = np.isfinite(stacked).all(axis=0)
    return grid[defined], stacked[:, defined].mean(axis=0)


def effective_data_multiplier(
    curves: pd.DataFrame,
    condition: str = "Connectome",
    baseline: str = BASELINE,
    milestones: Sequence[float] | None = None,
    metric: str = "val_loss",
    *,
    higher_is_better: bool = False,
) -> Multiplier:
    """Tokens the ``baseline`` needs to match ``condition`` at each milestone, divided by the milestone.

    ``curves``: a tidy frame with columns condition, seed, tokens and ``metric`` (``curves.inner_curves``).
    ``milestones`` defaults to the paper's, scaled to the condition's longest run (``scaled_milestones``).
    Per seed of ``condition``: its ``metric`` at milestone m is interpolated on its own curve (NaN, and a NaN
    multiplier, beyond its run); the target is then looked up on the curve of the baseline seed with the same seed
    id (``pairing`` "seed") or, when the baseline has no such seed, on the baseline's mean curve over seeds
    (``pairing`` "mean"). A baseline that never reaches the target gives ``lower_bound`` True and multiplier =
    baseline's last tokens / m. ``higher_is_better`` turns "reach" into metric >= target (e.g. an accuracy).

    Returns ``Multiplier(per_seed, summary)``: per_seed has condition, baseline, milestone, seed, pairing,
    ``metric`` (the condition's value at m), baseline_tokens, multiplier, lower_bound; summary has condition,
    baseline, milestone, mean, se, n (seeds with a value), lower_bound (any seed a lower bound: then the mean is a
    lower bound too) and n_lower_bound.
    """
    require_columns(curves, ["condition", "seed", "tokens", metric], "curves")
    present = set(curves["condition"])
    missing = [c for c in (condition, baseline) if c not in present]
    if missing:
        raise ValueError(f"curves have no rows for condition(s) {missing}; present: {sorted(present, key=str)}")
    ours = curves[curves["condition"] == condition]
    theirs = curves[curves["condition"] == baseline]
    sign = -1.0 if higher_is_better else 1.0  # tokens_to_reach works on a quantity that decreases with training
    if milestones is None:
        milestones = scaled_milestones(int(ours["tokens"].max()))
    points = sorted({float(m) for m in milestones})
    if not points or points[0] <= 0:
        raise ValueError(f"milestones must be positive token counts, got {list(milestones)}")

    baseline_seeds = {s: _clean_curve(g["tokens"], g[metric]) for s, g in theirs.groupby("seed", sort=True)}
    mean_baseline = _mean_curve(theirs, metric) if set(ours["seed"]) - set(baseline_seeds) else None
    rows: list[dict[str, Any]] = []
    for seed, run in ours.groupby("seed", sort=True):
        pairing, (bt, bv) = ("seed", baseline_seeds[seed]) if seed in baseline_seeds else ("mean", mean_baseline)
        values = np.atleast_1d(curve_at(run["tokens"], run[metric], points))
        for m, value in zip(points, values):
            reached = tokens_to_reach(bt, sign * bv, sign * value) if np.isfinite(value) else np.nan
            bound = bool(np.isfinite(value) and np.isnan(reached) and len(bt))
            needed = float(bt[-1]) if bound else reached
            rows.append({"condition": condition, "baseline": baseline, "milestone": m, "seed": seed,
                         "pairing": pairing, metric: float(value), "baseline_tokens": needed,
                         "multiplier": needed / m, "lower_bound": bound})
    per_seed = pd.DataFrame(rows, columns=["condition", "baseline", "milestone", "seed", "pairing", metric,
                                           "baseline_tokens", "multiplier", "lower_bound"])
    return Multiplier(per_seed, summarize_multiplier(per_seed))


def effective_data_multipliers(curves: pd.DataFrame, conditions: Sequence[str] | None = None, **kwargs
                               ) -> pd.DataFrame:
    """The summaries of :func:`effective_data_multiplier` for several conditions, one tidy frame; ``conditions``
    default to every connectome-grown run in ``curves`` (Connectome and each ``Connectome[criterion]``)."""
    if conditions is None:
        require_columns(curves, ["condition"], "curves")
        conditions = [c for c in condition_order(curves["condition"]) if parse_condition(c)[0] == "Connectome"]
    return pd.concat([effective_data_multiplier(curves, condition=c, **kwargs).summary for c in conditions],
                     ignore_index=True)


def summarize_multiplier(per_seed: pd.DataFrame) -> pd.DataFrame:
    """Mean ± SE over seeds of the multiplier per (condition, baseline, milestone), with any lower bound flagged."""
    require_columns(per_seed, ["milestone", "multiplier", "lower_bound"], "per-seed multipliers")
    by = [c for c in ("condition", "baseline") if c in per_seed.columns] + ["milestone"]
    out = mean_se(per_seed, by, "multiplier")
    flags = per_seed.groupby(by, sort=True)["lower_bound"].agg(lower_bound="any", n_lower_bound="sum").reset_index()
    out = out.merge(flags, on=by)
    out["lower_bound"] = out["lower_bound"].astype(bool)
    out["n_lower_bound"] = out["n_lower_bound"].astype(int)
    return out[by + ["mean", "se", "n", "lower_bound", "n_lower_bound"]]


# --- benchmarks vs tokens ---------------------------------------------------------------------------------------

def metric_vs_tokens(results: pd.DataFrame, task: str, metric: str, *, conditions: Sequence[str] | None = None,
                     **keys: Any) -> pd.DataFrame:
    """One benchmark metric per condition, seed and tokens seen, from the tidy results table (e.g. BLiMP ``acc``).

    ``task`` is a stored label (``"blimp@50"``) or a task name that matches exactly one stored label. Only overall
    rows are kept (every extra key such as paradigm, subject or layer empty) unless ``keys`` selects one, e.g.
    ``paradigm="anaphor_gender_agreement"``; ``conditions`` (default: all) keeps those conditions' rows.
    Columns: condition, seed, step, tokens, task, metric, value, n.
    """
    require_columns(results, RESULT_COLUMNS, "results table")
    df = select(results, task, metric, **keys)[RESULT_COLUMNS]
    return df if conditions is None else df[df["condition"].isin(list(conditions))].reset_index(drop=True)


# --- figures ----------------------------------------------------------------------------------------------------
