"""Checkpoint directories, written atomically.

Layout of ``<run>/checkpoints/step_000100/``: ``model.safetensors``, ``masks.safetensors`` (if masked),
``optimizer.pt``, ``rng.pt``, ``config.json`` (the preset) and ``state.json`` (step, tokens, loader position,
last metrics, the sha256 of the weights and the digest of the run's fingerprint). ``<run>/checkpoints/latest`` names the newest complete one; it is updated only after the
directory is in place, so a kill mid-save leaves the previous checkpoint as "latest".
"""
from __future__ import annotations

import json
import random
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from . import atomic, provenance
from .config import Preset
from .model import GPT

_NAME = re.compile(r"^step_(\d{6,})$")
OPTIMIZER_FILE = "optimizer.pt"
_PREFIXES = ("_orig_mod.", "module.")  # torch.compile and DDP wrappers


class CheckpointError(RuntimeError):
    """A checkpoint directory is missing or incomplete; the message names it."""


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module under DDP / torch.compile wrappers."""
    while hasattr(model, "module") or hasattr(model, "_orig_mod"):
        model = getattr(model, "module", None) or getattr(model, "_orig_mod")
    return model


def model_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Contiguous CPU state dict without duplicates (a tied lm_head is stored once, as ``wte``)."""
    model = unwrap(model)
    state, seen = {}, set()
    for name, tensor in model.state_dict().items():
        if tensor.data_ptr() in seen:
            continue
        seen.add(tensor.data_ptr())
        state[name] = tensor.detach().to("cpu").contiguous()
    return state


