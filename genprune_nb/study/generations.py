"""The two loops of the study.

Outer loop ("evolution", on the large corpus L): train, prune a fraction of each tensor's survivors, re-initialise
the survivors to sign x c, repeat for G generations; the last generation's ternary pattern is the connectome.
Each generation reads L on from where the previous one stopped (``data.outer_stream="continue"``, recorded in each
connectome as ``stream_end``) or from L's first token (``"restart"``).
Inner loop ("development", on the small corpus S): train every condition x seed from its starting point with
pruned weights held at zero, keeping checkpoints for the evaluations.

Both are resumable at any point: a finished generation is skipped (its summary is rebuilt if a kill lost it),
an unfinished one resumes from its latest checkpoint; likewise for every inner run. "Finished" means finished under
the current recipe: every run records its fingerprint (``provenance``) and each connectome the training and pruning
settings it came from, so a changed recipe is refused (naming the fields) unless ``overwrite`` asks to redo what it
changes.
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import re
import shutil
import warnings
from pathlib import Path
from typing import Mapping, Sequence

import torch

from ..config import Preset, TrainConfig, override
from ..connectome.pruning import CRITERIA, NEEDS_ATTRIBUTION, prunable_names, prune_by, taylor_scores
from ..connectome.wiring import Connectome, file_bits_per_weight, reinit_scales
from ..data.loader import TokenLoader
from ..data.manifest import shard_files
from ..launch import DistContext, init_distributed
from ..model.gpt import GPT
from ..model.lm import autocast_context
from ..progress import tqdm
from ..storage import atomic, hashing
from ..storage.locking import folder_lock
from ..training import provenance
from ..training.checkpoint import (
    FULL_PRECISION,
    clean_stale,
    drop_optimizer_state,
    latest_checkpoint,
    to_evaluation,
)
from ..training.loop import recipe_differences, train
from .conditions import BASELINE, CONDITION_BASES, CONDITIONS, TRANSMISSION_CONDITIONS
from .curves import val_loss_rows
from .layout import PAPER_CRITERION, StudyLayout
from .model_refs import ModelRef
from .transmission import transmission_start

_CONDITION = re.compile(r"^(\w+)(?:\[(\w+)\])?$")
_GROWN_FROM_CONNECTOME = ("Connectome", "RandomConnectome", "TrainedSparse")  # the bases that need a connectome


def _generation_start(preset: Preset, study: StudyLayout, g: int, criterion: str
                      ) -> tuple[Connectome | None, dict]:
    """(previous connectome, start record) of generation g: random init for g = 0, else the previous connectome.

    With ``data.outer_stream="continue"`` the record of g >= 1 also holds ``stream``: where in L generation g - 1
    stopped reading, hence g starts (``_stream_end``); generation 0 always starts at L's first token.
    """
    if g == 0:
        return None, provenance.tensor_start(None, None, preset.train.seed)
    previous = Connectome.load(study.connectome(g - 1, criterion))
    start = {"kind": "connectome", "generation": g - 1, "connectome": previous.digest(), "seed": preset.train.seed}
    if preset.data.outer_stream == "continue":
        start["stream"] = _stream_end(study, g - 1, criterion, previous)
    return previous, start


def _stream_end(study: StudyLayout, g: int, criterion: str, connectome: Connectome) -> dict:
    """Where generation g stopped reading L (``TokenLoader.stream_position``): recorded in its connectome's meta,
    else (a connectome written before it was recorded) in its final checkpoint's loader state."""
    recorded = connectome.meta.get("stream_end")
    if recorded is None:
        ckpt = latest_checkpoint(study.generation(g, criterion))
        if ckpt is None or "loader" not in ckpt.state():
            raise provenance.ProvenanceError(
                f"{study.connectome(g, criterion)} does not record where generation {g} stopped reading L, nor does a "
                "checkpoint of it, so the next generation cannot continue the stream: pass --overwrite to redo it, "
                "or set data.outer_stream=restart")
        recorded = ckpt.state()["loader"]
    return {k: int(recorded[k]) for k in ("shard", "position", "epoch")}


