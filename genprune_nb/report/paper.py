"""The paper's Figure 1 redrawn from a study's results table alone, and the paper's numbers beside this run's.

Kotar & Tuckute 2025 report (DESIGN.md §1) val loss over the inner loop (Figure 1B-i), HellaSwag and MMLU
(1B-ii), reading-time alignment over training (1C), brain encoding per layer (1D-i) and from the model's
language units (1D-ii). :data:`PAPER` holds their numbers as a tidy table with the definitions they refer to
(DESIGN.md §5); :func:`paper_vs_run` puts this run's values beside them; one function per panel draws it from the
tidy ``results.csv`` (``genprune_nb.study.results``) and returns None, with a printed note, when its rows are missing.

Nothing here trains or loads a model, so every figure is redrawn in seconds from saved results.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ..alignment import behavior, encoding, localizer
from ..config import PAPER_PRESET, ModelConfig, Preset, get_preset
from ..evals.registry import get_benchmark, preset_sizes
from ..stats import mean_se
from ..study.curves import VAL_LOSS_TASK
from ..study.results import base_task, final_rows, select
from . import benchmarks as report
from . import plots

NOISE_CEILING = get_benchmark(encoding.TASK).ceiling  # the language network's, for the Tuckute 2024 sentences

PAPER_SCALE = get_preset(PAPER_PRESET)  # d12 GPT (124M weights, embedding counted once), 2,000 x 524,288 tokens

_DEFINITIONS = {
    "val_loss": "mean next-token cross-entropy (nats/token) on held-out val tokens (paper: 1.64M FineWeb val "
                "tokens), logged during the inner loop",
    "hellaswag": "HellaSwag val (10,042 items): context + ' ' + ending, the ending with the highest per-token "
                 "mean log-prob (authors' / llm.c acc_norm); chance 0.25",
    "mmlu": "MMLU test (14,042 items), 0-shot cloze 'Question: {q}\\n\\nAnswer:' + ' ' + option, the option with "
            "the highest summed log-prob; chance 0.25",
    "reading_times": "Pearson r between per-word surprisal (sum over the word's tokens, each story one running "
                     "context) and mean self-paced reading time, Natural Stories (10,256 words), raw r",
    "brain_encoding": "held-out Pearson r of a ridge encoding model (authors' protocol: raw features, penalty "
                      "1e-30..1e29 by efficient LOO on the training folds, 5-fold shuffled KFold) "
                      "from one layer's last-token hidden state to the language network's response to 1,000 "
                      "six-word sentences (Tuckute 2024)",
    "ceiling": "noise ceiling of the language network's responses: the r a perfect model would reach given "
               "how consistent the responses are across participants",
    "brain_encoding_localized": "the same encoding from the model's language units only: the top k% units "
                                "of all blocks by Welch t, sentences > non-word lists (Fedorenko 2010 "
                                "localizer); the paper's k is not in DESIGN.md, so every k of this run is shown",
    "entropy": "Shannon entropy of the ternary connectome {-c, 0, +c} (appendix)",
    "size": "the connectome's compressed file for 124M weights (appendix)",
}

# (figure, quantity, {condition: value}, at, base task, metric, how this run's value is summarised, definition)
# how: final = mean over seeds of each seed's last checkpoint; peak = highest mean-over-seeds value over steps;
# best_layer = highest final mean over layers; units = final mean per language-unit mask; None = not in results.
_REFERENCES = [
    ("1B-i", "val loss, end of the inner loop",
     {"Connectome": 3.58, "NoConnectome": 3.89, "RandomConnectome": 5.43, "Dense on L": 3.39},
     "iteration 2000", VAL_LOSS_TASK, "loss", "final", "val_loss"),
    ("1B-ii", "HellaSwag acc_norm", {"Connectome": 0.2764, "RandomConnectome": 0.2574, "NoConnectome": 0.2691},
     "iteration 2000, mean over seeds", "hellaswag", "acc_norm", "final", "hellaswag"),
    ("1B-ii", "MMLU acc", {"Connectome": 0.2468, "RandomConnectome": 0.2346, "NoConnectome": 0.2412},
     "iteration 2000, mean over seeds", "mmlu", "acc", "final", "mmlu"),
    ("1C", "reading-time r, peak", {"Connectome": 0.38}, "~iteration 300", behavior.TASK, "pearson_r", "peak",
     "reading_times"),
    ("1C", "reading-time r, end", {"Connectome": 0.34}, "iteration 2000", behavior.TASK, "pearson_r", "final",
     "reading_times"),
    ("1D-i", "brain encoding r, best layer", {"all": 0.32}, "layer 10 (conditions close)", encoding.TASK, "r",
     "best_layer", "brain_encoding"),
    ("1D-i", "noise ceiling", {"data": 0.56}, "language network", encoding.TASK, None, None, "ceiling"),
    ("1D-ii", "localized-unit encoding r",
     {"Connectome": 0.235, "RandomConnectome": 0.165, "NoConnectome": 0.228}, "language units",
     localizer.TASK, "r", "units", "brain_encoding_localized"),
    ("appendix", "connectome entropy (bits/weight)", {"Connectome": 1.06}, "6 generations", None, None, None,
     "entropy"),
    ("appendix", "connectome size (MB)", {"Connectome": 16.0}, "124M weights", None, None, None, "size"),
]

PAPER = pd.DataFrame(
    [{"figure": fig, "quantity": q, "condition": c, "value": v, "at": at, "task": task, "metric": metric,
      "definition": _DEFINITIONS[d]}
     for fig, q, values, at, task, metric, _, d in _REFERENCES for c, v in values.items()])
"""The paper's reference numbers (DESIGN.md §1), one row per (quantity, condition), with their definitions."""

