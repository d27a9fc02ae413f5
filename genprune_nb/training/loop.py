"""The training loop: gradient accumulation, the masked AdamW step, validation, checkpoints and resume.

One function, ``train``, serves the plain run, every outer-loop generation and every inner-loop condition:
they differ only in the schedule they run (``preset.train`` or an inner-loop schedule), the initial weights and the
masks; the preset itself is stored unchanged. Under torchrun it runs data
parallel (gradients synchronised on the last micro-step only; rank 0 alone logs and writes).
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ..config import Preset, TrainConfig, dumps
from ..connectome.pruning import group_sparsity_penalty
from ..data.loader import TokenLoader
from ..data.manifest import shard_files
from ..errors import GenpruneError
from ..launch import DistContext, init_distributed
from ..model.gpt import GPT, flops_per_token, peak_flops
from ..model.lm import autocast_context, validation_batches, validation_loss
from ..progress import tqdm
from ..storage import atomic, hashing
from ..storage.locking import run_dir_lock
from . import provenance
from .checkpoint import (
    MASKS_FILE,
    SCHEDULE,
    Checkpoint,
    clean_stale,
    drop_optimizer_state,
    latest_checkpoint,
    load_model_state,
    prune_checkpoints,
    restore_training_state,
    save_checkpoint,
)
from .distill import Teacher
from .optim import WeightMask, build_optimizer, set_lr
from .runlog import RunLog
from .schedule import lr_at


class RunDirError(GenpruneError, RuntimeError):
    """The run directory already holds a run and neither resume nor overwrite was asked for."""


@dataclass(frozen=True)
class TrainResult:
    run_dir: Path
    steps: int
    final_val_loss: float | None
    checkpoint: Checkpoint | None


def train_step(
    net: nn.Module,
    optimizer: torch.optim.Optimizer,
    weight_mask: WeightMask | None,
    next_batch: Callable[[], tuple[torch.Tensor, torch.Tensor]],
    accum: int,
    ctx: DistContext,
    cfg: TrainConfig,
    penalty: Callable[[], torch.Tensor] | None = None,
    teacher: Teacher | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimizer step over ``accum`` micro-batches: the masked AdamW step of DESIGN.md §3.

    Gradients are synchronised across ranks on the last micro-step only; pruned entries are masked out of the
    gradient before clipping and re-zeroed after the step. ``penalty()`` (a regulariser of the weights, fp32) is
    added once per step, to the last micro-step's loss. With a ``teacher`` each micro-batch's loss is its
    distillation objective (``distill.Teacher.objective``; it reads the student's logits, so only without one is the
    loss taken ``cfg.loss_chunk`` positions at a time). Returns (summed micro-batch cross-entropy, gradient norm).
    """
    loss_sum = torch.zeros((), device=ctx.device)
    for micro in range(accum):
        x, y = (t.to(ctx.device, non_blocking=True) for t in next_batch())
        last = micro == accum - 1
        with contextlib.nullcontext() if last or not ctx.distributed else net.no_sync():
            with autocast_context(ctx.device, cfg.autocast_dtype, cfg.autocast_cpu):
                logits, loss = net(x, y, loss_chunk=cfg.loss_chunk if teacher is None else 0)
                objective = (teacher.objective(x, logits, loss) if teacher is not None else loss) / accum
            if penalty is not None and last:
                objective = objective + penalty()
            objective.backward()
            del logits, objective  # the logits ([micro batch, T, vocab]) need not outlive their backward
        loss_sum += loss.detach().float()
    if weight_mask is not None:
        weight_mask.apply_to_grads()
    grad_norm = torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.grad_clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    if weight_mask is not None:
        weight_mask.apply_to_weights()
    return loss_sum, grad_norm


def _holding_run_dir_lock(train_fn: Callable[..., TrainResult]) -> Callable[..., TrainResult]:
    """Run ``train_fn(preset, run_dir, ...)`` holding the run dir's lock (rank 0 only): one writer per run dir."""

    @functools.wraps(train_fn)
    def locked(preset: Preset, run_dir: str | Path, *args, ctx: DistContext | None = None, **kwargs) -> TrainResult:
        ctx = ctx or init_distributed()
        with run_dir_lock(run_dir) if ctx.is_main else contextlib.nullcontext():
            return train_fn(preset, run_dir, *args, ctx=ctx, **kwargs)

    return locked


