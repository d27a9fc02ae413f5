"""Figures of data efficiency: metric vs training tokens with milestones, and the effective data multiplier."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib.pyplot as plt
import pandas as pd

from ..analysis.efficiency import require_columns, metric_vs_tokens, scaled_milestones
from .paper import pick_task
from .plots import condition_bands, condition_palette, save, seeds_title, short_count


def plot_data_efficiency(curves: pd.DataFrame, value: str = "val_loss", *, milestones: Sequence[float] | None = None,
                         ylabel: str | None = None, title: str = "Data efficiency") -> plt.Figure:
    """``value`` against tokens seen (log x) per condition, mean ± SE band over seeds, milestones as dotted lines.

    ``milestones`` defaults to the paper's scaled to the longest run; ``()`` draws none. Points at 0 tokens are
    left out (log axis). Works for val loss (``curves.inner_curves``) and for ``metric_vs_tokens`` (value="value").
    """
    require_columns(curves, ["condition", "seed", "tokens", value], "curves")
    df = curves[curves["tokens"] > 0]
    if df.empty:
        raise ValueError("curves have no points after 0 tokens to plot on a log axis")
    if milestones is None:
        milestones = scaled_milestones(int(df["tokens"].max()))
    fig, ax = plt.subplots(figsize=(6, 4))
    summary = condition_bands(ax, df, value, "tokens")
    for i, m in enumerate(milestones):
        ax.axvline(m, color="grey", lw=0.7, ls=":", label="token milestones" if i == 0 else None)
    ax.set_xscale("log")
    ax.set(xlabel="tokens seen", ylabel=ylabel or value, title=title)
    ax.legend(title=seeds_title(summary), fontsize=8, loc="upper left",
              bbox_to_anchor=(1.01, 1))
    return fig


def plot_multiplier(summary: pd.DataFrame, *, title: str = "Effective data multiplier") -> plt.Figure:
    """Multiplier (mean ± SE over seeds) against milestone tokens (log x), one series per condition.

    Milestones where some seed's baseline never reached the condition's loss are drawn as upward triangles: the
    value there is a lower bound. A dashed line marks 1 (no advantage).
    """
    require_columns(summary, ["milestone", "mean", "se", "lower_bound"], "multiplier summary")
    if summary.empty:
        raise ValueError("the multiplier summary is empty")
    df = summary if "condition" in summary.columns else summary.assign(condition="Connectome")
    baselines = sorted(set(df["baseline"])) if "baseline" in df.columns else ["the baseline"]
    never = f"{' / '.join(baselines)} never reached that loss"
    fig, ax = plt.subplots(figsize=(6, 4))
    for condition, color in condition_palette(df["condition"]).items():
        part = df[df["condition"] == condition].sort_values("milestone")
        exact, bound = part[~part["lower_bound"]], part[part["lower_bound"]]
        ax.plot(part["milestone"], part["mean"], color=color, lw=1, alpha=0.6)
        ax.errorbar(exact["milestone"], exact["mean"], yerr=exact["se"], fmt="o", color=color, capsize=3,
                    label=condition)
        if len(bound):
            ax.errorbar(bound["milestone"], bound["mean"], yerr=bound["se"], fmt="^", color=color, capsize=3,
                        markersize=8, mfc="white")
    if df["lower_bound"].any():  # one legend entry for every hollow triangle
        ax.plot([], [], "^", color="grey", mfc="white", markersize=8, label=f"lower bound: {never}")
    ax.axhline(1.0, color="grey", ls="--", lw=1, label="1× (no advantage)")
    ax.set_xscale("log")
    ticks = sorted(set(df["milestone"]))
    ax.set_xticks(ticks, [short_count(m, digits=4) for m in ticks], rotation=45)
    ax.minorticks_off()
    ax.set(xlabel="tokens seen by the condition (milestone)",
           ylabel=f"multiplier: {' / '.join(baselines)} tokens ÷ milestone", title=title)
    ax.legend(title="mean ± SE over seeds", fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    return fig


def plot_benchmark_vs_tokens(results: pd.DataFrame, task: str, metric: str, *,
                             conditions: Sequence[str] | None = None, milestones: Sequence[float] | None = None,
                             ylabel: str | None = None) -> plt.Figure | None:
    """A benchmark's ``metric`` against tokens seen (:func:`plot_data_efficiency`) for ``conditions`` (default: all),
    from the results table: the label :func:`paper.pick_task` picks (the full run, else the largest quick run).

    A study need not have run every benchmark, so no rows give None and a printed note instead of an error.
    """
    label = pick_task(results, task)
    rows = metric_vs_tokens(results, label, metric, conditions=conditions) if label else results.iloc[0:0]
    if rows.empty:
        among = f" for {list(conditions)}" if conditions is not None else ""
        print(f"{task} vs tokens skipped: no {metric!r} rows of task {task!r}{among} in the results table "
              f"(evaluate it first, e.g. genprune eval --task {task})")
        return None
    return plot_data_efficiency(rows, "value", milestones=milestones, ylabel=ylabel or f"{task} {metric}",
                                title=f"{label} vs tokens seen")


def save_benchmark_vs_tokens(results: pd.DataFrame, task: str, metric: str, figures_dir: str | Path, name: str,
                             **kwargs) -> Path | None:
    """:func:`plot_benchmark_vs_tokens` saved as ``figures_dir/name.png``; None (and its note) without rows. The
    figure stays open, so a notebook shows it."""
    fig = plot_benchmark_vs_tokens(results, task, metric, **kwargs)
    return save(fig, figures_dir, name) if fig is not None else None
