"""Benchmark results for people: the Figure 1B-ii table, curves over training, tests of condition differences.

Everything reads the tidy results table (``genprune_nb.study.results``). A task's *headline* score is one metric of its
overall rows (no subject / paradigm / phenomenon), e.g. HellaSwag ``acc_norm``; a seed's *final* score is its
headline at the last step evaluated for that seed.
"""
from __future__ import annotations

from itertools import combinations
from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import statsmodels.formula.api as smf
from statsmodels.stats.anova import anova_lm
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.weightstats import ttest_ind
from torch import nn

from ..evals.multiple_choice import Question, choose
from ..evals.registry import all_benchmarks
from ..evals.scorer import score
from ..stats import mean_se
from ..study.conditions import condition_order
from ..study.results import COLUMNS, base_task, final_rows, select
from .plots import condition_bands, seeds_title

BREAKDOWNS = ("subject", "paradigm", "phenomenon")


def headline_metric(task: str) -> str | None:
    """The headline metric of a stored task label's benchmark (``"hellaswag@20"`` -> ``"acc_norm"``), read from the
    registry when asked (so a benchmark registered later counts); None for a task no benchmark registers."""
    benchmark = all_benchmarks().get(base_task(task))
    return benchmark.headline if benchmark else None


def chance_level(task: str) -> float | None:
    """The chance level of a stored task label's benchmark's headline metric; None where it has none."""
    benchmark = all_benchmarks().get(base_task(task))
    return benchmark.chance if benchmark else None


def headline(results: pd.DataFrame, tasks: Sequence[str]) -> pd.DataFrame:
    """The headline rows of ``tasks`` (stored labels such as ``"hellaswag"`` or ``"hellaswag@20"``): each task's
    overall score (``results.select``: every extra key empty); a task without rows or headline adds none."""
    frames = [select(results, t, headline_metric(t), required=False) for t in tasks if headline_metric(t)]
    return pd.concat(frames, ignore_index=True)[COLUMNS] if frames else results.iloc[0:0][COLUMNS]


def final_scores(results: pd.DataFrame, tasks: Sequence[str]) -> pd.DataFrame:
    """One headline score per (condition, seed, task): at that seed's last evaluated step."""
    return final_rows(headline(results, tasks), ["condition", "seed", "task"])


def summarize(results: pd.DataFrame, tasks: Sequence[str]) -> pd.DataFrame:
    """Mean, standard error and number of seeds (``n``) of the final scores, per condition and task."""
    return mean_se(final_scores(results, tasks), ["condition", "task", "metric"], "value")


def figure_table(results: pd.DataFrame, tasks: Sequence[str], digits: int = 4) -> pd.DataFrame:
    """The paper's Figure 1B-ii as a table: ``mean ± SE (seeds)`` per condition (rows) and task (columns)."""
    s = summarize(results, tasks)
    s["cell"] = [f"{m:.{digits}f} ± {se:.{digits}f} ({n})" if n > 1 else f"{m:.{digits}f} (1)"
                 for m, se, n in zip(s["mean"], s["se"], s["n"])]
    s["column"] = s["task"] + " " + s["metric"]
    wide = s.pivot(index="condition", columns="column", values="cell")
    columns = [c for c in (f"{t} {headline_metric(t)}" for t in tasks) if c in wide.columns]
    return wide.loc[condition_order(wide.index), columns].rename_axis(index=None, columns=None)


def plot_curves(results: pd.DataFrame, tasks: Sequence[str]) -> plt.Figure:
    """Headline score against training step, one panel per task, mean ± SE over seeds per condition; chance dotted."""
    df = headline(results, tasks)
    if df.empty:
        raise ValueError(f"no headline results for tasks {list(tasks)}")
    shown = list(dict.fromkeys(df["task"]))  # stored labels, in the order of ``tasks``
    fig, axes = plt.subplots(1, len(shown), figsize=(3.6 * len(shown) + 1.6, 3.2), squeeze=False)
    for task, ax in zip(shown, axes[0]):
        summary = condition_bands(ax, df[df["task"] == task], "value", "step", marker="o")
        ax.set(xlabel="step", ylabel=headline_metric(task), title=task)
        if chance_level(task) is not None:
            ax.axhline(chance_level(task), color="grey", lw=0.8, ls=":")
    axes[0][-1].legend(title=seeds_title(summary), loc="upper left", bbox_to_anchor=(1.01, 1))
    fig.tight_layout()
    return fig