@_holding_run_dir_lock
def train(
    preset: Preset,
    run_dir: str | Path,
    *,
    schedule: TrainConfig | None = None,
    train_files: Sequence[str | Path] | None = None,
    val_files: Sequence[str | Path] | None = None,
    init_state: Mapping[str, torch.Tensor] | None = None,
    masks: Mapping[str, torch.Tensor] | None = None,
    resume: bool = False,
    overwrite: bool = False,
    until: int | None = None,
    group_lasso: bool = False,
    origin: Mapping[str, Any] | None = None,
    stream_start: Mapping[str, Any] | None = None,
    teacher: Teacher | None = None,
    ctx: DistContext | None = None,
    progress: bool = True,
) -> TrainResult:
    """Train ``preset``'s model on ``schedule`` (default ``preset.train``) into ``run_dir``; with ``resume`` continue
    from its latest checkpoint. Checkpoints store ``preset`` unchanged and the schedule run beside it
    (``Checkpoint.schedule``). A finished run (``steps`` reached; ``steps`` is in its fingerprint, so it is never
    extended) keeps float32 weights but no optimizer moments; resuming it changes nothing and returns its result.

    ``init_state`` replaces the random init (e.g. a connectome's signed constants); ``masks`` (parameter name ->
    0/1 tensor) are held fixed: pruned weights are exactly zero at every forward. Both are stored (the weights in
    every checkpoint, the masks once in the run folder), so a resumed run needs neither. ``until`` stops after that
    step with a checkpoint (a time-boxed session); a later ``resume`` continues exactly as if the run had never stopped.
    ``group_lasso`` (an outer-loop generation of the structured criterion) adds ``preset.outer.group_sparsity`` x
    the group lasso over MLP units (``pruning.group_sparsity_penalty``).

    ``stream_start`` (a ``TokenLoader.stream_position``) is where in ``train_files`` a fresh run starts reading (an
    outer-loop generation continuing the stream of the previous one); a resumed run continues from its checkpoint.

    ``teacher`` (``distill.Teacher``) turns the loss into its distillation objective; its cost is logged with the
    training loss: ``teacher_flops`` (its forward FLOPs so far, 2N + 4 L C T per token) and ``teacher_time_fraction``
    (the share of this process's training time its forwards took). Record it in ``origin``: it is not hashed.

    ``origin`` describes the start state for the run's fingerprint (e.g. the connectome it grows from, and
    ``stream_start`` when given); by default ``init_state`` and ``masks`` are hashed. A run is resumed only under
    the fingerprint it recorded (``provenance``); under another one it is refused, or restarted from scratch with
    ``overwrite``. A second process training into the same ``run_dir`` fails at once (``locking``).
    """
    ctx = ctx or init_distributed()
    cfg, run_dir = schedule or preset.train, Path(run_dir)
    group_sparsity = preset.outer.group_sparsity if group_lasso else 0.0
    train_files = list(train_files) if train_files is not None else shard_files(preset, "large")
    val_files = list(val_files) if val_files is not None else shard_files(preset, "val")
    accum = cfg.grad_accum_steps(ctx.world_size)

    if ctx.device.type == "cuda":  # TF32 for the fp32 matmuls that autocast leaves (the optimizer, norms)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    torch.manual_seed(cfg.seed)
    model = GPT(preset.model, seed=cfg.seed)
    if init_state is not None:
        load_model_state(model, dict(init_state))
    model.to(ctx.device)
    weight_mask = WeightMask(model, masks) if masks else None
    optimizer = build_optimizer(model, cfg, ctx.device)
    vocab, tokenizer = preset.model.vocab_size, preset.model.tokenizer
    train_loader = TokenLoader(train_files, cfg.micro_batch_size, cfg.seq_len, ctx.rank, ctx.world_size,
                               shuffle_seed=cfg.seed if cfg.shuffle else None, vocab_size=vocab, tokenizer=tokenizer)
    val_loader = TokenLoader(val_files, cfg.micro_batch_size, cfg.seq_len, ctx.rank, ctx.world_size,
                             vocab_size=vocab, tokenizer=tokenizer)
    val_batches = validation_batches(cfg.val_tokens, val_loader, required=bool(cfg.val_every))
    log = RunLog(run_dir / "metrics.jsonl", enabled=ctx.is_main)

    if origin is None and init_state is None and masks is None and resume:  # resuming needs no start: the run's
        origin = (provenance.read(run_dir) or {}).get("start")
    fingerprint = provenance.run_fingerprint(preset.model, cfg, train_files, val_files,
                                             origin or provenance.tensor_start(init_state, masks, cfg.seed),
                                             group_sparsity)
    start, val_loss_at_start = 0, None
    if ctx.is_main:
        clean_stale(run_dir)
    ctx.barrier()
    ckpt = _admit(run_dir, fingerprint, resume=resume, overwrite=overwrite, ctx=ctx)
    resumed = ckpt is not None and resume
    if resumed and ckpt.step >= cfg.steps:  # finished: nothing to train, nothing to load (no moments are left)
        if ctx.is_main:  # a kill may have come between its last save and its pruning
            _prune(run_dir, ckpt.step, cfg)
        ctx.barrier()
        return TrainResult(run_dir, ckpt.step, ckpt.state().get("val_loss"), ckpt)
    if resumed:
        saved_masks = ckpt.masks()
        if saved_masks:
            weight_mask = WeightMask(model, saved_masks)
        state = restore_training_state(ckpt, model, optimizer)
        train_loader.load_state_dict(state["loader"])
        start, val_loss_at_start = state["step"], state.get("val_loss")
        log.truncate_after(start)
        if ctx.is_main:  # a kill may have come between the last save and its pruning
            _prune(run_dir, start, cfg)
    elif ckpt is not None and not overwrite:
        raise RunDirError(f"{run_dir} already holds a run (latest {ckpt.path.name}); pass resume or overwrite")
    elif ctx.is_main and log.path.exists():
        log.path.unlink()
    if not resumed and stream_start is not None:
        train_loader.seek(stream_start)
    if weight_mask is not None:
        weight_mask.apply_to_weights()
    if ctx.is_main:
        atomic.write_text(run_dir / "config.json", dumps(preset) + "\n")

    net: nn.Module = torch.compile(model) if cfg.compile else model
    if ctx.distributed:
        net = DistributedDataParallel(net, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None)

    penalty = (lambda: group_sparsity * group_sparsity_penalty(model)) if group_sparsity else None
    if teacher is not None:
        teacher.to(ctx.device)
    flops_tok = flops_per_token(preset.model, cfg.seq_len)
    peak = peak_flops(ctx.device)
    keep = set(cfg.keep_checkpoints) | {cfg.steps}
    val_loss = val_loss_at_start
    shown: dict[str, str] = {}
    last = ckpt if resumed else None
    bar = tqdm(total=cfg.steps, initial=start, desc=f"train {run_dir.parent.name}/{run_dir.name}",  # Connectome/seed_0
               disable=not (progress and ctx.is_main), dynamic_ncols=True)
    t0 = time.perf_counter()
    model.train()
    stop = min(until, cfg.steps) if until is not None else cfg.steps
    if not resumed and 0 in keep:  # the starting point, for curves from iteration 0 (a resumed run has it)
        if val_batches:
            val_loss = validation_loss(net, val_loader, val_batches, ctx, cfg.autocast_dtype, cfg.autocast_cpu,
                                       cfg.loss_chunk)
            log.append({"step": 0, "tokens": 0, "val_loss": val_loss})
        last = _save(run_dir, 0, model, preset, cfg, optimizer, weight_mask, train_loader, val_loss, ctx)
    for step in range(start, stop):
        lr = lr_at(step, cfg)
        set_lr(optimizer, lr)
        loss_sum, grad_norm = train_step(net, optimizer, weight_mask, train_loader.next_batch, accum, ctx, cfg,
                                         penalty, teacher)
        done = step + 1
        bar.update(1)
        if done % cfg.log_every == 0 or done == cfg.steps:
            train_loss = ctx.all_reduce_mean(loss_sum / accum).item()
            if not math.isfinite(train_loss):
                raise FloatingPointError(f"training loss is {train_loss} at step {done} of {run_dir}")
            dt = time.perf_counter() - t0
            tok_s = cfg.tokens_per_step * (done - start) / dt
            record = {"step": done, "tokens": done * cfg.tokens_per_step, "lr": lr, "train_loss": train_loss,
                      "grad_norm": float(grad_norm), "tokens_per_s": tok_s}
            if penalty is not None:
                with torch.no_grad():
                    record["group_penalty"] = float(penalty())
            if teacher is not None:
                record["teacher_flops"] = done * cfg.tokens_per_step * teacher.flops_per_token(cfg.seq_len)
                record["teacher_time_fraction"] = teacher.seconds / dt
            if peak:
                record["mfu"] = flops_tok * tok_s / (peak * ctx.world_size)
            log.append(record)
            shown["loss"] = f"{train_loss:.3f}"
            bar.set_postfix(shown, refresh=False)
        if (cfg.val_every and done % cfg.val_every == 0) or (done == cfg.steps and val_batches):
            val_loss = validation_loss(net, val_loader, val_batches, ctx, cfg.autocast_dtype, cfg.autocast_cpu,
                                       cfg.loss_chunk)
            log.append({"step": done, "tokens": done * cfg.tokens_per_step, "val_loss": val_loss})
            shown["val"] = f"{val_loss:.3f}"
            bar.set_postfix(shown, refresh=False)
        if (cfg.checkpoint_every and done % cfg.checkpoint_every == 0) or done in keep or done == stop:
            last = _save(run_dir, done, model, preset, cfg, optimizer, weight_mask, train_loader, val_loss, ctx)
    bar.close()
    return TrainResult(run_dir, stop, val_loss, last)