def _check_stream_length(preset: Preset, large: list[Path], world_size: int) -> None:
    """Warn when the outer loop reads more of L than it holds, so that it re-reads L from its first token.

    It reads G x steps x tokens-per-step when every generation continues the stream, steps x tokens-per-step (each
    generation afresh) when each restarts; L holds what its shards give at the loader's step size.
    """
    cfg, outer = preset.train, preset.outer
    loader = TokenLoader(large, cfg.micro_batch_size, cfg.seq_len, world_size=world_size)
    available = loader.steps_per_epoch() * loader.step_tokens
    per_generation = cfg.steps * cfg.tokens_per_step
    continuing = preset.data.outer_stream == "continue"
    needed = per_generation * (outer.generations if continuing else 1)
    if needed > available:
        reading = (f"{outer.generations} generations x {cfg.steps} steps x {cfg.tokens_per_step:,} tokens"
                   if continuing else f"each generation: {cfg.steps} steps x {cfg.tokens_per_step:,} tokens")
        warnings.warn(f"the outer loop reads {needed:,} tokens of L ({reading}) but L ({len(large)} shards) holds "
                      f"{available:,} at this batch size: it wraps to L's first token after {available:,} "
                      f"({needed / available:.2f} passes over L); add shards to data.large_files to avoid it",
                      stacklevel=3)


def _generation_fingerprint(preset: Preset, start: dict, large: list[Path], val: list[Path]) -> dict:
    """What determines generation g's training (``provenance.run_fingerprint``)."""
    group_sparsity = preset.outer.group_sparsity if _trains_with_group_lasso(preset) else 0.0
    return provenance.run_fingerprint(preset.model, preset.train, large, val, start, group_sparsity)


def _connectome_record(preset: Preset, fingerprint: dict) -> dict:
    """What determines generation g's connectome: its training's fingerprint and the pruning settings (the outer
    section but ``generations``). Stored in the connectome's meta, so the file vouches for itself."""
    outer = {k: v for k, v in dataclasses.asdict(preset.outer).items() if k != "generations"}
    return {**fingerprint, "outer": provenance.jsonable(outer)}


# Outer fields added after connectome records were introduced, with the behaviour of the code before them: a record
# that lacks one was made that way (so it matches only when that behaviour is asked for again).
_OUTER_BEFORE_FIELD = {"ties": "exact"}


def _recorded(path: Path) -> dict | None:
    """The record the connectome at ``path`` was made under; None if it is missing or older than records."""
    if not path.exists():
        return None
    recorded = Connectome.load(path).meta.get("provenance")
    if not isinstance(recorded, dict):
        return None
    if isinstance(recorded.get("outer"), dict):
        recorded = {**recorded, "outer": {**_OUTER_BEFORE_FIELD, **recorded["outer"]}}
    return recorded


def _attribution(preset: Preset, model: GPT, g: int, device: torch.device) -> dict[str, torch.Tensor]:
    """Taylor scores of ``model`` over ``outer.attribution_batches`` seeded micro-batches of the large corpus L."""
    cfg = preset.train
    loader = TokenLoader(shard_files(preset, "large"), cfg.micro_batch_size, cfg.seq_len,
                         shuffle_seed=cfg.seed + 7919 * (g + 1), vocab_size=preset.model.vocab_size)
    batches = (loader.next_batch() for _ in range(preset.outer.attribution_batches))
    return taylor_scores(model.to(device), batches,
                         forward_context=lambda: autocast_context(device, cfg.autocast_dtype, cfg.autocast_cpu))


def _prune_generation(
    preset: Preset, study: StudyLayout, g: int, masks: Mapping[str, torch.Tensor] | None, device: torch.device,
    record: dict | None = None,
) -> Connectome:
    """Prune generation g's trained weights into its connectome file (``record``: the recipe it came from)."""
    outer = preset.outer
    ckpt = latest_checkpoint(study.generation(g, outer.criterion))
    model = ckpt.load_model()
    weights = model.state_dict()
    names = prunable_names(weights, outer.prune_embeddings)
    current = {n: (masks[n] if masks else torch.ones_like(weights[n], dtype=torch.bool)) for n in names}
    scores = _attribution(preset, model, g, device) if outer.criterion in NEEDS_ATTRIBUTION else None
    new_masks = prune_by(outer.criterion, weights, current, outer.prune_fraction, outer.scope, ties=outer.ties,
                         seed=preset.train.seed + g, attribution=scores)
    sign_weights = weights if outer.sign_source == "trained" else GPT(preset.model, seed=preset.train.seed).state_dict()
    connectome = Connectome.from_weights(
        new_masks, sign_weights, reinit_scales(preset.model, names, outer),
        meta={"generation": g, "criterion": outer.criterion, "scope": outer.scope, "ties": outer.ties,
              "preset": preset.name, "prune_embeddings": outer.prune_embeddings, "provenance": record,
              "stream_end": {k: ckpt.state()["loader"][k] for k in ("shard", "position", "epoch")}},
    )
    connectome.save(study.connectome(g, outer.criterion))
    return connectome