def load_model_state(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load a state dict in the authors' layout; strips torch.compile / DDP prefixes, allows a tied head."""
    clean = {}
    for name, tensor in state.items():
        for prefix in _PREFIXES:
            if name.startswith(prefix):
                name = name[len(prefix):]
        clean[name] = tensor
    model = unwrap(model)
    if getattr(model, "config", None) is not None and model.config.tie_embeddings:
        clean.setdefault("lm_head.weight", clean.get("transformer.wte.weight"))
    model.load_state_dict(clean, strict=True)


@dataclass(frozen=True)
class Checkpoint:
    path: Path

    @property
    def step(self) -> int:
        return int(_NAME.match(self.path.name).group(1))

    def state(self) -> dict[str, Any]:
        return json.loads((self.path / "state.json").read_text())

    def preset(self) -> Preset:
        return Preset.from_dict(json.loads((self.path / "config.json").read_text()))

    def masks(self) -> dict[str, torch.Tensor] | None:
        f = self.path / "masks.safetensors"
        return {k: v.bool() for k, v in load_file(f).items()} if f.exists() else None

    def load_model(self, device: str | torch.device = "cpu") -> GPT:
        """A GPT with this checkpoint's config and weights (pruned weights are already zero)."""
        model = GPT(self.preset().model)
        load_model_state(model, load_file(self.path / "model.safetensors"))
        return model.to(device)

    def fingerprint(self) -> str:
        """Digest of what an evaluation of this checkpoint scores: the model shape and the weights.

        The weights' sha256 is read from state.json; checkpoints written before it was recorded are hashed.
        """
        weights = self.state().get("weights_sha256") or provenance.tensors_sha256(
            load_file(self.path / "model.safetensors"))
        return provenance.digest({"model": self.preset().to_dict()["model"], "weights": weights})


def save_checkpoint(
    run_dir: str | Path,
    step: int,
    *,
    model: nn.Module,
    preset: Preset,
    optimizer: torch.optim.Optimizer | None = None,
    masks: dict[str, torch.Tensor] | None = None,
    state: dict[str, Any] | None = None,
) -> Checkpoint:
    """Write ``<run>/checkpoints/step_{step}`` atomically, then point ``latest`` at it."""
    root = Path(run_dir) / "checkpoints"
    final = root / f"step_{step:06d}"
    recorded = provenance.read(run_dir)
    with atomic.atomic_path(final) as tmp:
        tmp.mkdir()
        weights = model_state(model)
        save_file(weights, str(tmp / "model.safetensors"))
        state = {**(state or {}), "weights_sha256": provenance.tensors_sha256(weights)}
        if recorded is not None:
            state["run_fingerprint"] = provenance.digest(recorded)
        if masks:
            save_file({k: v.to("cpu", torch.uint8).contiguous() for k, v in masks.items()},
                      str(tmp / "masks.safetensors"))
        if optimizer is not None:
            torch.save(optimizer.state_dict(), tmp / OPTIMIZER_FILE)
        torch.save(_rng_state(), tmp / "rng.pt")
        (tmp / "config.json").write_text(json.dumps(preset.to_dict(), indent=2, sort_keys=True))
        (tmp / "state.json").write_text(json.dumps({"step": step, **(state or {})}, indent=2, sort_keys=True))
    atomic.write_text(root / "latest", final.name + "\n")
    return Checkpoint(final)


def list_checkpoints(run_dir: str | Path) -> list[Checkpoint]:
    """Complete checkpoints of a run, oldest first (temporary directories are ignored)."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    found = [Checkpoint(p) for p in root.iterdir() if p.is_dir() and _NAME.match(p.name)]
    return sorted(found, key=lambda c: c.step)


def latest_checkpoint(run_dir: str | Path) -> Checkpoint | None:
    """The checkpoint ``latest`` points at, or None for a fresh run."""
    pointer = Path(run_dir) / "checkpoints" / "latest"
    if not pointer.exists():
        return None
    path = pointer.parent / pointer.read_text().strip()
    if not (path / "state.json").exists():
        raise CheckpointError(f"{pointer} names {path.name}, which is missing or incomplete")
    return Checkpoint(path)


def resolve_checkpoint(path: str | Path) -> Checkpoint:
    """A checkpoint directory as it is, or a run directory's latest checkpoint."""
    path = Path(path)
    if (path / "state.json").is_file():
        return Checkpoint(path)
    latest = latest_checkpoint(path) if path.is_dir() else None
    if latest is None:
        raise FileNotFoundError(f"{path} is neither a checkpoint (step_*/ with state.json) nor a run with checkpoints")
    return latest


def prune_checkpoints(run_dir: str | Path, keep_last: int, keep_steps: set[int]) -> None:
    """Delete rolling checkpoints beyond the newest ``keep_last``; never ``keep_steps`` nor the latest.

    A kept step older than the newest ``keep_last`` checkpoints is only evaluated, never resumed from: its
    optimizer moments (two thirds of a checkpoint) are dropped.
    """
    ckpts = list_checkpoints(run_dir)
    latest = latest_checkpoint(run_dir)
    rolling = [c for c in ckpts if c.step not in keep_steps and (latest is None or c.path != latest.path)]
    excess = len(rolling) - max(keep_last - 1, 0)
    for ckpt in rolling[: max(excess, 0)]:
        shutil.rmtree(ckpt.path, ignore_errors=True)
    remaining = list_checkpoints(run_dir)
    newest = {c.path for c in remaining[-max(keep_last, 1):]} | ({latest.path} if latest else set())
    for ckpt in remaining:
        if ckpt.path not in newest:
            drop_optimizer_state(ckpt)


def drop_optimizer_state(ckpt: Checkpoint) -> None:
    """Make ``ckpt`` an evaluation checkpoint: weights, masks and state stay, the optimizer moments go."""
    (ckpt.path / OPTIMIZER_FILE).unlink(missing_ok=True)


def restore_training_state(ckpt: Checkpoint, model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """Load weights, optimizer moments and RNG state from ``ckpt``; return its state.json."""
    load_model_state(model, load_file(ckpt.path / "model.safetensors"))
    device = next(unwrap(model).parameters()).device
    if not (ckpt.path / OPTIMIZER_FILE).exists():
        raise CheckpointError(f"{ckpt.path} holds no optimizer state (an evaluation checkpoint): resume from the "
                              "run's latest checkpoint")
    optimizer.load_state_dict(torch.load(ckpt.path / OPTIMIZER_FILE, map_location=device, weights_only=True))
    _set_rng_state(torch.load(ckpt.path / "rng.pt", weights_only=False))
    return ckpt.state()


def _rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