def recipe_differences(run_dir: Path, fingerprint: Mapping[str, Any], ckpt: Checkpoint) -> list[provenance.Difference]:
    """How ``fingerprint`` differs from the recipe ``ckpt`` of ``run_dir`` was trained with.

    That recipe is the run's ``fingerprint.json``; for a checkpoint it does not describe (a run written before
    fingerprints, or a checkpoint that records another run fingerprint) the model and the schedule the checkpoint
    saved.
    """
    recorded = provenance.read(run_dir)
    made_under = ckpt.state().get("run_fingerprint")
    if recorded is None or (made_under and made_under != hashing.digest(recorded)):
        recorded = provenance.preset_fingerprint(ckpt.preset(), ckpt.schedule())
    return provenance.compare(recorded, fingerprint)


def _admit(run_dir: Path, fingerprint: dict[str, Any], *, resume: bool, overwrite: bool,
           ctx: DistContext) -> Checkpoint | None:
    """The provenance gate: the checkpoint to resume from, or None to start afresh; refuses another recipe.

    A run holding checkpoints resumes only under its recorded fingerprint; ``overwrite`` restarts it from scratch
    instead (its checkpoints go here, its metrics with the fresh start). The fingerprint is recorded before the
    run writes anything else.
    """
    ckpt = latest_checkpoint(run_dir)
    differences = recipe_differences(run_dir, fingerprint, ckpt) if ckpt is not None else []
    if ckpt is not None and resume and differences and not overwrite:
        raise provenance.refusal(run_dir, differences)
    restart = ckpt is not None and overwrite and (bool(differences) or not resume)
    ctx.barrier()  # every rank has decided before rank 0 changes the run dir
    if ctx.is_main and (ckpt is None or restart or resume):
        if restart:
            (run_dir / "checkpoints" / "latest").unlink(missing_ok=True)  # no pointer into a half-removed folder
            atomic.discard(run_dir / "checkpoints")  # one rename: never a half-deleted step_* left behind
            (run_dir / MASKS_FILE).unlink(missing_ok=True)  # the restarted run stores its own
        if provenance.read(run_dir) != fingerprint:
            provenance.write(run_dir, fingerprint)
    ctx.barrier()
    return None if restart else ckpt