def _finish_generation(preset: Preset, study: StudyLayout, g: int, criterion: str,
                       connectome: Connectome | None = None) -> None:
    """The bookkeeping of a pruned generation, redone after a kill: its ``generation.json`` summary (derived from
    the connectome file and the trained checkpoint: written for a ``connectome`` just pruned, rebuilt when missing)
    and its checkpoint made an evaluation checkpoint (a pruned generation is never resumed): no optimizer moments,
    and for the generations between the first and the last, which only the representation analyses read
    (``analysis.representations``), weights in ``train.kept_dtype``. Generation 0 (Distilled's teacher) and the last
    (TrainedSparse's and TrainedDense's start, see ``transmission``) stay float32. Called only once the connectome
    is written: pruning reads the float32 weights. A connectome placed without its training run gets a summary
    without val loss.
    """
    run_dir, path = study.generation(g, criterion), study.connectome(g, criterion)
    clean_stale(run_dir)  # a killed prune's or summary's temporary file
    target = run_dir / "generation.json"
    ckpt = latest_checkpoint(run_dir)
    if connectome is not None or not target.exists():
        connectome = connectome if connectome is not None else Connectome.load(path)
        atomic.write_json(target, {
            "generation": g,
            "criterion": criterion,
            "val_loss": ckpt.state().get("val_loss") if ckpt else None,
            "density": connectome.density(),
            "densities": connectome.densities(),
            "entropy_bits_per_weight": connectome.entropy_bits(),
            "file_bits_per_weight": file_bits_per_weight(path, connectome.n_weights),
            "file_bytes": path.stat().st_size,
            "n_weights": connectome.n_weights,
            "stream_end": connectome.meta.get("stream_end"),
        })
    if ckpt is not None:
        if 0 < g < preset.outer.generations - 1 and ckpt.weights_dtype() == FULL_PRECISION:
            to_evaluation(ckpt, preset.train.kept_dtype)
        else:  # generation 0 and the last stay float32 (one cast before, in a longer loop, stays as it is)
            drop_optimizer_state(ckpt)


def _trains_with_group_lasso(preset: Preset) -> bool:
    """Whether the outer loop's generations train with the group lasso: the structured criterion's only (it prunes
    whole MLP units, which the penalty drives towards zero); the weight is ``outer.group_sparsity``."""
    return preset.outer.criterion == "structured" and preset.outer.group_sparsity > 0


def _share_first_generation(preset: Preset, study: StudyLayout, fingerprint: dict) -> bool:
    """Start another criterion from the magnitude loop's trained generation 0 when its training was the same.

    Generation 0 is dense, so every criterion without a training penalty would train the identical model; sharing
    it saves a generation and makes the criteria prune the very same weights. "The same" is the same fingerprint
    (``fingerprint``, generation 0's here). The checkpoint's files are hard links to magnitude's where the file
    system allows (``_link_or_copy``). Returns whether it was shared.
    """
    criterion = preset.outer.criterion
    source, target = study.generation(0), study.generation(0, criterion)
    final = latest_checkpoint(source)
    if (criterion == PAPER_CRITERION or _trains_with_group_lasso(preset) or latest_checkpoint(target) is not None
            or final is None or final.step != preset.train.steps or recipe_differences(source, fingerprint, final)):
        return False
    provenance.write(target, fingerprint)
    with atomic.atomic_path(target / "checkpoints" / final.path.name) as tmp:
        shutil.copytree(final.path, tmp, copy_function=_link_or_copy)
    atomic.write_text(target / "checkpoints" / "latest", final.path.name + "\n")
    if (source / "metrics.jsonl").exists():
        with atomic.atomic_path(target / "metrics.jsonl") as tmp:
            shutil.copyfile(source / "metrics.jsonl", tmp)
    return True