BASE_TASKS = (VAL_LOSS_TASK, "val_loss", "hellaswag", "mmlu", "blimp", behavior.TASK, encoding.TASK,
              localizer.TASK)


def _as_preset(preset: Preset | str) -> Preset:
    return get_preset(preset) if isinstance(preset, str) else preset


def _weights(model: ModelConfig) -> int:
    """Weights of a GPT with the embedding counted once (the "124M" convention): 12 C^2 per block + V x C."""
    return model.n_layer * 12 * model.n_embd * model.n_embd + model.vocab_size * model.n_embd


def describe_scale(preset: Preset | str) -> str:
    """This preset's scale next to the paper's, in one line (model shape, inner steps x tokens per step)."""
    p = _as_preset(preset)
    m, t = p.model, p.inner_train
    run = _weights(m)
    paper = _weights(PAPER_SCALE.model)
    steps, tps = PAPER_SCALE.inner_train.steps, PAPER_SCALE.inner_train.tokens_per_step
    short = plots.short_count
    return (f"preset {p.name}: {m.n_layer} layers x {m.n_embd} ({short(run)} weights), {t.steps:,} inner steps x "
            f"{t.tokens_per_step:,} tokens ({short(t.steps * t.tokens_per_step)}) vs the paper's "
            f"{short(paper)}, {steps:,} x {tps:,} ({short(steps * tps)})")


def expected_tasks(preset: Preset | str) -> dict[str, str]:
    """The task label each notebook writes by default for this preset (quick runs carry a suffix, e.g.
    ``hellaswag@50``), per base task name."""
    sizes = preset_sizes(_as_preset(preset))
    return {VAL_LOSS_TASK: VAL_LOSS_TASK, **{name: get_benchmark(name).label(sizes) for name in BASE_TASKS[1:]}}


def pick_task(results: pd.DataFrame, base: str, preferred: str | None = None) -> str | None:
    """The stored label of task ``base`` to show: ``preferred`` if it has rows, else the full run (no ``@``
    suffix), else the run with the most items; None if the results have no rows of that task."""
    labels = sorted({t for t in results["task"].dropna().unique() if base_task(str(t)) == base})
    if not labels:
        return None
    if preferred in labels:
        return preferred
    if base in labels:
        return base
    items = results[results["task"].isin(labels)].groupby("task")["n"].max()
    return max(labels, key=lambda t: (items.get(t, 0) if pd.notna(items.get(t, 0)) else 0, t))


def task_labels(results: pd.DataFrame, preset: Preset | str | None = None) -> dict[str, str | None]:
    """:func:`pick_task` for every task the figures read, preferring the labels ``preset``'s notebooks write."""
    preferred = expected_tasks(preset) if preset is not None else {}
    return {base: pick_task(results, base, preferred.get(base)) for base in BASE_TASKS}


