"""Figures of the outer and inner loops (matplotlib / seaborn); each returns its Figure, ``save`` writes a PNG."""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from ..stats import mean_se
from ..study.conditions import CONDITIONS, TRANSMISSION_CONDITIONS, condition_order

CONDITION_COLORS = dict(zip(CONDITIONS, ("#1b9e77", "#d95f02", "#7570b3")))  # the paper's three, in its order
# the transmission conditions (notebook 09): the next colours of the same Dark2 palette
TRANSMISSION_COLORS = dict(zip(TRANSMISSION_CONDITIONS, ("#e7298a", "#66a61e", "#e6ab02")))
PAPER_ENTROPY_BITS = 1.06  # the paper's appendix: bits per weight of its 124M connectome


def condition_palette(conditions) -> dict[str, object]:
    """A colour per condition: the paper's three and the transmission conditions fixed, any other (released models,
    other criteria) a spare one."""
    spare = iter(sns.color_palette("tab10") + sns.color_palette("Set2"))
    fixed = {**CONDITION_COLORS, **TRANSMISSION_COLORS}
    return {c: fixed.get(c) or next(spare) for c in condition_order(conditions)}


def short_count(x: float, digits: int = 3) -> str:
    """A count for a label: 49152 -> "49.2k", 1.05e9 -> "1.05B" (``digits`` significant digits)."""
    for size, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if x >= size:
            return f"{x / size:.{digits}g}{suffix}"
    return f"{x:.{digits}g}"


def save(fig: plt.Figure, figures_dir: str | Path, name: str) -> Path:
    """Write ``fig`` as ``figures_dir/name.png`` (150 dpi) and return the path."""
    path = Path(figures_dir) / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=150, bbox_inches="tight")
    return path


def corpus_sizes(summary: pd.DataFrame) -> plt.Figure:
    """Tokens per corpus (val, S, L) on a log scale."""
    fig, ax = plt.subplots(figsize=(5, 3.5))
    sns.barplot(summary, x="corpus", y="tokens", hue="corpus", ax=ax, legend=False)
    ax.set(yscale="log", ylabel="tokens", xlabel="", title="The three corpora")
    for i, t in enumerate(summary["tokens"]):
        ax.text(i, t, f"{t:,}", ha="center", va="bottom", fontsize=8)
    return fig


def generation_val_loss(curves: pd.DataFrame) -> plt.Figure:
    """Val loss vs step, one line per generation (outer loop)."""
    fig, ax = plt.subplots(figsize=(6, 4))
    sns.lineplot(curves, x="step", y="val_loss", hue="generation", palette="viridis", marker="o", ax=ax)
    ax.set(xlabel="step within generation", ylabel="validation loss", title="Outer loop: each generation")
    return fig


def variant_val_loss(summary: pd.DataFrame) -> plt.Figure:
    """Each generation's final val loss per variant of an outer-loop ablation: mean over seeds with its 95% interval
    (columns variant, generation, val_loss_mean, ci95_low, ci95_high; ``scripts/outer_ablations.py``)."""
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for variant, group in summary.groupby("variant", sort=False):
        group = group.sort_values("generation")
        mean = group["val_loss_mean"].to_numpy()
        spread = [mean - group["ci95_low"].to_numpy(), group["ci95_high"].to_numpy() - mean]
        ax.errorbar(group["generation"], mean, yerr=None if group["ci95_low"].isna().all() else spread, marker="o",
                    capsize=3, label=variant)
    ax.set(xlabel="generation", ylabel="val loss at the end of the generation",
           title="Outer-loop ablations: mean and 95% interval over seeds")
    ax.legend(fontsize=8)
    return fig


def tensor_density(densities: pd.DataFrame) -> plt.Figure:
    """Density of every tensor after the last generation, by layer and kind."""
    last = densities[densities["generation"] == densities["generation"].max()].sort_values(["layer", "tensor"])
    fig, ax = plt.subplots(figsize=(max(6, 0.25 * len(last)), 4))
    sns.barplot(last, x="tensor", y="density", hue="kind", dodge=False, ax=ax)
    ax.set_xticks(range(len(last)), [t.replace("transformer.", "").replace(".weight", "") for t in last["tensor"]],
                  rotation=90, fontsize=7)
    ax.legend(title="kind", bbox_to_anchor=(1.01, 1), loc="upper left")
    ax.set(xlabel="", ylabel="surviving fraction",
           title=f"Connectome density per tensor after generation {int(last['generation'].max())}")
    return fig