def _link_or_copy(source: str, target: str) -> None:
    """Hard-link ``target`` to ``source`` (no second copy on disk), or copy it where linking fails (another file
    system, or one without hard links).

    Safe because no code writes a checkpoint file in place: ``save_checkpoint`` and ``to_evaluation`` build a new
    directory and rename it over the old one (``storage.atomic``), ``drop_optimizer_state`` unlinks one name, and
    ``latest`` / ``state.json`` are replaced by rename; so a change in one folder never reaches the other.
    """
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def run_outer_loop(
    preset: Preset,
    study: StudyLayout | str | Path,
    *,
    criterion: str | None = None,
    overwrite: bool = False,
    ctx: DistContext | None = None,
    progress: bool = True,
) -> Connectome:
    """Run (or resume) the G generations; write the final connectome and return it.

    ``criterion`` (default ``preset.outer.criterion``) chooses the pruning strategy; magnitude (the paper) lives in
    ``outer/``, any other in ``outer_<criterion>/``, which starts from magnitude's generation 0 where that is the
    same training (see ``_share_first_generation``). A generation done under another recipe is refused, naming
    the differing fields; with ``overwrite`` it is trained (or only pruned) again. One outer loop per folder at a
    time: a second one fails at once.
    """
    study = StudyLayout(study) if not isinstance(study, StudyLayout) else study
    ctx = ctx or init_distributed()
    if criterion is not None:
        preset = override(preset, {"outer.criterion": criterion})
    criterion = preset.outer.criterion
    with folder_lock(study.outer(criterion), "outer loop") if ctx.is_main else contextlib.nullcontext():
        _run_generations(preset, study, overwrite, ctx, progress)
    return Connectome.load(study.final_connectome(criterion))


def _run_generations(preset: Preset, study: StudyLayout, overwrite: bool, ctx: DistContext, progress: bool) -> None:
    """The body of ``run_outer_loop``, under its lock."""
    criterion = preset.outer.criterion
    large, val = shard_files(preset, "large"), shard_files(preset, "val")
    if ctx.is_main:
        _check_stream_length(preset, large, ctx.world_size)
        _share_first_generation(preset, study, _generation_fingerprint(preset, _generation_start(
            preset, study, 0, criterion)[1], large, val))
    ctx.barrier()
    desc = "generations" if criterion == PAPER_CRITERION else f"generations ({criterion})"
    for g in tqdm(range(preset.outer.generations), desc=desc, disable=not (progress and ctx.is_main)):
        previous, start = _generation_start(preset, study, g, criterion)
        fingerprint = _generation_fingerprint(preset, start, large, val)
        record = _connectome_record(preset, fingerprint)
        run_dir, path = study.generation(g, criterion), study.connectome(g, criterion)
        recorded = _recorded(path)  # a connectome without a record (older code) is made again
        if recorded is not None:
            differences = provenance.compare(recorded, record)
            if not differences:  # made under this recipe: done, but a kill may have lost its summary
                if ctx.is_main:
                    _finish_generation(preset, study, g, criterion)
                continue
            if not overwrite:
                raise provenance.refusal(path, differences, "pass --overwrite to redo that generation (trained "
                                         "again only if its training differs), or use another study folder "
                                         "(--run-root)")
        masks = previous.masks() if previous is not None else None
        trained = latest_checkpoint(run_dir)
        cast = trained is not None and trained.weights_dtype() != FULL_PRECISION  # kept for CKA: retrained to prune
        if (trained is None or trained.step < preset.train.steps or cast
                or recipe_differences(run_dir, fingerprint, trained)):  # else trained (or shared), not pruned
            # train() resumes a run of this recipe, refuses one of another, or with overwrite restarts it
            init_state = previous.init_state(preset.model, preset.train.seed) if previous is not None else None
            train(preset, run_dir, train_files=large, val_files=val, init_state=init_state, masks=masks,
                  resume=not cast, overwrite=overwrite or cast, group_lasso=_trains_with_group_lasso(preset),
                  origin=start, stream_start=start.get("stream"), ctx=ctx, progress=progress)
        if ctx.is_main:
            _finish_generation(preset, study, g, criterion,
                               _prune_generation(preset, study, g, masks, ctx.device, record))
        ctx.barrier()
    final, target = study.connectome(preset.outer.generations - 1, criterion), study.final_connectome(criterion)
    if ctx.is_main and (not target.exists() or hashing.file_sha256(target) != hashing.file_sha256(final)):
        atomic.remove_leftovers(study.outer(criterion))
        with atomic.atomic_path(target) as tmp:  # the inner loop's input is the last generation's, byte for byte
            shutil.copyfile(final, tmp)
    ctx.barrier()


def parse_condition(condition: str, default_criterion: str = PAPER_CRITERION) -> tuple[str, str | None]:
    """(base condition, pruning criterion) of a condition name: ``"Connectome[attribution]"`` ->
    ("Connectome", "attribution"); a plain condition uses ``default_criterion``; NoConnectome has none. The bases are
    the paper's three and the transmission conditions (``conditions.CONDITION_BASES``); for those the criterion
    names the outer loop they take their weights or teacher from (``transmission``).
    """
    match = _CONDITION.match(condition)
    if not match or match.group(1) not in CONDITION_BASES:
        raise ValueError(f"unknown inner-loop condition {condition!r}; choose from {', '.join(CONDITION_BASES)}, "
                         f"optionally with a pruning criterion, e.g. 'Connectome[attribution]'")
    base, criterion = match.group(1), match.group(2)
    if base == BASELINE:
        if criterion:
            raise ValueError(f"condition {condition!r}: NoConnectome has no connectome, hence no criterion")
        return base, None
    criterion = criterion or default_criterion
    if criterion not in CRITERIA:
        raise ValueError(f"condition {condition!r}: unknown pruning criterion {criterion!r}; "
                         f"choose one of {', '.join(CRITERIA)}")
    return base, criterion


def condition_start(
    condition: str, connectome: Connectome | None, preset: Preset, seed: int
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor] | None]:
    """(initial weights, masks) of one inner-loop condition and seed.

    Connectome: the connectome's sign x c, its masks. RandomConnectome: the same per-tensor density with random
    positions and signs (drawn from ``seed``). NoConnectome: dense, the standard normal init of ``seed``.
    A criterion suffix (``Connectome[attribution]``) only says which connectome is meant; pass that one.
    """
    base, _ = parse_condition(condition, preset.outer.criterion)
    if base in TRANSMISSION_CONDITIONS:
        raise ValueError(f"condition {condition!r} starts from the study's outer loop: see "
                         "transmission.transmission_start")
    if base == BASELINE:
        return GPT(preset.model, seed=seed).state_dict(), None
    if connectome is None:
        raise ValueError(f"condition {condition!r} needs a connectome; run the outer loop first")
    grown = connectome if base == "Connectome" else connectome.random_control(seed)
    return grown.init_state(preset.model, seed), grown.masks()


def inner_keep_steps(preset: Preset) -> tuple[int, ...]:
    """Steps whose checkpoints the inner loop keeps: 0, every ``keep_every``, the token milestones, the end."""
    cfg, inner = preset.inner_train, preset.inner
    steps = {0, cfg.steps}
    if inner.keep_every:
        steps.update(range(inner.keep_every, cfg.steps + 1, inner.keep_every))
    steps.update(min(math.ceil(t / cfg.tokens_per_step), cfg.steps) for t in inner.token_milestones)
    return tuple(sorted(steps))


def inner_schedule(preset: Preset, seed: int) -> TrainConfig:
    """The schedule one inner run trains on: ``inner_train`` with this seed and the kept steps."""
    return dataclasses.replace(preset.inner_train, seed=seed, keep_checkpoints=inner_keep_steps(preset))


