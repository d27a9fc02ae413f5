"""The inner loop's advantage along a scaling sweep (``study.scaling``): per budget, the final val-loss difference of
Connectome and each baseline paired by seed, and the effective data multiplier, each as a mean over seeds with a
95% t-interval.

Rows without a value in the budget column (NoConnectome: no outer loop made it) serve as the baseline of every
budget.
"""
from __future__ import annotations

from typing import Iterator, NamedTuple, Sequence

import pandas as pd

from ..stats import mean_ci
from ..study.results import final_rows
from ..study.scaling import BUDGET, INNER_TOKENS
from .efficiency import effective_data_multiplier, require_columns

COMPARISONS = (("Connectome", "NoConnectome"), ("Connectome", "RandomConnectome"))
_CURVE_COLUMNS = ["condition", "seed", "step", "tokens"]


class Paired(NamedTuple):
    """One value per (budget, comparison, seed), and its mean with a t-interval over seeds per budget."""

    per_seed: pd.DataFrame
    summary: pd.DataFrame


def along(curves: pd.DataFrame, by: str, fixed: float) -> pd.DataFrame:
    """The rows of one sweep: along ``by`` (``budget`` or ``inner_tokens``) with the other column at ``fixed``.

    The outer sweep is ``along(curves, "budget", <the preset's inner tokens>)``, the inner-data sweep
    ``along(curves, "inner_tokens", <the outer budget it grew from>)``; NoConnectome's rows (no budget) belong to
    every outer budget.
    """
    if by not in (BUDGET, INNER_TOKENS):
        raise ValueError(f"a sweep runs along {BUDGET!r} or {INNER_TOKENS!r}, not {by!r}")
    require_columns(curves, [BUDGET, INNER_TOKENS], "scaling curves")
    other = INNER_TOKENS if by == BUDGET else BUDGET
    keep = curves[other] == fixed
    if other == BUDGET:
        keep |= curves[BUDGET].isna()
    return curves[keep].reset_index(drop=True)


def budget_groups(curves: pd.DataFrame, by: str) -> Iterator[tuple[float, pd.DataFrame]]:
    """(value, rows) per value of ``by``: the rows with that value and the rows with none (shared baselines)."""
    require_columns(curves, [by], "scaling curves")
    shared = curves[curves[by].isna()]
    for value in sorted(curves[by].dropna().unique()):
        yield value, pd.concat([curves[curves[by] == value], shared], ignore_index=True)


def paired_final_differences(curves: pd.DataFrame, condition: str, baseline: str, metric: str = "val_loss"
                             ) -> pd.DataFrame:
    """Per seed present in both: ``metric`` at each run's last logged step for ``condition`` and ``baseline``, and
    ``difference`` = condition - baseline. Columns seed, condition, baseline, condition_value, baseline_value,
    difference; empty when no seed has both."""
    require_columns(curves, _CURVE_COLUMNS + [metric], "curves")
    final = final_rows(curves[curves["condition"].isin([condition, baseline])])
    wide = final.pivot_table(index="seed", columns="condition", values=metric, aggfunc="last")
    columns = ["seed", "condition", "baseline", "condition_value", "baseline_value", "difference"]
    if condition not in wide.columns or baseline not in wide.columns:
        return pd.DataFrame(columns=columns)
    wide = wide.dropna(subset=[condition, baseline])
    return pd.DataFrame({
        "seed": wide.index.astype(int), "condition": condition, "baseline": baseline,
        "condition_value": wide[condition].to_numpy(), "baseline_value": wide[baseline].to_numpy(),
        "difference": (wide[condition] - wide[baseline]).to_numpy(),
    })[columns].reset_index(drop=True)


def final_differences(curves: pd.DataFrame, by: str = BUDGET, comparisons: Sequence[tuple[str, str]] = COMPARISONS,
                      metric: str = "val_loss", level: float = 0.95) -> Paired:
    """``paired_final_differences`` of each comparison at each value of ``by``; summary: ``by``, condition, baseline,
    mean, se, n (paired seeds), low, high (the ``level`` t-interval). A budget where a comparison has no paired seed
    is left out of it."""
    frames = [paired_final_differences(rows, condition, baseline, metric).assign(**{by: value})
              for value, rows in budget_groups(curves, by) for condition, baseline in comparisons]
    frames = [f for f in frames if not f.empty]
    if not frames:
        raise ValueError(f"no budget of {by!r} has a seed of both conditions of any of {list(comparisons)}")
    per_seed = pd.concat(frames, ignore_index=True)
    keys = [by, "condition", "baseline"]
    per_seed = per_seed[keys + [c for c in per_seed.columns if c not in keys]]
    return Paired(per_seed, _summary(per_seed, keys, "difference", level))


def multipliers(curves: pd.DataFrame, by: str = BUDGET, comparisons: Sequence[tuple[str, str]] = COMPARISONS,
                fraction: float = 0.25, metric: str = "val_loss", level: float = 0.95) -> Paired:
    """The effective data multiplier (``efficiency.effective_data_multiplier``) of each comparison at each value of
    ``by``, at the milestone ``fraction`` x the condition's last logged tokens there (the baseline has 1 / fraction
    times those tokens to catch up; beyond that the value is a lower bound). Summary: ``by``, condition, baseline,
    milestone, mean, se, n, low, high, lower_bound (any seed a lower bound)."""
    if not 0 < fraction <= 1:
        raise ValueError(f"the multiplier's milestone fraction must lie in (0, 1], got {fraction!r}")
    frames = []
    for value, rows in budget_groups(curves, by):
        for condition, baseline in comparisons:
            present = set(rows["condition"])
            if condition not in present or baseline not in present:
                continue
            milestone = fraction * float(rows.loc[rows["condition"] == condition, "tokens"].max())
            result = effective_data_multiplier(rows, condition, baseline, [milestone], metric)
            frames.append(result.per_seed.assign(**{by: value}))
    if not frames:
        raise ValueError(f"no budget of {by!r} has both conditions of any of {list(comparisons)}")
    per_seed = pd.concat(frames, ignore_index=True)
    keys = [by, "condition", "baseline", "milestone"]
    per_seed = per_seed[keys + [c for c in per_seed.columns if c not in keys]]
    summary = _summary(per_seed, keys, "multiplier", level)
    flags = per_seed.groupby(keys, sort=True)["lower_bound"].any().rename("lower_bound").reset_index()
    return Paired(per_seed, summary.merge(flags, on=keys))


def _summary(per_seed: pd.DataFrame, keys: list[str], value: str, level: float) -> pd.DataFrame:
    """Mean, se, n and t-interval of ``value`` per ``keys`` over the seeds that have one."""
    return mean_ci(per_seed.dropna(subset=[value]), keys, value, level)[keys + ["mean", "se", "n", "low", "high"]]
