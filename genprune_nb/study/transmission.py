"""What else the outer loop could hand down: the start of each transmission condition of the inner loop.

- ``TrainedSparse``: the last outer generation's trained weights (its final checkpoint, the weights the final
  connectome was pruned from and took its signs from) at the connectome's survivors; the pruned weights are 0 and held
  there (the connectome's masks, as for Connectome).
- ``TrainedDense``: that same checkpoint's weights as they are, fine-tuned with no mask. Generations after the first
  train under the previous connectome's mask, so "dense" means the checkpoint as trained: the last generation's
  survivors of the previous pruning carry trained values, the weights pruned before it are exact zeros (no longer held
  there). Nothing of the last pruning is applied.
- ``Distilled``: NoConnectome's start (the standard init of the seed), trained with a teacher (``training.distill``):
  by default the outer loop's generation 0 final checkpoint (dense, trained on L), else ``inner.distill_teacher``.

A criterion in brackets (``TrainedSparse[attribution]``) picks that criterion's outer loop. Each start records what
it came from (the connectome's digest, the trained checkpoint's or the teacher's ``Checkpoint.fingerprint``, the
distillation settings), so a run made from another source is refused on resume.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ..config import Preset
from ..connectome.pruning import check_covers
from ..connectome.wiring import Connectome
from ..model.gpt import GPT
from ..training.checkpoint import FULL_PRECISION, Checkpoint, CheckpointError, latest_checkpoint, resolve_checkpoint
from ..training.distill import Teacher, load_teacher
from .conditions import TRANSMISSION_CONDITIONS
from .layout import StudyLayout


@dataclass(frozen=True)
class Start:
    """What an inner run of a transmission condition starts from: weights, masks (None: dense), the fingerprint's
    description of its start (``origin``) and the teacher (Distilled only)."""

    init_state: dict[str, torch.Tensor]
    masks: dict[str, torch.Tensor] | None
    origin: dict
    teacher: Teacher | None = None


def final_outer_checkpoint(preset: Preset, study: StudyLayout, criterion: str, generation: int | None = None
                           ) -> Checkpoint:
    """The final (fully trained) checkpoint of outer generation ``generation`` (default: the last) of ``criterion``;
    refused, naming the folder, when that generation is not trained to ``train.steps`` yet."""
    g = preset.outer.generations - 1 if generation is None else generation
    run_dir = study.generation(g, criterion)
    ckpt = latest_checkpoint(run_dir)
    if ckpt is None or ckpt.step < preset.train.steps:
        raise FileNotFoundError(f"{run_dir} holds no final checkpoint of outer generation {g} (criterion "
                                f"{criterion!r}, {preset.train.steps} steps): run the outer loop first")
    if ckpt.weights_dtype() != FULL_PRECISION:  # a middle generation of a longer loop: kept for the analyses only
        raise CheckpointError(f"{ckpt.path} holds {ckpt.weights_dtype()} weights (outer generation {g} was kept in "
                              "train.kept_dtype, as a generation between the first and the last of a longer outer "
                              f"loop): a start needs {FULL_PRECISION} ones; run this outer loop in another study "
                              "folder (--run-root)")
    return ckpt


def teacher_checkpoint(preset: Preset, study: StudyLayout, criterion: str) -> Checkpoint:
    """Distilled's teacher: ``inner.distill_teacher`` (a checkpoint, or a run folder: its latest) when set, else the
    final checkpoint of outer generation 0 of ``criterion`` (the dense model trained on L)."""
    if preset.inner.distill_teacher:
        return resolve_checkpoint(Path(preset.inner.distill_teacher))
    return final_outer_checkpoint(preset, study, criterion, generation=0)


def _trained_weights(ckpt: Checkpoint, preset: Preset) -> dict[str, torch.Tensor]:
    """The checkpoint's weights, refused unless its model is the inner loop's."""
    if ckpt.preset().model != preset.model:
        raise ValueError(f"{ckpt.path} is a model of another shape than the inner loop's ({ckpt.preset().model} vs "
                         f"{preset.model})")
    return ckpt.load_model().state_dict()


def trained_sparse_state(connectome: Connectome, trained: dict[str, torch.Tensor], preset: Preset, seed: int
                         ) -> dict[str, torch.Tensor]:
    """``trained`` where the connectome wires, exact 0 where it prunes; tensors outside it (exempted embeddings) get
    the standard init of ``seed``, as a Connectome run's do."""
    state = GPT(preset.model, seed=seed).state_dict()
    check_covers(connectome.signs, state, "connectome", connectome.meta.get("prune_embeddings"))
    for name, mask in connectome.masks().items():
        state[name] = torch.where(mask, trained[name], torch.zeros_like(trained[name]))
    return state


def transmission_start(base: str, criterion: str, preset: Preset, study: StudyLayout, seed: int,
                       connectome: Connectome | None = None, connectome_digest: str | None = None) -> Start:
    """The start of transmission condition ``base`` (``TRANSMISSION_CONDITIONS``) of ``criterion``'s outer loop for
    ``seed``; TrainedSparse needs that loop's final ``connectome`` (and its digest)."""
    origin = {"condition": base, "seed": seed}
    if base == "TrainedSparse":
        if connectome is None:
            raise ValueError("TrainedSparse needs the final connectome of its outer loop")
        ckpt = final_outer_checkpoint(preset, study, criterion)
        state = trained_sparse_state(connectome, _trained_weights(ckpt, preset), preset, seed)
        return Start(state, connectome.masks(), {**origin, "connectome": connectome_digest,
                                                 "trained": ckpt.fingerprint()})
    if base == "TrainedDense":
        ckpt = final_outer_checkpoint(preset, study, criterion)
        return Start(_trained_weights(ckpt, preset), None, {**origin, "trained": ckpt.fingerprint()})
    if base == "Distilled":
        inner = preset.inner
        teacher = load_teacher(teacher_checkpoint(preset, study, criterion), preset.model, inner.distill_alpha,
                               inner.distill_temperature)
        distill = {"alpha": inner.distill_alpha, "temperature": inner.distill_temperature}
        return Start(GPT(preset.model, seed=seed).state_dict(), None,
                     {**origin, "teacher": teacher.digest, "distill": distill}, teacher)
    raise ValueError(f"{base!r} is no transmission condition; choose from {', '.join(TRANSMISSION_CONDITIONS)}")