def _rows(results: pd.DataFrame, task: str | None, metric: str, key: str | None = None) -> pd.DataFrame:
    """Rows of one task label and metric (``results.select``): the overall ones, or, with ``key``, those that have
    ``key`` set and no other extra key; none when the label is None or the table lacks them."""
    if task is None:
        return results.iloc[0:0]
    return select(results, task, metric, breakdown=key, required=False)


def _skip(panel: str, base: str, metric: str, notebook: str) -> None:
    print(f"Figure {panel} skipped: no {metric!r} rows of task {base!r} in the results (notebook {notebook} "
          f"writes them)")


def _panel_rows(results: pd.DataFrame, panel: str, base: str, metric: str, notebook: str, task: str | None,
                key: str | None = None) -> tuple[str | None, pd.DataFrame]:
    """(the task label, its ``metric`` rows) for one panel; empty rows with a printed note if the table lacks them."""
    task = task if task is not None else pick_task(results, base)
    df = _rows(results, task, metric, key)
    if df.empty:
        _skip(panel, base, metric, notebook)
    return task, df


# ---------------------------------------------------------------------------------------------------------------
# the paper's numbers beside this run's


_RUN_COLUMNS = ["condition", "run", "run_se", "seeds", "run_at"]


def _summary(df: pd.DataFrame, how: str) -> pd.DataFrame:
    """This run's value per condition (columns condition, run, run_se, seeds, run_at) from one task's rows."""
    if how == "final":
        s = mean_se(final_rows(df), ["condition"], "value")
        steps = final_rows(df).groupby("condition")["step"].max()
        s["run_at"] = [f"step {int(steps[c])}" for c in s["condition"]]
    elif how == "peak":
        by_step = mean_se(df, ["condition", "step"], "value")
        s = by_step.loc[by_step.groupby("condition")["mean"].idxmax()].copy()
        s["run_at"] = [f"step {int(k)}" for k in s["step"]]
    elif how == "best_layer":
        by_layer = mean_se(final_rows(df), ["condition", "layer"], "value")
        s = by_layer.loc[by_layer.groupby("condition")["mean"].idxmax()].copy()
        s["run_at"] = [f"layer {int(k)}" for k in s["layer"]]
    elif how == "units":
        s = mean_se(final_rows(df), ["condition", "units"], "value")
        s["run_at"] = s["units"].astype(str)
    else:
        raise ValueError(f"unknown summary {how!r}")
    return s.rename(columns={"mean": "run", "se": "run_se", "n": "seeds"})[_RUN_COLUMNS]


def paper_vs_run(results: pd.DataFrame, preset: Preset | str) -> pd.DataFrame:
    """Every number of :data:`PAPER` beside this run's: one row per (quantity, condition[, language-unit mask]).

    ``run`` is the mean over seeds of each seed's last checkpoint (``peak``: the highest mean-over-seeds value over
    checkpoints; ``best layer``: the highest over layers), ``run_se`` its standard error over ``seeds``, ``run_at``
    where it was read, ``task`` the stored label it was read from. Quantities the results table cannot hold (the
    noise ceiling, the connectome's size) or has no rows for keep ``run`` NaN. ``attrs["scale"]`` names both scales.
    """
    preset = _as_preset(preset)
    labels = task_labels(results, preset)
    out = []
    for fig, quantity, values, at, base, metric, how, d in _REFERENCES:
        task = labels.get(base) if base else None
        if base == VAL_LOSS_TASK and task is None:  # the evals' val_loss task measures the same loss
            task = labels.get("val_loss")
        key = {"best_layer": "layer", "units": "units"}.get(how)
        df = _rows(results, task, metric, key) if how else results.iloc[0:0]
        run = _summary(df, how) if len(df) else pd.DataFrame(columns=_RUN_COLUMNS)
        conditions = plots.condition_order(
            [c for c in values if c != "all"] + list(run["condition"]) or list(values))
        for condition in conditions:
            paper_value = values.get(condition, values.get("all", np.nan))
            mine = run[run["condition"] == condition]
            base_row = {"figure": fig, "quantity": quantity, "condition": condition, "paper": paper_value,
                        "paper_at": at, "task": task if len(mine) else (task or "not in the results"),
                        "definition": _DEFINITIONS[d]}
            if mine.empty:
                out.append({**base_row, "run": np.nan, "run_se": np.nan, "seeds": 0, "run_at": ""})
            for r in mine.to_dict("records"):
                out.append({**base_row, "run": r["run"], "run_se": r["run_se"], "seeds": int(r["seeds"]),
                            "run_at": r["run_at"]})
    table = pd.DataFrame(out)[["figure", "quantity", "condition", "paper", "paper_at", "run", "run_se", "seeds",
                               "run_at", "task", "definition"]]
    table.attrs["scale"] = describe_scale(preset)
    return table


