"""The bandwidth figures (notebook 09): what each condition gains against the bits it receives, and the training
frontier (val loss against inner-loop compute); the numbers come from ``analysis.bandwidth``."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ..analysis.efficiency import require_columns
from ..study.conditions import BASELINE
from .plots import condition_palette


def _error(part: pd.DataFrame, value: str) -> np.ndarray:
    """Error-bar extents of ``value`` from its ``_low`` / ``_high`` columns (0 where the interval is undefined)."""
    low, high = part[f"{value}_low"].to_numpy(float), part[f"{value}_high"].to_numpy(float)
    mean = part[value].to_numpy(float)
    return np.nan_to_num(np.vstack([mean - low, high - mean]))


def plot_bandwidth(summary: pd.DataFrame, *, baseline: str = BASELINE,
                   title: str = "What a wider channel from the outer loop buys") -> plt.Figure:
    """Two panels against bits transmitted (log x): final inner val loss and the effective data multiplier, each
    condition's mean over seeds with its 95% t-interval (``analysis.bandwidth.bandwidth_summary``). The baseline
    receives 0 bits: a horizontal line with its interval. A hollow marker needs the teacher at train time; an upward
    triangle is a lower bound (the baseline never caught up)."""
    require_columns(summary, ["condition", "bits", "needs_teacher", "val_loss", "val_loss_low", "val_loss_high",
                              "multiplier", "multiplier_low", "multiplier_high", "lower_bound", "n"], "summary")
    colors = condition_palette(summary["condition"])
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    base = summary[summary["condition"] == baseline]
    if len(base):
        row = base.iloc[0]
        left.axhline(row["val_loss"], color=colors[baseline], ls="--", lw=1, label=f"{baseline} (0 bits)")
        if np.isfinite(row["val_loss_low"]):
            left.axhspan(row["val_loss_low"], row["val_loss_high"], color=colors[baseline], alpha=0.15, lw=0)
    right.axhline(1.0, color="grey", ls="--", lw=1, label=f"1× ({baseline})")
    sent = summary[(summary["condition"] != baseline) & (summary["bits"] > 0)]
    for i, row in sent.iterrows():
        part, color = sent.loc[[i]], colors[row["condition"]]
        face = "white" if row["needs_teacher"] else color
        left.errorbar(part["bits"], part["val_loss"], yerr=_error(part, "val_loss"), fmt="o", color=color,
                      mfc=face, capsize=3, label=row["condition"])
        right.errorbar(part["bits"], part["multiplier"], yerr=_error(part, "multiplier"), capsize=3, color=color,
                       mfc=face, fmt="^" if row["lower_bound"] else "o", markersize=8 if row["lower_bound"] else 6)
    for ax in (left, right):
        ax.set_xscale("log")
        ax.set_xlabel("bits transmitted by the outer loop")
    if sent["needs_teacher"].any():
        left.plot([], [], "o", color="grey", mfc="white", label="needs the teacher while training")
    if sent["lower_bound"].any():
        right.plot([], [], "^", color="grey", mfc="white", markersize=8, label="lower bound (never caught up)")
    left.set(ylabel="final inner-loop val loss", title="Final val loss")
    right.set(ylabel=f"effective data multiplier vs {baseline}", title="Effective data multiplier")
    n = int(summary["n"].max())
    left.legend(title=f"mean, 95% CI over {n} seeds", fontsize=8)
    right.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_frontier(frontier: pd.DataFrame, *, title: str = "The training frontier: val loss against inner-loop "
                  "compute") -> plt.Figure:
    """Mean val loss over seeds (band: 95% t-interval) against inner-loop FLOPs (log x), one line per condition
    (``analysis.bandwidth.frontier``); Distilled's FLOPs include its teacher's forwards."""
    require_columns(frontier, ["condition", "compute", "mean", "low", "high"], "frontier")
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for condition, color in condition_palette(frontier["condition"]).items():
        part = frontier[(frontier["condition"] == condition) & (frontier["compute"] > 0)].sort_values("compute")
        ax.plot(part["compute"], part["mean"], marker="o", ms=3, color=color, label=condition)
        ax.fill_between(part["compute"], part["low"], part["high"], color=color, alpha=0.15, lw=0)
    ax.set_xscale("log")
    ax.set(xlabel="inner-loop FLOPs (student training + teacher forwards)", ylabel="val loss", title=title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