def condition_tests(results: pd.DataFrame, tasks: Sequence[str]) -> pd.DataFrame:
    """Do the conditions differ at the end of training? Per task, on the final per-seed scores:

    * ``all conditions``: one-way ANOVA F test from OLS ``value ~ C(condition)``;
    * ``A - B``: Welch's t test of each pair (``estimate`` = difference of means), p also Holm-adjusted per task.

    Seeds are the replicates, so with two or three per condition only large, consistent differences can reach
    significance. A test is NaN where it is undefined: fewer than two seeds, or no spread at all between seeds.
    """
    rows = []
    for task, df in final_scores(results, tasks).groupby("task", sort=False):
        conditions = condition_order(df["condition"])
        groups = {c: df.loc[df["condition"] == c, "value"].to_numpy() for c in conditions}
        anova = {"task": task, "comparison": "all conditions", "estimate": np.nan, "statistic": np.nan,
                 "df": np.nan, "p_value": np.nan, "p_holm": np.nan}
        if len(conditions) > 1 and len(df) > len(conditions):
            table = anova_lm(smf.ols("value ~ C(condition)", data=df).fit(), typ=2)
            anova.update(statistic=table.loc["C(condition)", "F"], df=table.loc["Residual", "df"],
                         p_value=table.loc["C(condition)", "PR(>F)"])
        rows.append(anova)
        pairs = []
        for a, b in combinations(conditions, 2):
            x, y = groups[a], groups[b]
            testable = min(len(x), len(y)) > 1 and x.var(ddof=1) + y.var(ddof=1) > 0
            t, p, dof = ttest_ind(x, y, usevar="unequal") if testable else (np.nan,) * 3
            pairs.append({"task": task, "comparison": f"{a} - {b}", "estimate": x.mean() - y.mean(),
                          "statistic": t, "df": dof, "p_value": p})
        finite = [r for r in pairs if np.isfinite(r["p_value"])]
        if finite:
            for r, adj in zip(finite, multipletests([r["p_value"] for r in finite], method="holm")[1]):
                r["p_holm"] = adj
        rows += pairs
    return pd.DataFrame(rows, columns=["task", "comparison", "estimate", "statistic", "df", "p_value", "p_holm"])


def breakdown(results: pd.DataFrame, task: str, key: str) -> pd.DataFrame:
    """Final-step mean over seeds per ``key`` value (rows: subject / paradigm / phenomenon) and condition (columns).

    Rows that also carry a finer key are left out (BLiMP's paradigm rows name their phenomenon too).
    """
    df = select(results, task, headline_metric(task), overall=False, breakdown=key, required=False)
    if key not in df.columns:
        raise ValueError(f"task {task!r} has no {key!r} rows in the results")
    for finer in BREAKDOWNS[: BREAKDOWNS.index(key)]:
        if finer in df.columns:
            df = df[df[finer].isna()]
    df = final_rows(df)
    wide = df.groupby([key, "condition"])["value"].mean().unstack("condition")
    return wide[condition_order(wide.columns)].rename_axis(columns=None)


def items(results: pd.DataFrame, tasks: Sequence[str]) -> pd.DataFrame:
    """How many items each stored task label and metric was scored on (the largest ``n`` of its rows): shows
    whether a run was quick (``limit``) or full."""
    df = results[results["task"].isin(tasks)]
    return df.groupby(["task", "metric"])["n"].max().to_frame("items")


def breakdowns(results: pd.DataFrame, tasks: Sequence[str], *, top: int = 12, digits: int = 3) -> list[pd.DataFrame]:
    """For each of ``tasks`` with finer rows, its :func:`breakdown` by the coarsest key it has (BLiMP: phenomenon,
    MMLU: subject) with the mean over conditions, best first, the ``top`` rows, rounded to ``digits``."""
    tables = []
    for task in tasks:
        rows = results[results["task"] == task]
        key = next((k for k in reversed(BREAKDOWNS) if k in rows.columns and rows[k].notna().any()), None)
        if key is not None:
            wide = breakdown(results, task, key)
            wide = wide.assign(mean=wide.mean(axis=1)).sort_values("mean", ascending=False, kind="stable")
            tables.append(wide.head(top).round(digits).rename_axis(index=f"{task} {key}"))
    return tables


def explain(model: nn.Module, question: Question, choices: Sequence[str]) -> pd.DataFrame:
    """One item scored choice by choice: tokens, summed and normalised log-probs, and which rule picks it."""
    scores = score(model, [question.requests])[0]
    picks = {norm: choose(scores, norm, question.chars) for norm in ("none", "token", "char")}
    return pd.DataFrame({
        "choice": list(choices),
        "gold": [i == question.gold for i in range(len(choices))],
        "tokens": [s.n_tokens for s in scores],
        "logprob": [s.logprob for s in scores],
        "per_token": [s.mean for s in scores],
        "per_char": [s.logprob / c for s, c in zip(scores, question.chars)],
        "picked_by": [", ".join(n for n, i in picks.items() if i == k) for k in range(len(choices))],
    })