# ---------------------------------------------------------------------------------------------------------------
# Figure 1, panel by panel


def figure_1b_i(results: pd.DataFrame, task: str | None = None) -> plt.Figure | None:
    """Val loss over inner-loop iterations per condition, mean ± SE over seeds (task ``val_loss_curve``)."""
    task, df = _panel_rows(results, "1B-i", VAL_LOSS_TASK, "loss", "02", task)
    if df.empty:
        return None
    return plots.condition_curves(df, "value", ylabel="validation loss (nats/token)",
                                  title="Figure 1B-i: val loss during the inner loop")


def figure_1b_ii(results: pd.DataFrame, tasks: Sequence[str] | None = None) -> plt.Figure | None:
    """Final benchmark scores per condition (bars: mean ± SE over seeds), chance dotted, the paper's values as x.

    ``tasks`` are stored labels (default: HellaSwag, MMLU and BLiMP as :func:`pick_task` finds them).
    """
    if tasks is None:
        tasks = [t for t in (pick_task(results, b) for b in ("hellaswag", "mmlu", "blimp")) if t]
    finals = report.final_scores(results, list(tasks)) if len(tasks) and not results.empty else pd.DataFrame()
    if finals.empty:
        _skip("1B-ii", "hellaswag / mmlu / blimp", "acc_norm / acc", "03")
        return None
    present = [t for t in tasks if t in set(finals["task"])]
    finals["benchmark"] = [f"{t}\n{m}" for t, m in zip(finals["task"], finals["metric"])]
    order = [f"{t}\n{report.headline_metric(t)}" for t in present]
    finals["benchmark"] = pd.Categorical(finals["benchmark"], categories=order, ordered=True)
    fig = plots.condition_bars(finals.sort_values("benchmark"), "benchmark", ylabel="accuracy",
                               title="Figure 1B-ii: benchmarks at the end of the inner loop")
    ax = fig.axes[0]
    conditions = plots.condition_order(finals["condition"])
    width = 0.8 / len(conditions)
    marked = False
    for i, t in enumerate(present):
        chance = report.chance_level(t)
        if chance is not None:
            ax.hlines(chance, i - 0.45, i + 0.45, colors="grey", linestyles=":", lw=1)
        ref = PAPER[(PAPER["task"] == base_task(t)) & (PAPER["metric"] == report.headline_metric(t))]
        for k, condition in enumerate(conditions):
            value = ref.loc[ref["condition"] == condition, "value"]
            if len(value):
                ax.plot(i - 0.4 + width * (k + 0.5), value.iloc[0], "kx", ms=7,
                        label=None if marked else "paper (124M)")
                marked = True
    if marked:
        handles, names = ax.get_legend_handles_labels()
        ax.legend(handles, names, loc="upper left", bbox_to_anchor=(1, 1), title="mean ± SE over seeds")
    ax.set_xlabel("")
    return fig


def figure_1c(results: pd.DataFrame, task: str | None = None) -> plt.Figure | None:
    """Reading-time Pearson r (surprisal vs mean reading time) over inner-loop iterations, mean ± SE over seeds."""
    task, df = _panel_rows(results, "1C", behavior.TASK, "pearson_r", "04", task)
    if df.empty:
        return None
    return plots.condition_curves(df, "value", ylabel="Pearson r (surprisal vs reading time)",
                                  title=f"Figure 1C: reading-time alignment ({task})")