def run_inner_loop(
    preset: Preset,
    study: StudyLayout | str | Path,
    *,
    connectome: Connectome | str | Path | None = None,
    conditions: tuple[str, ...] | None = None,
    seeds: tuple[int, ...] | None = None,
    overwrite: bool = False,
    ctx: DistContext | None = None,
    progress: bool = True,
) -> list[ModelRef]:
    """Train (or resume) every condition x seed on S; return the kept checkpoints as ModelRefs.

    Conditions are ``CONDITIONS`` or ``TRANSMISSION_CONDITIONS`` (``transmission``: TrainedSparse, TrainedDense,
    Distilled), optionally naming a pruning criterion: ``Connectome[attribution]`` grows from
    ``outer_attribution/connectome.gpc``. A plain Connectome / RandomConnectome uses ``connectome`` if given,
    else the final connectome of ``preset.outer.criterion`` (``outer/connectome.gpc`` for magnitude); TrainedSparse
    always the study's own (its weights come from the checkpoint that connectome was pruned from).
    A run's start is its condition, seed and what it grows from (the connectome's digest; the trained checkpoint's
    or the teacher's fingerprint): a run made from another source or recipe is refused, naming the differing fields,
    or with ``overwrite`` restarted. The logged val losses of
    the study's inner runs go to its results table (``curves.val_loss_rows``).

    A finished run is only evaluated (no step of the study starts from or distils from an inner run): its final
    checkpoint becomes an evaluation checkpoint in ``inner_train.kept_dtype`` like its other kept steps
    (``checkpoint.to_evaluation``; evaluations load it as float32), and a re-run leaves it as it is.
    """
    study = StudyLayout(study) if not isinstance(study, StudyLayout) else study
    ctx = ctx or init_distributed()
    conditions = conditions or preset.inner.conditions
    seeds = seeds or preset.inner.seeds
    parsed = {c: parse_condition(c, preset.outer.criterion) for c in conditions}
    loaded: dict[str | None, tuple[Connectome, str]] = {}  # criterion (None: the given one) -> (it, its digest)

    def connectome_of(condition: str) -> tuple[Connectome | None, str | None]:
        base, criterion = parsed[condition]
        if base not in _GROWN_FROM_CONNECTOME:
            return None, None
        key = None if connectome is not None and "[" not in condition and base != "TrainedSparse" else criterion
        if key not in loaded:
            if key is None:
                given = connectome if isinstance(connectome, Connectome) else Connectome.load(connectome)
            else:
                path = study.final_connectome(criterion)
                if not path.exists():
                    raise FileNotFoundError(f"condition {condition!r} needs {path}: run the outer loop with "
                                            f"criterion {criterion!r} first")
                given = Connectome.load(path)
            loaded[key] = (given, given.digest())
        return loaded[key]

    small, val = shard_files(preset, "small"), shard_files(preset, "val")
    runs = [(c, s) for c in conditions for s in seeds]
    for condition, seed in tqdm(runs, desc="inner loop", disable=not (progress and ctx.is_main)):
        grown, digest = connectome_of(condition)
        base, criterion = parsed[condition]
        if base in TRANSMISSION_CONDITIONS:
            begun = transmission_start(base, criterion, preset, study, seed, grown, digest)
            init_state, masks, start, teacher = begun.init_state, begun.masks, begun.origin, begun.teacher
        else:
            init_state, masks = condition_start(condition, grown, preset, seed)
            start, teacher = {"condition": base, "seed": seed, "connectome": digest}, None
        schedule = inner_schedule(preset, seed)
        result = train(preset, study.inner_run(condition, seed), schedule=schedule, train_files=small,
                       val_files=val, init_state=init_state, masks=masks, resume=True, overwrite=overwrite,
                       origin=start, teacher=teacher, ctx=ctx, progress=progress)
        if ctx.is_main and result.checkpoint is not None and result.checkpoint.step == schedule.steps:
            to_evaluation(result.checkpoint, schedule.kept_dtype)  # only evaluated, never a start or a teacher
    if ctx.is_main:  # Figure 1B-i from the results table alone, however the loop was run (CLI or notebook 02)
        rows = val_loss_rows(study, n=preset.inner_train.val_tokens)
        if not rows.empty:
            study.results.add(rows)
    ctx.barrier()
    return study.model_refs(conditions=list(conditions))


def run_criteria(
    preset: Preset,
    study: StudyLayout | str | Path,
    criteria: Sequence[str],
    *,
    seeds: tuple[int, ...] | None = None,
    ctx: DistContext | None = None,
    progress: bool = True,
) -> list[str]:
    """Compare pruning criteria: one outer loop per criterion, then ``Connectome[criterion]`` inner runs grown
    from each connectome; return the conditions to show side by side (``CONDITIONS``, then those runs).

    The preset's own criterion (``preset.outer.criterion``) needs no extra inner run: its connectome is the plain
    Connectome's. ``seeds`` are the extra runs' inner seeds (default: the preset's first seed, since one seed per
    criterion is the affordable first look). Everything resumes; an unknown criterion is refused before any run.
    """
    study = StudyLayout(study) if not isinstance(study, StudyLayout) else study
    criteria = list(dict.fromkeys(criteria))
    unknown = [c for c in criteria if c not in CRITERIA]
    if unknown:
        raise ValueError(f"unknown pruning criteria {unknown}; choose from {', '.join(CRITERIA)}")
    ctx = ctx or init_distributed()
    for criterion in criteria:
        run_outer_loop(preset, study, criterion=criterion, ctx=ctx, progress=progress)
    extra = tuple(f"Connectome[{c}]" for c in criteria if c != preset.outer.criterion)
    if extra:
        run_inner_loop(preset, study, conditions=extra, seeds=seeds or preset.inner.seeds[:1], ctx=ctx,
                       progress=progress)
    return [*CONDITIONS, *extra]
