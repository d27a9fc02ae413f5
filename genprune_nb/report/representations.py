"""Figures of representational similarity: layer x layer CKA heatmaps and same-layer CKA lines (computed by
:mod:`genprune_nb.analysis.representations`)."""
from __future__ import annotations

from typing import Mapping

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
import xarray as xr


def _layer_labels(values) -> list[str]:
    return ["emb" if int(v) == 0 else str(int(v)) for v in values]


def plot_cka_heatmaps(
    matrices: Mapping[str, xr.DataArray],
    *,
    annotate: bool | None = None,
    xlabel: str = "layer of B",
    ylabel: str = "layer of A",
    cmap: str = "magma",
    panel_size: float = 3.6,
) -> plt.Figure:
    """One heatmap per entry of ``matrices`` ([layer_a, layer_b] CKA, e.g. from
    :func:`~genprune_nb.analysis.representations.layer_cka`), titled by its key.

    Colour scale 0..1 shared by all panels, layer 0 labelled "emb", layer 0 at the bottom left. ``annotate``
    writes the values in the cells (default: when no matrix has more than 8 layers); otherwise a colourbar.
    """
    if not matrices:
        raise ValueError("plot_cka_heatmaps needs at least one matrix")
    for title, m in matrices.items():
        if m.dims != ("layer_a", "layer_b"):
            raise ValueError(f"matrix {title!r} must have dims ('layer_a', 'layer_b'), got {m.dims}")
    if annotate is None:
        annotate = max(max(m.shape) for m in matrices.values()) <= 8
    n = len(matrices)
    fig, axes = plt.subplots(1, n, figsize=(panel_size * n + (0 if annotate else 0.8), panel_size), squeeze=False,
                             constrained_layout=True)
    image = None
    for ax, (title, m) in zip(axes[0], matrices.items()):
        la, lb = m["layer_a"].values, m["layer_b"].values
        image = ax.imshow(m.values, origin="lower", vmin=0.0, vmax=1.0, cmap=cmap, aspect="equal")
        ax.set_xticks(range(len(lb)), _layer_labels(lb), fontsize=7, rotation=90 if len(lb) > 8 else 0)
        ax.set_yticks(range(len(la)), _layer_labels(la), fontsize=7)
        ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
        if annotate:
            for i in range(len(la)):
                for j in range(len(lb)):
                    v = float(m.values[i, j])
                    ax.text(j, i, f"{v:.2f}".replace("-0.00", "0.00"), ha="center", va="center", fontsize=7,
                            color="black" if v > 0.6 else "white")
    if not annotate:
        fig.colorbar(image, ax=axes[0].tolist(), shrink=0.8, label="linear CKA")
    return fig


def plot_cka_lines(df: pd.DataFrame, *, x: str = "layer", hue: str = "model", col: str | None = None,
                   title: str = "", xlabel: str | None = None) -> plt.Figure:
    """Same-layer CKA (e.g. from :func:`~genprune_nb.analysis.representations.diagonal_cka`) as lines of ``cka``
    vs ``x``, one per ``hue`` (0..1 scale)."""
    grid = sns.relplot(df, x=x, y="cka", hue=hue, col=col, kind="line", marker="o", height=3.4, aspect=1.2,
                       palette="viridis" if pd.api.types.is_numeric_dtype(df[hue]) else None)
    grid.set(ylim=(0, 1.02), xlabel=xlabel or x, ylabel="linear CKA")
    if x == "layer":
        for ax in grid.axes.flat:
            ax.xaxis.get_major_locator().set_params(integer=True)
    grid.figure.suptitle(title, y=1.03)
    return grid.figure