def figure_1d_i(results: pd.DataFrame, task: str | None = None, ceiling: float = NOISE_CEILING
                ) -> plt.Figure | None:
    """Brain encoding r per layer (0 = embedding) of each seed's last checkpoint, mean ± SE over seeds."""
    task, df = _panel_rows(results, "1D-i", encoding.TASK, "r", "05", task, key="layer")
    if df.empty:
        return None
    df = final_rows(df).astype({"layer": int})
    fig = plots.condition_curves(df, "value", x="layer", ylabel="encoding r (held-out sentences)",
                                 title=f"Figure 1D-i: brain encoding per layer ({task})")
    plots.reference_line(fig, ceiling, "noise ceiling")
    fig.axes[0].set_xticks(sorted(df["layer"].unique()))
    return fig


def figure_1d_ii(results: pd.DataFrame, task: str | None = None, ceiling: float = NOISE_CEILING
                 ) -> plt.Figure | None:
    """Encoding r from the model's language units (top k% by localizer t), last checkpoints, mean ± SE."""
    task, df = _panel_rows(results, "1D-ii", localizer.TASK, "r", "05", task, key="units")
    if df.empty:
        return None
    df = final_rows(df)
    fig = plots.condition_bars(df, "units", ylabel="encoding r (held-out sentences)",
                               title=f"Figure 1D-ii: language units ({task})")
    fig.axes[0].set_xlabel("language units (top k% by localizer t)")
    plots.reference_line(fig, ceiling, "noise ceiling")
    return fig


PANELS = {"1B-i": figure_1b_i, "1B-ii": figure_1b_ii, "1C": figure_1c, "1D-i": figure_1d_i,
          "1D-ii": figure_1d_ii}

# per panel: the base task(s) it reads (a tuple: a panel of several benchmarks) and the PNG it is saved as
_PANEL_TASKS = {"1B-i": VAL_LOSS_TASK, "1B-ii": ("hellaswag", "mmlu", "blimp"), "1C": behavior.TASK,
                "1D-i": encoding.TASK, "1D-ii": localizer.TASK}
PANEL_FILES = {"1B-i": "07_figure1_b_i_val_loss", "1B-ii": "07_figure1_b_ii_benchmarks",
               "1C": "07_figure1_c_reading_times", "1D-i": "07_figure1_d_i_brain_layers",
               "1D-ii": "07_figure1_d_ii_language_units"}


def _panel(panel: str) -> str:
    if panel not in PANELS:
        raise ValueError(f"no Figure 1 panel {panel!r}; the panels are {list(PANELS)}")
    return panel


def panel_tasks(panel: str, labels: dict[str, str | None]) -> list[str]:
    """The stored labels ``panel`` reads, from ``labels`` (:func:`task_labels`); tasks without rows left out."""
    bases = _PANEL_TASKS[_panel(panel)]
    return [t for t in (labels.get(b) for b in ((bases,) if isinstance(bases, str) else bases)) if t]


def draw_panel(results: pd.DataFrame, panel: str, labels: dict[str, str | None] | None = None
               ) -> plt.Figure | None:
    """One panel of Figure 1 from the labels :func:`task_labels` picked (default: picked from ``results``)."""
    labels = task_labels(results) if labels is None else labels
    tasks = panel_tasks(panel, labels)
    if isinstance(_PANEL_TASKS[panel], str):
        return PANELS[panel](results, tasks[0] if tasks else None)
    return PANELS[panel](results, tasks)


def save_panel(results: pd.DataFrame, panel: str, figures_dir: str | Path,
               labels: dict[str, str | None] | None = None) -> Path | None:
    """Draw ``panel`` and save it as ``figures_dir/PANEL_FILES[panel].png``; None (and a printed note) when the
    results lack its rows. The figure stays open, so a notebook shows it."""
    fig = draw_panel(results, panel, labels)
    if fig is None:
        return None
    path = plots.save(fig, figures_dir, PANEL_FILES[panel])
    print("saved", path)
    return path


def save_panels(results: pd.DataFrame, figures_dir: str | Path, labels: dict[str, str | None] | None = None
                ) -> dict[str, Path | None]:
    """:func:`save_panel` for every panel of :data:`PANELS`: panel -> the PNG written (None: skipped)."""
    labels = task_labels(results) if labels is None else labels
    return {panel: save_panel(results, panel, figures_dir, labels) for panel in PANELS}
