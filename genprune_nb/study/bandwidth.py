"""The bandwidth comparison (notebook 09): the transmission conditions trained beside the paper's three, in the
study's own loops and seeds, and the bits each receives added to the study's results table (``bits``).

It reuses what the study has: the outer loop and the paper's conditions resume (a study whose notebooks 01 and 02 ran
trains only the new conditions' runs).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import pandas as pd

from ..config import Preset
from ..launch import DistContext, init_distributed
from .bits import bits_rows
from .conditions import CONDITIONS, TRANSMISSION_CONDITIONS
from .curves import inner_curves
from .generations import parse_condition, run_inner_loop, run_outer_loop
from .layout import StudyLayout


def plan_conditions(preset: Preset, conditions: Sequence[str] | None = None) -> list[str]:
    """The paper's three, then ``conditions`` (default: the preset's ``eval.bandwidth``, else every transmission
    condition), each checked by name, without repeats."""
    chosen = list(conditions or preset.eval.bandwidth or TRANSMISSION_CONDITIONS)
    for condition in chosen:
        parse_condition(condition, preset.outer.criterion)  # an unknown name is refused before any run
    return list(dict.fromkeys([*CONDITIONS, *chosen]))


def run_bandwidth(
    preset: Preset,
    study: StudyLayout | str | Path,
    conditions: Sequence[str] | None = None,
    *,
    seeds: Sequence[int] | None = None,
    ctx: DistContext | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Run (or resume) the outer loop and the inner runs of ``plan_conditions(preset, conditions)`` x ``seeds``
    (default: the preset's), add their bits to the results table; return their val-loss curves (condition, seed, step,
    tokens, val_loss)."""
    study = StudyLayout(study) if not isinstance(study, StudyLayout) else study
    ctx = ctx or init_distributed()
    chosen, seeds = plan_conditions(preset, conditions), tuple(seeds or preset.inner.seeds)
    run_outer_loop(preset, study, ctx=ctx, progress=progress)
    run_inner_loop(preset, study, conditions=tuple(chosen), seeds=seeds, ctx=ctx, progress=progress)
    if ctx.is_main:
        study.results.add(bits_rows(preset, study, chosen, seeds))
    ctx.barrier()
    curves = inner_curves(study, "val_loss")
    return curves[curves["condition"].isin(chosen) & curves["seed"].isin(seeds)].reset_index(drop=True)
