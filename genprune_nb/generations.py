"""The two loops of the study.

Outer loop ("evolution", on the large corpus L): train, prune a fraction of each tensor's survivors, re-initialise
the survivors to sign x c, repeat for G generations; the last generation's ternary pattern is the connectome.
Inner loop ("development", on the small corpus S): train every condition x seed from its starting point with
pruned weights held at zero, keeping checkpoints for the evaluations.

Both are resumable at any point: a finished generation (its connectome file exists) is skipped, an unfinished
one resumes from its latest checkpoint; likewise for every inner run.
"""
from __future__ import annotations

import dataclasses
import math
import shutil
from pathlib import Path
from typing import Mapping

import torch
from tqdm.auto import tqdm

from . import atomic
from .checkpoint import latest_checkpoint
from .config import Preset
from .connectome import Connectome, file_bits_per_weight, reinit_scales
from .launch import DistContext, init_distributed
from .model import GPT
from .pruning import get_criterion, prunable_names, prune
from .results import ModelRef
from .layout import StudyLayout
from .train import shard_files, train

CONDITIONS = ("Connectome", "RandomConnectome", "NoConnectome")


def _generation_start(preset: Preset, study: StudyLayout, g: int):
    """(init_state, masks) of generation g: random init for g = 0, else the previous connectome."""
    if g == 0:
        return None, None
    previous = Connectome.load(study.connectome(g - 1))
    return previous.init_state(preset.model, preset.train.seed), previous.masks()


def _prune_generation(preset: Preset, study: StudyLayout, g: int, masks: Mapping[str, torch.Tensor] | None) -> dict:
    """Prune generation g's trained weights into its connectome file; return the generation summary."""
    outer = preset.outer
    ckpt = latest_checkpoint(study.generation(g))
    weights = ckpt.load_model().state_dict()
    names = prunable_names(weights, outer.prune_embeddings)
    current = {n: (masks[n] if masks else torch.ones_like(weights[n], dtype=torch.bool)) for n in names}
    new_masks = prune(weights, current, outer.prune_fraction, get_criterion(outer.criterion), outer.scope)
    sign_weights = weights if outer.sign_source == "trained" else GPT(preset.model, seed=preset.train.seed).state_dict()
    connectome = Connectome.from_weights(
        new_masks, sign_weights, reinit_scales(preset.model, names, outer),
        meta={"generation": g, "criterion": outer.criterion, "scope": outer.scope, "preset": preset.name},
    )
    path = study.connectome(g)
    size = connectome.save(path)
    summary = {
        "generation": g,
        "val_loss": ckpt.state().get("val_loss"),
        "density": connectome.density(),
        "densities": connectome.densities(),
        "entropy_bits_per_weight": connectome.entropy_bits(),
        "file_bits_per_weight": file_bits_per_weight(path, connectome.n_weights),
        "file_bytes": size,
        "n_weights": connectome.n_weights,
    }
    atomic.write_json(study.generation(g) / "generation.json", summary)
    return summary


def run_outer_loop(
    preset: Preset, study: StudyLayout | str | Path, *, ctx: DistContext | None = None, progress: bool = True
) -> Connectome:
    """Run (or resume) the G generations; write ``outer/connectome.gpc`` and return the final connectome."""
    study = StudyLayout(study) if not isinstance(study, StudyLayout) else study
    ctx = ctx or init_distributed()
    large, val = shard_files(preset, "large"), shard_files(preset, "val")
    for g in tqdm(range(preset.outer.generations), desc="generations", disable=not (progress and ctx.is_main)):
        if study.connectome(g).exists():
            continue
        init_state, masks = _generation_start(preset, study, g)
        train(preset, study.generation(g), train_files=large, val_files=val, init_state=init_state, masks=masks,
              resume=True, ctx=ctx, progress=progress)
        if ctx.is_main:
            _prune_generation(preset, study, g, masks)
        ctx.barrier()
    final = study.connectome(preset.outer.generations - 1)
    if ctx.is_main and not study.connectome_file.exists():
        with atomic.atomic_path(study.connectome_file) as tmp:
            shutil.copyfile(final, tmp)
    ctx.barrier()
    return Connectome.load(study.connectome_file)


def condition_start(
    condition: str, connectome: Connectome | None, preset: Preset, seed: int
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor] | None]:
    """(initial weights, masks) of one inner-loop condition and seed.

    Connectome: the connectome's sign x c, its masks. RandomConnectome: the same per-tensor density with random
    positions and signs (drawn from ``seed``). NoConnectome: dense, the standard normal init of ``seed``.
    """
    if condition == "NoConnectome":
        return GPT(preset.model, seed=seed).state_dict(), None
    if connectome is None:
        raise ValueError(f"condition {condition!r} needs a connectome; run the outer loop first")
    if condition == "Connectome":
        grown = connectome
    elif condition == "RandomConnectome":
        grown = connectome.random_control(seed)
    else:
        raise ValueError(f"unknown inner-loop condition {condition!r}; choose from {', '.join(CONDITIONS)}")
    return grown.init_state(preset.model, seed), grown.masks()


def inner_keep_steps(preset: Preset) -> tuple[int, ...]:
    """Steps whose checkpoints the inner loop keeps: 0, every ``keep_every``, the token milestones, the end."""
    cfg, inner = preset.inner_train, preset.inner
    steps = {0, cfg.steps}
    if inner.keep_every:
        steps.update(range(inner.keep_every, cfg.steps + 1, inner.keep_every))
    steps.update(min(math.ceil(t / cfg.tokens_per_step), cfg.steps) for t in inner.token_milestones)
    return tuple(sorted(steps))


def inner_preset(preset: Preset, seed: int) -> Preset:
    """The preset one inner run trains with: the inner schedule, this seed, the kept steps."""
    cfg = dataclasses.replace(preset.inner_train, seed=seed, keep_checkpoints=inner_keep_steps(preset))
    return dataclasses.replace(preset, train=cfg)


def run_inner_loop(
    preset: Preset,
    study: StudyLayout | str | Path,
    *,
    connectome: Connectome | str | Path | None = None,
    conditions: tuple[str, ...] | None = None,
    seeds: tuple[int, ...] | None = None,
    ctx: DistContext | None = None,
    progress: bool = True,
) -> list[ModelRef]:
    """Train (or resume) every condition x seed on S; return the kept checkpoints as ModelRefs.

    ``connectome`` defaults to the study's final connectome (``outer/connectome.gpc``).
    """
    study = StudyLayout(study) if not isinstance(study, StudyLayout) else study
    ctx = ctx or init_distributed()
    conditions = conditions or preset.inner.conditions
    seeds = seeds or preset.inner.seeds
    if connectome is None and study.connectome_file.exists():
        connectome = study.connectome_file
    if isinstance(connectome, (str, Path)):
        connectome = Connectome.load(connectome)
    small, val = shard_files(preset, "small"), shard_files(preset, "val")
    runs = [(c, s) for c in conditions for s in seeds]
    for condition, seed in tqdm(runs, desc="inner loop", disable=not (progress and ctx.is_main)):
        init_state, masks = condition_start(condition, connectome, preset, seed)
        train(inner_preset(preset, seed), study.inner_run(condition, seed), train_files=small, val_files=val,
              init_state=init_state, masks=masks, resume=True, ctx=ctx, progress=progress)
    return study.model_refs(conditions=list(conditions))
