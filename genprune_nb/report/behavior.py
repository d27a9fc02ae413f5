"""Surprisal against reading time, one panel per model (Figure 1C itself is ``plots.condition_curves``)."""
from __future__ import annotations

from typing import Mapping

import matplotlib.pyplot as plt
import numpy as np
import xarray as xr
from matplotlib.figure import Figure

from ..alignment.behavior import pearson_r


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
