"""Figures of the reading-time analysis: a score over training (the paper's Figure 1C) and surprisal vs reading time."""
from __future__ import annotations

from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import xarray as xr
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from .behavior import pearson_r


def plot_over_training(
    summary: pd.DataFrame,
    *,
    ax: Axes | None = None,
    ylabel: str = "Pearson r (surprisal vs reading time)",
    order: Sequence[str] | None = None,
) -> Axes:
    """One line per condition, mean over seeds with a +/- SE band, against the training step.

    ``summary`` is :func:`genprune_nb.alignment.behavior.over_training`'s output.
    """
    ax = ax or plt.subplots(figsize=(5, 3.5))[1]
    for condition in order or list(pd.unique(summary["condition"])):
        d = summary[summary["condition"] == condition].sort_values("step")
        se = d["se"].fillna(0.0)
        line, = ax.plot(d["step"], d["mean"], marker="o", ms=3, label=condition)
        ax.fill_between(d["step"], d["mean"] - se, d["mean"] + se, color=line.get_color(), alpha=0.2, lw=0)
    ax.set_xlabel("training step")
    ax.set_ylabel(ylabel)
    ax.legend(frameon=False)
    return ax


def plot_surprisal_vs_rt(surprisals: Mapping[str, xr.DataArray], rts: xr.DataArray, *, bins: int = 20) -> Figure:
    """One panel per model: every word as a dot, and the mean reading time within surprisal quantile bins."""
    fig, axes = plt.subplots(1, len(surprisals), figsize=(4 * len(surprisals), 3.5), sharey=True, squeeze=False)
    for ax, (label, s) in zip(axes[0], surprisals.items()):
        x, y = s.values, rts.values
        ok = np.isfinite(x) & np.isfinite(y)
        ax.scatter(x[ok], y[ok], s=2, alpha=0.15, color="0.4", rasterized=True)
        edges = np.unique(np.quantile(x[ok], np.linspace(0, 1, bins + 1)))
        which = np.clip(np.searchsorted(edges, x[ok], side="right") - 1, 0, len(edges) - 2)
        centers = [x[ok][which == b].mean() for b in range(len(edges) - 1) if (which == b).any()]
        means = [y[ok][which == b].mean() for b in range(len(edges) - 1) if (which == b).any()]
        ax.plot(centers, means, color="C3", marker="o", ms=3, label="binned mean")
        ax.set_title(f"{label}  (r = {pearson_r(x, y):.3f})")
        ax.set_xlabel("surprisal (bits)")
    axes[0, 0].set_ylabel(f"mean reading time ({rts.attrs.get('units', 'ms')})")
    axes[0, 0].legend(frameon=False)
    fig.tight_layout()
    return fig
