"""The scaling figure: the inner loop's advantage against a sweep's budget (``analysis.scaling``)."""
from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd

from ..analysis.efficiency import require_columns
from ..study.scaling import BUDGET, INNER_TOKENS
from .plots import condition_palette, short_count

AXIS_LABELS = {BUDGET: "outer-loop tokens per generation", INNER_TOKENS: "inner-loop tokens per run"}


def _intervals(ax: plt.Axes, summary: pd.DataFrame, by: str, *, bounds: bool = False) -> None:
    """One series per comparison: means joined by a line, 95% intervals as error bars, colour of the baseline;
    with ``bounds`` a lower-bound mean is a hollow upward triangle."""
    for baseline, color in condition_palette(summary["baseline"]).items():
        part = summary[summary["baseline"] == baseline].sort_values(by)
        condition = part["condition"].iloc[0]
        label = f"{condition} vs {baseline}" if bounds else f"{condition} − {baseline}"
        ax.plot(part[by], part["mean"], color=color, lw=1, alpha=0.6)
        exact = part[~part["lower_bound"]] if bounds else part
        ax.errorbar(exact[by], exact["mean"], yerr=[exact["mean"] - exact["low"], exact["high"] - exact["mean"]],
                    fmt="o", color=color, capsize=3, label=label)
        if bounds and part["lower_bound"].any():
            bound = part[part["lower_bound"]]
            ax.errorbar(bound[by], bound["mean"], yerr=[bound["mean"] - bound["low"], bound["high"] - bound["mean"]],
                        fmt="^", color=color, capsize=3, markersize=8, mfc="white")


def _budget_axis(ax: plt.Axes, values, by: str) -> None:
    ax.set_xscale("log")
    ticks = sorted(set(values))
    ax.set_xticks(ticks, [short_count(t) for t in ticks], rotation=45)
    ax.minorticks_off()
    ax.set_xlabel(AXIS_LABELS.get(by, by))


def plot_scaling(differences: pd.DataFrame, multipliers: pd.DataFrame, by: str = BUDGET, *,
                 title: str = "The connectome's advantage against outer-loop compute") -> plt.Figure:
    """Two panels against ``by`` (log x): the final val-loss difference of each comparison (below 0: Connectome
    better) and the effective data multiplier (above 1: Connectome worth more inner data), each the mean over seeds
    with its 95% t-interval; ``differences`` and ``multipliers`` are the summaries of
    ``analysis.scaling.final_differences`` and ``multipliers``. Hollow triangles: lower bounds."""
    require_columns(differences, [by, "condition", "baseline", "mean", "low", "high", "n"], "differences")
    require_columns(multipliers, [by, "condition", "baseline", "milestone", "mean", "low", "high", "lower_bound"],
                    "multipliers")
    if differences.empty:
        raise ValueError("no final val-loss differences to plot")
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    _intervals(left, differences, by)
    left.axhline(0.0, color="grey", ls="--", lw=1, label="0 (no difference)")
    left.set(ylabel="final val loss difference", title="Final val loss, paired by seed")
    _budget_axis(left, differences[by], by)
    if not multipliers.empty:
        _intervals(right, multipliers, by, bounds=True)
        if multipliers["lower_bound"].any():
            right.plot([], [], "^", color="grey", mfc="white", markersize=8, label="lower bound (never caught up)")
        _budget_axis(right, multipliers[by], by)
    right.axhline(1.0, color="grey", ls="--", lw=1, label="1× (no advantage)")
    right.set(ylabel="effective data multiplier", title="Effective data multiplier")
    n = int(differences["n"].max())
    for ax in (left, right):
        ax.legend(title=f"mean, 95% CI over {n} seeds", fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig
