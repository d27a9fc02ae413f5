"""Scaling sweeps: the inner loop's conditions trained from outer loops of several budgets (and on several amounts
of inner data), through the study's own loops, into one results table tagged with the budget.

The budget rule. A budget is a multiple k of the preset's schedule: ``steps``, ``warmup_steps`` and
``decay_steps`` become round(k x each) (half up; steps at least 1, warmup and decay at least 1 where the preset has
one), so the learning-rate schedule keeps its shape (the same fractions of warmup and decay) and its peak; ``val_every``
and ``checkpoint_every`` scale the same way (as many val points per run). The batch (``batch_size`` x ``seq_len``
tokens per step) never changes, so an outer budget is ``steps x tokens_per_step`` tokens per generation, and an inner
budget ``inner_train.steps x tokens_per_step`` tokens per inner run. Generations, pruning and everything else are the
preset's.

Where the sweep lives (each sub-folder is an ordinary study folder, ``StudyLayout``, so it resumes like one)::

    runs/<preset>/             the study itself: its outer loop is the sweep's budget 1x and its inner runs are that
                               budget's Connectome and RandomConnectome, its NoConnectome runs the baseline of every
                               outer budget (a dense seeded init, recorded without a connectome, so no outer loop
                               changes it); trained once for the study and the sweep, whichever runs first
    runs/<preset>/scaling/
      outer_<T>/             outer loop at T tokens per generation (every other budget); inner/Connectome,
                             inner/RandomConnectome
      inner_<N>/             the inner-data sweep: all three conditions trained N tokens, grown from the connectome
                             of the outer budget the sweep names
      results.csv            every run's logged val losses, tagged ``budget`` (outer tokens per generation; empty
                             for NoConnectome) and ``inner_tokens`` (tokens of the inner run)
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import pandas as pd

from ..config import Preset, TrainConfig
from ..launch import DistContext, init_distributed
from .conditions import BASELINE
from .curves import VAL_LOSS_TASK, val_loss_rows
from .generations import run_inner_loop, run_outer_loop
from .layout import StudyLayout
from .results import ResultsTable, select

BUDGET = "budget"  # results column: outer-loop tokens per generation of a connectome-grown run
INNER_TOKENS = "inner_tokens"  # results column: tokens the inner run trained on
CONNECTOME_CONDITIONS = ("Connectome", "RandomConnectome")


@dataclass(frozen=True)
class Sweep:
    """The budgets (multiples of the preset's outer steps) and inner seeds of a sweep, and the inner-data multiples
    (of the preset's inner steps) of the optional inner-data sweep."""

    multiples: tuple[float, ...]
    seeds: tuple[int, ...]
    inner_multiples: tuple[float, ...]


# Fixed for cost before any run, never by its outcome: "short", the demo, spans 16x with 5 budgets from 1/8 to 2x the
# preset's steps (3.9 outer loops in all) and 3 seeds (the fewest whose t-interval is usable: t = 4.3); "long" spans
# 64x (up to 8x: 15.9 outer loops) with 8 seeds.
SWEEPS = {
    "short": Sweep(multiples=(0.125, 0.25, 0.5, 1.0, 2.0), seeds=(0, 1, 2), inner_multiples=(0.25, 0.5, 1.0, 2.0)),
    "long": Sweep(multiples=(0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0), seeds=tuple(range(8)),
                  inner_multiples=(0.125, 0.25, 0.5, 1.0, 2.0, 4.0)),
}


def get_sweep(name: str) -> Sweep:
    """The named sweep; an unknown name is refused with the known ones."""
    if name not in SWEEPS:
        raise ValueError(f"unknown sweep {name!r}; choose one of {', '.join(SWEEPS)}")
    return SWEEPS[name]


def plan_sweep(preset: Preset, name: str | None = None, multiples: Sequence[float] | None = None,
               seeds: Sequence[int] | None = None) -> Sweep:
    """The sweep to run: the given ``multiples`` and ``seeds``, the rest from sweep ``name``, else from the preset's
    ``eval.scaling_sweep``. A sweep trains several outer loops, so a preset that names none (the paper presets)
    runs one only when asked; with both ``multiples`` and ``seeds`` given, the inner-data multiples are "short"'s."""
    name = name or preset.eval.scaling_sweep or ("short" if multiples and seeds else "")
    if not name:
        raise ValueError(f"preset {preset.name!r} names no scaling sweep (eval.scaling_sweep is empty): pass "
                         f"sweep='short' or 'long' (genprune reproduce --only 08 --param sweep=short)")
    base = get_sweep(name)
    return Sweep(tuple(multiples or base.multiples), tuple(seeds or base.seeds), base.inner_multiples)


def _scaled(value: int, multiple: float, minimum: int) -> int:
    """round(value x multiple), half up; at least ``minimum`` where ``value`` is not 0 (0 stays 0: "none")."""
    return 0 if value == 0 else max(minimum, math.floor(value * multiple + 0.5))


def scale_schedule(cfg: TrainConfig, multiple: float) -> TrainConfig:
    """``cfg`` with steps, warmup, decay, val_every and checkpoint_every scaled by ``multiple`` (the budget rule)."""
    if not (isinstance(multiple, (int, float)) and math.isfinite(multiple) and multiple > 0):
        raise ValueError(f"a budget multiple must be a positive number, got {multiple!r}")
    steps = max(1, math.floor(cfg.steps * multiple + 0.5))
    warmup = min(_scaled(cfg.warmup_steps, multiple, 1), steps)
    decay = min(_scaled(cfg.decay_steps, multiple, 1), steps - warmup)
    return dataclasses.replace(cfg, steps=steps, warmup_steps=warmup, decay_steps=decay,
                               val_every=_scaled(cfg.val_every, multiple, 1),
                               checkpoint_every=_scaled(cfg.checkpoint_every, multiple, 1))


def outer_budget_preset(preset: Preset, multiple: float) -> Preset:
    """``preset`` whose outer-loop generations train ``multiple`` x its steps (``scale_schedule``)."""
    return dataclasses.replace(preset, train=scale_schedule(preset.train, multiple))


def inner_budget_preset(preset: Preset, multiple: float) -> Preset:
    """``preset`` whose inner runs train ``multiple`` x its inner steps (``scale_schedule``)."""
    return dataclasses.replace(preset, inner_train=scale_schedule(preset.inner_train, multiple))


def outer_tokens(preset: Preset) -> int:
    """Tokens one outer-loop generation trains on: ``train.steps x tokens_per_step``."""
    return preset.train.steps * preset.train.tokens_per_step


def inner_tokens(preset: Preset) -> int:
    """Tokens one inner run trains on: ``inner_train.steps x tokens_per_step``."""
    return preset.inner_train.steps * preset.inner_train.tokens_per_step


def budget_table(preset: Preset, multiples: Sequence[float], inner: bool = False) -> pd.DataFrame:
    """What each budget multiple means for ``preset``: multiple, steps, warmup_steps, decay_steps and tokens (per
    outer generation, or with ``inner`` per inner run), smallest first."""
    rows = []
    for multiple in sorted(set(multiples)):
        scaled = scale_schedule(preset.inner_train if inner else preset.train, multiple)
        rows.append({"multiple": multiple, "steps": scaled.steps, "warmup_steps": scaled.warmup_steps,
                     "decay_steps": scaled.decay_steps, "tokens": scaled.steps * scaled.tokens_per_step})
    return pd.DataFrame(rows, columns=["multiple", "steps", "warmup_steps", "decay_steps", "tokens"])


@dataclass(frozen=True)
class ScalingLayout:
    """The folders of a study's scaling sweeps (see the module's docstring)."""

    root: Path

    @classmethod
    def of(cls, study: StudyLayout | str | Path) -> ScalingLayout:
        """The sweeps of ``study``: ``<study root>/scaling``."""
        study = study if isinstance(study, StudyLayout) else StudyLayout(study)
        return cls(study.root / "scaling")

    @property
    def study(self) -> StudyLayout:
        """The study the sweeps belong to (its runs are the sweeps' at the preset's own budgets)."""
        return StudyLayout(self.root.parent)

    def outer_budget(self, tokens: int) -> StudyLayout:
        return StudyLayout(self.root / f"outer_{int(tokens)}")

    def outer_study(self, preset: Preset, budgeted: Preset) -> StudyLayout:
        """Where ``budgeted``'s outer loop (and the inner runs grown from it) live: the study itself when its
        schedule is the preset's (multiple 1), else ``outer_<T>/``."""
        return self.study if budgeted.train == preset.train else self.outer_budget(outer_tokens(budgeted))

    def inner_budget(self, tokens: int) -> StudyLayout:
        return StudyLayout(self.root / f"inner_{int(tokens)}")

    @property
    def results(self) -> ResultsTable:
        return ResultsTable(self.root / "results.csv")


def _tagged_rows(study: StudyLayout, conditions: Sequence[str], seeds: Sequence[int], budget: int | None,
                 tokens: int, val_tokens: int) -> pd.DataFrame:
    """The logged val losses of ``study``'s runs of ``conditions`` x ``seeds``, tagged with the two budgets."""
    rows = val_loss_rows(study, n=val_tokens)
    rows = rows[rows["condition"].isin(list(conditions)) & rows["seed"].isin(list(seeds))]
    return rows.assign(**{BUDGET: budget, INNER_TOKENS: tokens})


def _baseline(preset: Preset, study: StudyLayout, seeds: tuple[int, ...],
              ctx: DistContext, progress: bool) -> pd.DataFrame:
    """Train (or resume) NoConnectome x ``seeds`` in ``study``; its rows, tagged with no outer budget."""
    run_inner_loop(preset, study, conditions=(BASELINE,), seeds=seeds, ctx=ctx, progress=progress)
    return _tagged_rows(study, (BASELINE,), seeds, None, inner_tokens(preset), preset.inner_train.val_tokens)


def _check_seeds(seeds: Sequence[int]) -> tuple[int, ...]:
    seeds = tuple(dict.fromkeys(int(s) for s in seeds))
    if not seeds:
        raise ValueError("a scaling sweep needs at least one inner seed")
    return seeds


def _record(layout: ScalingLayout, frames: list[pd.DataFrame], ctx: DistContext) -> pd.DataFrame:
    """Add the sweep's rows to its results table (main process) and return the table's val-loss rows."""
    if ctx.is_main:
        rows = pd.concat([f for f in frames if not f.empty], ignore_index=True) if frames else pd.DataFrame()
        if not rows.empty:
            layout.results.add(rows)
    ctx.barrier()
    return scaling_curves(layout)


def run_outer_sweep(
    preset: Preset,
    study: StudyLayout | str | Path,
    multiples: Sequence[float],
    *,
    seeds: Sequence[int] | None = None,
    ctx: DistContext | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Run (or resume) the outer loop at each budget (``multiples`` of the preset's steps), Connectome and
    RandomConnectome from each budget's connectome, and NoConnectome once; return ``scaling_curves``.

    Every run goes through ``run_outer_loop`` / ``run_inner_loop`` in its own folder of ``ScalingLayout.of(study)``
    (budget 1x and NoConnectome: the study's own runs), so a second call trains nothing and a changed recipe is
    refused as there. ``seeds`` default to the preset's.
    """
    ctx = ctx or init_distributed()
    seeds = _check_seeds(seeds or preset.inner.seeds)
    layout = ScalingLayout.of(study)
    frames = [_baseline(preset, layout.study, seeds, ctx, progress)]
    for multiple in sorted(set(multiples)):
        budgeted = outer_budget_preset(preset, multiple)
        tokens = outer_tokens(budgeted)
        where = layout.outer_study(preset, budgeted)
        run_outer_loop(budgeted, where, ctx=ctx, progress=progress)
        run_inner_loop(budgeted, where, conditions=CONNECTOME_CONDITIONS, seeds=seeds, ctx=ctx, progress=progress)
        frames.append(_tagged_rows(where, CONNECTOME_CONDITIONS, seeds, tokens, inner_tokens(budgeted),
                                   budgeted.inner_train.val_tokens))
    return _record(layout, frames, ctx)


def run_inner_sweep(
    preset: Preset,
    study: StudyLayout | str | Path,
    multiples: Sequence[float],
    *,
    outer_multiple: float = 1.0,
    seeds: Sequence[int] | None = None,
    ctx: DistContext | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Train the three conditions on ``multiples`` of the preset's inner steps, grown from the connectome of the
    outer budget ``outer_multiple`` (run or resumed first); return ``scaling_curves``.

    The inner budget of multiple 1 is the outer sweep's own runs (``outer_<T>/`` or the study, and the study's
    NoConnectome); the others live in ``inner_<N>/``. More inner steps read more of S (once past one pass over S, S again).
    """
    ctx = ctx or init_distributed()
    seeds = _check_seeds(seeds or preset.inner.seeds)
    layout = ScalingLayout.of(study)
    budgeted = outer_budget_preset(preset, outer_multiple)
    budget = outer_tokens(budgeted)
    source = layout.outer_study(preset, budgeted)
    run_outer_loop(budgeted, source, ctx=ctx, progress=progress)
    frames = []
    for multiple in sorted(set(multiples)):
        inner = inner_budget_preset(budgeted, multiple)
        tokens = inner_tokens(inner)
        same = tokens == inner_tokens(preset)
        grown = source if same else layout.inner_budget(tokens)
        baseline = layout.study if same else grown
        run_inner_loop(inner, grown, connectome=source.final_connectome(), conditions=CONNECTOME_CONDITIONS,
                       seeds=seeds, ctx=ctx, progress=progress)
        frames.append(_tagged_rows(grown, CONNECTOME_CONDITIONS, seeds, budget, tokens, inner.inner_train.val_tokens))
        frames.append(_baseline(inner, baseline, seeds, ctx, progress))
    return _record(layout, frames, ctx)


def scaling_curves(layout: ScalingLayout | StudyLayout | str | Path) -> pd.DataFrame:
    """The sweeps' logged val losses as one tidy frame: condition, seed, step, tokens, val_loss, ``budget``
    (outer tokens per generation; NaN for NoConnectome, which no outer loop made) and ``inner_tokens``."""
    layout = layout if isinstance(layout, ScalingLayout) else ScalingLayout.of(layout)
    columns = ["condition", "seed", "step", "tokens", "val_loss", BUDGET, INNER_TOKENS]
    table = layout.results.load()
    if table.empty or BUDGET not in table.columns:
        return pd.DataFrame(columns=columns)
    rows = select(table, VAL_LOSS_TASK, "loss", overall=False, required=False)
    rows = rows[rows[INNER_TOKENS].notna()]
    out = rows.rename(columns={"value": "val_loss"})[columns].reset_index(drop=True)
    out[INNER_TOKENS] = out[INNER_TOKENS].astype("int64")
    return out
