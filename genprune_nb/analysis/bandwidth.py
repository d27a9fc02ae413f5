"""The bandwidth axis: what each inner-loop condition gains per bit the outer loop hands it, and at what compute.

``bandwidth_summary``: per condition its bits (``study.bits``), its final val loss and its effective data multiplier
against NoConnectome (``efficiency.effective_data_multiplier``), each a mean over seeds with a 95% t-interval
(``stats.mean_ci``). ``frontier``: the val-loss curves against inner-loop compute, the student's training FLOPs
(dense count: masks save no FLOPs in dense kernels) plus, for Distilled, its teacher's forward FLOPs (as logged).
"""
from __future__ import annotations

from typing import Mapping, Sequence

import pandas as pd

from ..config import Preset
from ..model.gpt import flops_per_token
from ..stats import mean_ci
from ..study.bits import BITS_TASK
from ..study.conditions import BASELINE
from ..study.curves import run_curve
from ..study.layout import StudyLayout
from ..study.results import final_rows, select
from .efficiency import effective_data_multiplier, require_columns

_SUMMARY = ["condition", "bits", "needs_teacher", "val_loss", "val_loss_low", "val_loss_high", "multiplier",
            "multiplier_low", "multiplier_high", "lower_bound", "n"]


def bits_by_condition(results: pd.DataFrame) -> pd.DataFrame:
    """Columns condition, bits, needs_teacher (bool) from the results table's ``BITS_TASK`` rows."""
    rows = select(results, BITS_TASK)
    wide = rows.pivot_table(index="condition", columns="metric", values="value", aggfunc="first").reset_index()
    require_columns(wide, ["bits", "needs_teacher"], f"{BITS_TASK} rows")
    wide["needs_teacher"] = wide["needs_teacher"].astype(bool)
    return wide[["condition", "bits", "needs_teacher"]]


def bandwidth_summary(curves: pd.DataFrame, bits: pd.DataFrame, *, baseline: str = BASELINE, fraction: float = 0.25,
                      level: float = 0.95) -> pd.DataFrame:
    """One row per condition of ``curves`` (condition, seed, step, tokens, val_loss) with its ``bits``: bits,
    needs_teacher, the final val loss and the effective data multiplier against ``baseline`` at ``fraction`` x the
    condition's last tokens (1 for the baseline itself), each mean with the ``level`` t-interval over seeds;
    ``lower_bound``: some seed's baseline never caught up (the multiplier is then a lower bound); n: seeds."""
    require_columns(curves, ["condition", "seed", "step", "tokens", "val_loss"], "curves")
    if not 0 < fraction <= 1:
        raise ValueError(f"the multiplier's milestone fraction must lie in (0, 1], got {fraction!r}")
    missing = sorted(set(curves["condition"]) - set(bits["condition"]))
    if missing:
        raise ValueError(f"no bits recorded for {missing}: run study.bandwidth.run_bandwidth for them")
    loss = mean_ci(final_rows(curves), ["condition"], "val_loss", level).rename(
        columns={"mean": "val_loss", "low": "val_loss_low", "high": "val_loss_high"})
    frames = []
    for condition in sorted(set(curves["condition"]) - {baseline}):
        milestone = fraction * float(curves.loc[curves["condition"] == condition, "tokens"].max())
        frames.append(effective_data_multiplier(curves, condition, baseline, [milestone]).per_seed)
    per_seed = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        columns=["condition", "multiplier", "lower_bound"])
    gain = mean_ci(per_seed.dropna(subset=["multiplier"]), ["condition"], "multiplier", level).rename(
        columns={"mean": "multiplier", "low": "multiplier_low", "high": "multiplier_high"})
    flags = per_seed.groupby("condition")["lower_bound"].any().rename("lower_bound").reset_index()
    out = loss[["condition", "val_loss", "val_loss_low", "val_loss_high", "n"]].merge(
        gain[["condition", "multiplier", "multiplier_low", "multiplier_high"]], on="condition", how="left")
    out = out.merge(flags, on="condition", how="left").merge(bits, on="condition", how="left")
    at_baseline = out["condition"] == baseline
    out.loc[at_baseline, ["multiplier", "multiplier_low", "multiplier_high"]] = 1.0
    out["lower_bound"] = out["lower_bound"].astype("boolean").fillna(False).astype(bool)
    return out[_SUMMARY].sort_values("bits", kind="stable").reset_index(drop=True)


def teacher_flops_per_token(study: StudyLayout, conditions: Sequence[str]) -> dict[str, float]:
    """Per condition whose runs logged a teacher (``teacher_flops``): its forward FLOPs per training token."""
    out = {}
    for condition in conditions:
        for run_dir in sorted((study.root / "inner" / condition).glob("seed_*")):
            cost = run_curve(run_dir, "teacher_flops")
            cost = cost[cost["tokens"] > 0]
            if len(cost):
                out[condition] = float((cost["teacher_flops"] / cost["tokens"]).iloc[-1])
                break
    return out


def with_compute(curves: pd.DataFrame, preset: Preset, teacher_flops: Mapping[str, float] | None = None
                 ) -> pd.DataFrame:
    """``curves`` with ``compute``: inner-loop FLOPs spent by each logged point, tokens x (the student's training FLOPs
    per token, ``model.gpt.flops_per_token`` + its teacher's forward FLOPs per token, from ``teacher_flops``)."""
    require_columns(curves, ["condition", "tokens"], "curves")
    student = flops_per_token(preset.model, preset.inner_train.seq_len)
    extra = curves["condition"].map(dict(teacher_flops or {})).fillna(0.0)
    return curves.assign(compute=curves["tokens"] * (student + extra))


def frontier(curves: pd.DataFrame, metric: str = "val_loss", level: float = 0.95) -> pd.DataFrame:
    """The training frontier: per condition and logged step, ``compute`` and ``metric``'s mean with its ``level``
    t-interval over seeds (columns condition, step, compute, mean, se, n, low, high)."""
    require_columns(curves, ["condition", "seed", "step", "compute", metric], "curves")
    return mean_ci(curves, ["condition", "step", "compute"], metric, level)