def _save(run_dir, step, model, preset, cfg, optimizer, weight_mask, loader, val_loss, ctx) -> Checkpoint | None:
    """Rank 0 writes the checkpoint of ``step`` and drops rolling ones beyond ``keep_last``; all ranks wait.

    Once the run is complete its final checkpoint (float32) is written without optimizer moments (a finished run
    is never resumed to train further), the rolling ones go and the kept steps become evaluation checkpoints in
    ``cfg.kept_dtype`` (no optimizer moments; see ``checkpoint.to_evaluation``).
    """
    ckpt = None
    if ctx.is_main:
        ckpt = save_checkpoint(
            run_dir, step, model=model, preset=preset, optimizer=optimizer if step < cfg.steps else None,
            masks=weight_mask.state_dict() if weight_mask else None,
            state={"tokens": step * cfg.tokens_per_step, "loader": loader.state_dict(), "val_loss": val_loss,
                   "world_size": ctx.world_size, SCHEDULE: provenance.jsonable(dataclasses.asdict(cfg))},
        )
        _prune(run_dir, step, cfg)
    ctx.barrier()
    return ckpt


def _prune(run_dir: Path, step: int, cfg: TrainConfig) -> None:
    """Drop the checkpoints a run at ``step`` no longer needs (see ``_save``)."""
    finished = step >= cfg.steps
    prune_checkpoints(run_dir, 1 if finished else cfg.keep_last, set(cfg.keep_checkpoints) | {cfg.steps},
                      cfg.kept_dtype)
    latest = latest_checkpoint(run_dir)
    if finished and latest is not None:  # a final checkpoint written before finished runs dropped their moments
        drop_optimizer_state(latest)