def criterion_densities(densities: pd.DataFrame, units: pd.DataFrame) -> plt.Figure:
    """Final connectome of each pruning criterion: survivors by tensor kind, by layer, and MLP units still alive.

    ``densities`` from ``curves.tensor_densities(study, criteria)``, ``units`` from ``curves.unit_survival``.
    """
    last = densities[densities["generation"] == densities.groupby("criterion")["generation"].transform("max")]
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    sns.barplot(last, x="kind", y="density", hue="criterion", order=["embedding", "attention", "mlp", "head"],
                errorbar=None, ax=axes[0])
    axes[0].set(xlabel="tensor kind", ylabel="surviving fraction (mean over tensors)", title="Survivors by kind")
    blocks = last[last["layer"].between(0, 9_999)]
    sns.lineplot(blocks, x="layer", y="density", hue="criterion", marker="o", errorbar=None, ax=axes[1])
    axes[1].set(xlabel="block", ylabel="surviving fraction", title="Survivors by layer")
    sns.lineplot(units, x="layer", y="alive", hue="criterion", marker="o", ax=axes[2])
    axes[2].set(xlabel="block", ylabel="fraction of MLP units alive", ylim=(0, 1.02),
                title="MLP units wired in and out")
    for ax in axes[1:]:
        ax.xaxis.get_major_locator().set_params(integer=True)
    return fig


def connectome_bits(summaries: pd.DataFrame) -> plt.Figure:
    """Achieved file bits per weight beside the Shannon entropy, per generation."""
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.plot(summaries["generation"], summaries["entropy_bits_per_weight"], "o-", label="entropy")
    ax.plot(summaries["generation"], summaries["file_bits_per_weight"], "s--", label="connectome file")
    ax.axhline(PAPER_ENTROPY_BITS, color="grey", lw=0.8, ls=":", label="paper (124M, 6 generations)")
    ax.set(xlabel="generation", ylabel="bits per weight", title="Connectome size")
    ax.legend()
    return fig


def condition_bands(ax: plt.Axes, df: pd.DataFrame, value: str, x: str = "step", *,
                    marker: str | None = None) -> pd.DataFrame:
    """Draw ``value`` vs ``x`` on ``ax``, one line per condition: the mean over seeds with a +/- SE band.

    The one mean +/- SE plot of the package (curves over training, over tokens, over layers); returns the summary
    drawn (condition, ``x``, mean, se, n) so a caller can name the number of seeds.
    """
    summary = mean_se(df, ["condition", x], value)
    for condition, color in condition_palette(summary["condition"]).items():
        part = summary[summary["condition"] == condition]
        ax.plot(part[x], part["mean"], label=condition, color=color, marker=marker)
        ax.fill_between(part[x], part["mean"] - part["se"], part["mean"] + part["se"], color=color, alpha=0.25)
    return summary


def seeds_title(summary: pd.DataFrame) -> str:
    """The legend title of a mean +/- SE plot: how many seeds are behind it."""
    return f"mean ± SE over {int(summary['n'].max())} seeds"


def condition_curves(curves: pd.DataFrame, value: str, *, x: str = "step", ylabel: str | None = None,
                     title: str = "") -> plt.Figure:
    """``value`` vs ``x`` per condition, mean +/- SE over seeds (the paper's Figure 1B-i for val loss)."""
    fig, ax = plt.subplots(figsize=(6, 4))
    summary = condition_bands(ax, curves, value, x)
    ax.set(xlabel="iteration" if x == "step" else x, ylabel=ylabel or value, title=title)
    ax.legend(title=seeds_title(summary))
    return fig


def condition_bars(df: pd.DataFrame, x: str, value: str = "value", *, ylabel: str | None = None,
                   title: str = "") -> plt.Figure:
    """Bars of ``value`` per ``x`` and condition, mean +/- SE over seeds (e.g. the paper's Figure 1D-ii)."""
    fig, ax = plt.subplots(figsize=(5, 4))
    palette = condition_palette(df["condition"])
    sns.barplot(df, x=x, y=value, hue="condition", hue_order=list(palette), palette=palette, errorbar="se", ax=ax)
    sns.move_legend(ax, "upper left", bbox_to_anchor=(1, 1), title="mean ± SE over seeds")
    ax.set(xlabel=x, ylabel=ylabel or value, title=title)
    return fig


def reference_line(fig: plt.Figure, y: float, label: str) -> None:
    """A labelled horizontal line (a noise ceiling, chance, a paper's value) on the figure's first axes."""
    ax = fig.axes[0]
    ax.axhline(y, ls="--", color="grey", lw=1)
    ax.annotate(label, (0, y), xycoords=("axes fraction", "data"), va="bottom", color="grey", fontsize=8)


def row_survival(survival: pd.DataFrame) -> plt.Figure:
    """Surviving fraction of the wte and lm_head rows by token frequency, one line per frequency bin, against the
    generation (``analysis.token_survival.row_survival``)."""
    tensors = list(dict.fromkeys(survival["tensor"]))
    fig, axes = plt.subplots(1, max(len(tensors), 1), figsize=(5 * max(len(tensors), 1), 4), sharey=True,
                             squeeze=False)
    if not tensors:
        axes[0, 0].text(0.5, 0.5, "embeddings not pruned (outer.prune_embeddings=false)", ha="center")
        return fig
    for ax, tensor in zip(axes[0], tensors):
        sns.lineplot(survival[survival["tensor"] == tensor], x="generation", y="surviving", hue="bin",
                     palette="viridis", marker="o", ax=ax)
        ax.set(title=tensor.replace("transformer.", "").replace(".weight", ""), ylabel="surviving fraction of rows",
               xlabel="after generation", xticks=sorted(survival["generation"].unique()))
        ax.legend(title="token count in L", fontsize=8)
    return fig
