"""Checkpoint directories, written atomically.

Layout of ``<run>/checkpoints/step_000100/``: ``model.safetensors``, ``optimizer.pt``, ``rng.pt``, ``config.json``
(the preset) and ``state.json`` (step, tokens, loader position, last metrics, the dtype and sha256 of the weights,
the sha256 of the run's masks and the digest of the run's fingerprint). A masked run's masks are fixed, so they are
stored once, in ``<run>/masks.safetensors``, which each checkpoint names by its sha256 (checkpoints written before
hold their own ``masks.safetensors``, and still load). The run's masks file holds each mask bit-packed: a 1-D uint8
tensor of ``ceil(numel / 8)`` bytes, bit ``i % 8`` (least significant first, ``np.packbits(bitorder="little")``) of
byte ``i // 8`` being element ``i`` of the row-major flattened mask, the padding bits of the last byte zero; the
shapes are in the file's metadata (``shapes``: JSON, name -> list of sizes; ``format``: ``"bits"``). Bytes have no
endianness, so the file reads the same on any machine. Files without that metadata (written before) hold one uint8
per weight, and still load. A masked run's ``model.safetensors`` holds each masked tensor as its survivors only
(``pack_weights``: a 1-D tensor of the values where the mask is True, in row-major order; the file's metadata
``weights``: ``"survivors"``), which a load scatters into zeros with the run's masks (``unpack_weights``); files
without that metadata (unmasked runs, checkpoints written before) hold every tensor whole. The recorded weights
sha256 is ``hashing.tensors_sha256`` of the dense weights a load returns. ``<run>/checkpoints/latest`` names the
newest complete one; it is updated only after the directory is in place, so a kill mid-save leaves the previous
checkpoint as "latest". A ``step_*`` directory is always complete: it appears and disappears in one rename
(``atomic``); ``clean_stale`` removes what killed saves left behind.

A checkpoint is written in float32 with its optimizer moments (resumable), but for a finished run's final one
(``training.loop``: a finished run is never trained further, so it keeps float32 weights and no moments). A kept
step that no run will resume from any more becomes an evaluation checkpoint (``to_evaluation``): its moments go and
its weights may be cast to the run's ``train.kept_dtype``; it loads as a float32 model, but never resumes.
"""
from __future__ import annotations

import dataclasses
import json
import math
import pickle
import random
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, TypeVar

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from ..config import Preset, TrainConfig
from ..errors import GenpruneError
from ..model.gpt import GPT, Rotary
from ..storage import atomic, hashing
from . import provenance

_NAME = re.compile(r"^step_(\d{6,})$")
OPTIMIZER_FILE = "optimizer.pt"
WEIGHTS_FILE = "model.safetensors"
MASKS_FILE = "masks.safetensors"  # in the run folder (once per run), or in a checkpoint written before that
FULL_PRECISION = "float32"  # the dtype of the weights a run trains and resumes in
SCHEDULE = "schedule"  # the state.json field holding the TrainConfig the run trained on
_PREFIXES = ("_orig_mod.", "module.")  # torch.compile and DDP wrappers
ROTARY_FREQUENCIES = "inv_freq"  # the authors' Rotary keeps its frequencies in the state dict
# buffers other GPT implementations keep in their state dict: no learnt weights, nothing to check
_NON_WEIGHTS = re.compile(r"(^|\.)(attn\.bias|attn\.masked_bias|rotary\.(cos|sin|cos_cached|sin_cached))$")
_FREQUENCY_RTOL = 1e-5  # the authors compute them in fp32, this model in fp64
T = TypeVar("T")


class CheckpointError(GenpruneError, RuntimeError):
    """A checkpoint directory is missing or incomplete; the message names it."""


class StateDictError(GenpruneError, ValueError):
    """A state dict holds something that is no weight of the model; the message names its source and the entry."""


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


def load_model_state(model: nn.Module, state: Mapping[str, Any], source: str | Path = "state dict") -> None:
    """Load a state dict in the authors' layout (theirs or ours): :func:`model_weights`, then a tied head, then a
    strict load (a missing or misshapen weight raises torch's RuntimeError). ``source`` names it in errors."""
    clean = model_weights(model, state, source)
    tie_head(model, clean, source)
    unwrap(model).load_state_dict(clean, strict=True)


def model_weights(model: nn.Module, state: Mapping[str, Any], source: str | Path = "state dict") -> dict[str, Any]:
    """``state`` reduced to weights: ``_orig_mod.`` / ``module.`` prefixes stripped, rotary frequencies (any key
    ending in ``inv_freq``, which the authors' model stores) checked against the model's own and dropped, other
    known non-weight buffers (nanoGPT's causal mask, cached cos / sin) dropped. A non-tensor entry, two entries of one
    name, or frequencies other than the model's are refused (:class:`StateDictError`)."""
    clean: dict[str, torch.Tensor] = {}
    for name, value in state.items():
        key = name
        while key.startswith(_PREFIXES):
            key = key[len(next(p for p in _PREFIXES if key.startswith(p))):]
        if not torch.is_tensor(value):
            raise StateDictError(f"{source}: entry {name!r} is a {type(value).__name__}, not a tensor")
        if key.split(".")[-1] == ROTARY_FREQUENCIES:
            check_rotary_frequencies(model, name, value, source)
            continue
        if _NON_WEIGHTS.search(key):
            continue
        if key in clean:
            raise StateDictError(f"{source}: {name!r} and another entry both name the parameter {key!r}")
        clean[key] = value
    return clean


def check_rotary_frequencies(model: nn.Module, name: str, value: torch.Tensor, source: str | Path) -> None:
    """Refuse stored rotary frequencies ``value`` (entry ``name``) that differ from those the model computes."""
    own = next((m.inv_freq for m in unwrap(model).modules() if isinstance(m, Rotary)), None)
    if own is None:
        raise StateDictError(f"{source}: entry {name!r} holds rotary frequencies, but the model has no rotary "
                             "embedding")
    own = own.detach().cpu().double()
    stored = value.detach().cpu().double()
    if stored.shape != own.shape or not torch.allclose(stored, own, rtol=_FREQUENCY_RTOL, atol=0.0):
        cfg = getattr(unwrap(model), "config", None)
        which = f" (head_dim {cfg.head_dim}, rope_base {cfg.rope_base})" if cfg is not None else ""
        raise StateDictError(f"{source}: rotary frequencies {name!r} {_preview(stored)} differ from the model's "
                             f"{_preview(own)}{which}: the checkpoint was trained with another head size or RoPE base")


def _preview(t: torch.Tensor) -> str:
    head = ", ".join(f"{v:.6g}" for v in t.flatten()[:3].tolist())
    return f"[{head}{', ...' if t.numel() > 3 else ''}] ({t.numel()} values)"


def tie_head(model: nn.Module, state: dict[str, Any], source: str | Path = "state dict") -> None:
    """For a model with a tied head: fill in ``lm_head.weight`` from ``transformer.wte.weight`` (stored once), or
    refuse a stored head that differs from the embedding (a tied model cannot hold both)."""
    config = getattr(unwrap(model), "config", None)
    if config is None or not config.tie_embeddings or "transformer.wte.weight" not in state:
        return
    wte, head = state["transformer.wte.weight"], state.get("lm_head.weight")
    if head is None:
        state["lm_head.weight"] = wte
    elif head.shape != wte.shape or not torch.equal(head, wte):
        raise StateDictError(f"{source}: lm_head.weight differs from transformer.wte.weight, but the model ties "
                             "them (model.tie_embeddings); load it into an untied model")


@dataclass(frozen=True)
class Checkpoint:
    path: Path

    @property
    def step(self) -> int:
        return int(_NAME.match(self.path.name).group(1))

    def state(self) -> dict[str, Any]:
        file = self.path / "state.json"
        state = _read(file, _read_json)
        if not isinstance(state, dict) or not isinstance(state.get("step"), int):
            raise CheckpointError(f"{file} is damaged: expected a JSON object with an integer 'step'")
        return state

    def preset(self) -> Preset:
        return _read(self.path / "config.json", lambda f: Preset.from_dict(_read_json(f)))

    def schedule(self) -> TrainConfig:
        """The schedule this checkpoint's run trained on (an inner run's is not its preset's ``train``).

        Recorded in state.json; checkpoints written before it was recorded stored that schedule as ``train``.
        """
        recorded = self.state().get(SCHEDULE)
        preset = self.preset()
        if recorded is None:
            return preset.train
        return _read(self.path / "state.json",
                     lambda _: Preset.from_dict({**preset.to_dict(), "train": recorded}).train)

    @property
    def run_dir(self) -> Path:
        return self.path.parent.parent

    def masks(self) -> dict[str, torch.Tensor] | None:
        """The run's masks (bool), or None for a dense run: the run's ``masks.safetensors`` this checkpoint names by
        its sha256 (checked), or the checkpoint's own file (written before masks were stored once per run)."""
        own = self.path / MASKS_FILE
        if own.exists():
            return _read(own, load_masks)
        recorded = self.state().get("masks_sha256")
        if recorded is None:
            return None
        file = self.run_dir / MASKS_FILE
        masks = _read(file, load_masks)
        if hashing.tensors_sha256(masks) != recorded:
            raise CheckpointError(f"{file} holds other masks than {self.path.name} was trained with (sha256 "
                                  f"{recorded[:12]}...): the run folder was changed after it was written")
        return masks

    def weights_dtype(self) -> str:
        """The dtype the weights are stored in (``float32`` for checkpoints written before it was recorded)."""
        return self.state().get("weights_dtype", FULL_PRECISION)

    def load_model(self, device: str | torch.device = "cpu") -> GPT:
        """A float32 GPT with this checkpoint's config and weights (pruned weights are already zero; weights stored
        in bfloat16 are upcast)."""
        model = GPT(self.preset().model)
        _load_weights(self, model)
        return model.to(device)

    def weights(self) -> dict[str, torch.Tensor]:
        """The stored weights, dense (names and dtypes of ``model.safetensors``, see ``weights_dtype``; a masked
        run's survivors scattered into zeros with its masks, ``unpack_weights``), without building a model."""
        file = self.path / WEIGHTS_FILE
        stored, metadata = _read(file, load_tensors)
        masks = self.masks() if holds_survivors(metadata) else None
        return _read(file, lambda _: unpack_weights(stored, metadata, masks))

    def fingerprint(self) -> str:
        """Digest of what an evaluation of this checkpoint scores: the model shape and the weights.

        The weights' sha256 is read from state.json; checkpoints written before it was recorded are hashed.
        """
        weights = self.state().get("weights_sha256") or hashing.tensors_sha256(self.weights())
        return hashing.digest({"model": self.preset().model.recorded_fields(), "weights": weights})


def _read_json(file: Path) -> Any:
    return json.loads(file.read_text(encoding="utf-8"))


def _read(file: Path, load: Callable[[Path], T]) -> T:
    """``load(file)``; a missing, truncated or otherwise unreadable file becomes a CheckpointError naming it.

    safetensors raises SafetensorError, torch.load RuntimeError / EOFError / UnpicklingError or an OSError without
    a file name, json ValueError; a config.json that is JSON but no preset ConfigError / KeyError / TypeError.
    """
    try:
        return load(file)
    except FileNotFoundError:
        raise CheckpointError(f"{file} is missing: the checkpoint {file.parent} is incomplete") from None
    except (SafetensorError, RuntimeError, EOFError, pickle.UnpicklingError, ValueError, KeyError, TypeError,
            AttributeError, OSError) as e:
        if isinstance(e, OSError) and e.filename is not None:  # e.g. permission denied: it names the file itself
            raise
        raise CheckpointError(f"{file} is damaged or truncated ({type(e).__name__}: {_first_sentence(e)})") from e


def _bool_masks(stored: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.bool() for k, v in stored.items()}


_PACKED = "bits"  # the masks file's ``format`` metadata of bit-packed masks (see the module docstring)


def pack_masks(masks: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(tensors, metadata) of the bit-packed masks file (module docstring): one bit per weight."""
    packed = {k: torch.from_numpy(np.packbits(v.detach().to("cpu").bool().reshape(-1).numpy(), bitorder="little"))
              for k, v in masks.items()}
    shapes = {k: list(v.shape) for k, v in masks.items()}
    return packed, {"format": _PACKED, "shapes": json.dumps(shapes, sort_keys=True)}


def unpack_masks(stored: Mapping[str, torch.Tensor], metadata: Mapping[str, str] | None) -> dict[str, torch.Tensor]:
    """The bool masks of a masks file's tensors and metadata: bit-packed, or one uint8 per weight (older files)."""
    if (metadata or {}).get("format") != _PACKED:
        return _bool_masks(stored)
    shapes = json.loads(metadata["shapes"])
    if set(shapes) != set(stored):
        raise ValueError(f"masks file: the shapes name {sorted(shapes)}, the tensors {sorted(stored)}")
    masks = {}
    for name, packed in stored.items():
        shape = tuple(shapes[name])
        count = math.prod(shape)
        if packed.dtype != torch.uint8 or packed.dim() != 1 or packed.numel() != -(-count // 8):
            raise ValueError(f"masks file: {name} holds {tuple(packed.shape)} {packed.dtype}, not the "
                             f"{-(-count // 8)} uint8 bytes of a {shape} mask")
        bits = np.unpackbits(packed.numpy(), count=count, bitorder="little")
        masks[name] = torch.from_numpy(bits.astype(bool)).reshape(shape)
    return masks


def load_masks(file: Path) -> dict[str, torch.Tensor]:
    """The bool masks stored in a masks file (either format, see ``unpack_masks``)."""
    return unpack_masks(*load_tensors(file))


def load_tensors(file: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors and the metadata of a safetensors file, as stored."""
    with safe_open(str(file), "pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})


_SURVIVORS = "survivors"  # model.safetensors' ``weights`` metadata: masked tensors hold their survivors only


def pack_weights(weights: Mapping[str, torch.Tensor], masks: Mapping[str, torch.Tensor] | None
                 ) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(tensors, metadata) of a checkpoint's ``model.safetensors``: with ``masks`` (bool, CPU), every tensor they
    name as its survivors (the values where the mask is True, row-major order, 1-D), the others whole; without,
    every tensor whole (dense, no metadata)."""
    if not masks:
        return dict(weights), {}
    return {k: v[masks[k]] if k in masks else v for k, v in weights.items()}, {"weights": _SURVIVORS}


def holds_survivors(metadata: Mapping[str, str] | None) -> bool:
    """Whether a ``model.safetensors`` of this metadata holds survivors only (``pack_weights``)."""
    return (metadata or {}).get("weights") == _SURVIVORS


def unpack_weights(stored: Mapping[str, torch.Tensor], metadata: Mapping[str, str] | None,
                   masks: Mapping[str, torch.Tensor] | None) -> dict[str, torch.Tensor]:
    """The dense weights of a ``model.safetensors``' tensors and metadata: survivors scattered into zeros (pruned
    weights +0.0) with the run's ``masks``; a dense file's tensors as they are."""
    if not holds_survivors(metadata):
        return dict(stored)
    if not masks:
        raise ValueError("the weights are stored as survivors of masks, but the run has no masks")
    dense = {}
    for name, values in stored.items():
        mask = masks.get(name)
        if mask is None:
            dense[name] = values
            continue
        count = int(mask.count_nonzero())
        if values.dim() != 1 or values.numel() != count:
            raise ValueError(f"{name} holds {tuple(values.shape)} values, not the {count} survivors of its "
                             f"{tuple(mask.shape)} mask")
        dense[name] = values.new_zeros(mask.shape)
        dense[name][mask] = values
    return dense


def _first_sentence(error: BaseException) -> str:
    text = next((line.strip() for line in str(error).splitlines() if line.strip()), "")
    return text.split(". ")[0][:200] or type(error).__name__


def _load_weights(ckpt: Checkpoint, model: nn.Module) -> None:
    """Load ``ckpt``'s weights into ``model``; weights of another shape name the model fields in which the run
    differs."""
    file, run_preset = ckpt.path / WEIGHTS_FILE, ckpt.preset()
    state = ckpt.weights()  # load_state_dict copies into the model's float32 weights: bf16 is upcast
    try:
        load_model_state(model, state, file)
    except RuntimeError as e:
        config = getattr(unwrap(model), "config", None)
        differ = [f"model.{name}: {value} in the run, {getattr(config, name)} now"
                  for name, value in dataclasses.asdict(run_preset.model).items()
                  if config is not None and getattr(config, name) != value]
        if differ:
            raise CheckpointError(f"{file} holds a model of another shape ({'; '.join(differ)}): resume with the "
                                  "run's model settings, or start another run") from None
        detail = next((line.strip() for line in str(e).splitlines()[1:] if line.strip()), str(e))
        raise CheckpointError(f"{file} does not fit the model of its own config.json ({detail[:200]})") from None


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
    """Write ``<run>/checkpoints/step_{step}`` (float32 weights; with ``masks``, the masked tensors' survivors only)
    atomically, then point ``latest`` at it; ``masks`` go to the run's ``masks.safetensors`` (written once,
    atomically), which the checkpoint names by its sha256."""
    root = Path(run_dir) / "checkpoints"
    final = root / f"step_{step:06d}"
    recorded = provenance.read(run_dir)
    state = dict(state or {})
    if masks:
        masks = _cpu_masks(masks)
        state["masks_sha256"] = save_run_masks(run_dir, masks)
    with atomic.atomic_path(final) as tmp:
        tmp.mkdir()
        weights = model_state(model)
        _save_weights(weights, tmp / WEIGHTS_FILE, state, masks)
        if recorded is not None:
            state["run_fingerprint"] = hashing.digest(recorded)
        if optimizer is not None:
            torch.save(optimizer.state_dict(), tmp / OPTIMIZER_FILE)
        torch.save(_rng_state(), tmp / "rng.pt")
        (tmp / "config.json").write_text(json.dumps(preset.to_dict(), indent=2, sort_keys=True))
        (tmp / "state.json").write_text(json.dumps({"step": step, **state}, indent=2, sort_keys=True))
    atomic.write_text(root / "latest", final.name + "\n")
    return Checkpoint(final)


def save_run_masks(run_dir: str | Path, masks: Mapping[str, torch.Tensor]) -> str:
    """Store a run's masks in ``<run>/masks.safetensors`` (bit-packed, see the module docstring; atomically, and
    only if it does not hold these already); return their sha256 (``hashing.tensors_sha256`` of the bool masks)."""
    masks = _cpu_masks(masks)
    sha = hashing.tensors_sha256(masks)
    file = Path(run_dir) / MASKS_FILE
    if _recorded_sha(file) != sha:
        packed, metadata = pack_masks(masks)
        with atomic.atomic_path(file) as tmp:
            save_file(packed, str(tmp), metadata={**metadata, "sha256": sha})
    return sha


def _cpu_masks(masks: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return _bool_masks({k: v.detach().to("cpu") for k, v in masks.items()})


def _recorded_sha(file: Path) -> str | None:
    """The sha256 a run's masks file records, or None if it is missing or unreadable (then it is written anew)."""
    try:
        with safe_open(str(file), "pt") as f:
            return (f.metadata() or {}).get("sha256")
    except (FileNotFoundError, SafetensorError, OSError):
        return None


def _save_weights(weights: Mapping[str, torch.Tensor], file: Path, state: dict[str, Any],
                  masks: Mapping[str, torch.Tensor] | None) -> None:
    """Write ``weights`` to ``file`` (the masked tensors' survivors only, ``pack_weights``) and record their dtype
    and sha256 in ``state`` (state.json's fields): the sha256 of the dense weights a load returns."""
    dtypes = sorted({str(t.dtype).removeprefix("torch.") for t in weights.values()})
    if len(dtypes) != 1:
        raise ValueError(f"{file}: weights of several dtypes {dtypes}")
    stored, metadata = pack_weights(weights, masks)
    save_file(stored, str(file), metadata={"dtype": dtypes[0], **metadata})
    state["weights_dtype"] = dtypes[0]
    state["weights_sha256"] = hashing.tensors_sha256(unpack_weights(stored, metadata, masks))


def list_checkpoints(run_dir: str | Path) -> list[Checkpoint]:
    """Complete checkpoints of a run, oldest first (temporary directories are ignored)."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    found = [Checkpoint(p) for p in root.iterdir() if p.is_dir() and _NAME.match(p.name)]
    return sorted(found, key=lambda c: c.step)


def latest_checkpoint(run_dir: str | Path) -> Checkpoint | None:
    """The checkpoint ``latest`` points at, or None for a fresh run.

    A directory that a kill left moved aside (mid-replacement) is put back first; anything else missing is an error.
    """
    pointer = Path(run_dir) / "checkpoints" / "latest"
    if not pointer.exists():
        return None
    name = pointer.read_text().strip()
    if not _NAME.match(name):
        raise CheckpointError(f"{pointer} names {name!r}, not a step_* checkpoint directory")
    path = pointer.parent / name
    atomic.recover(path)
    if not (path / "state.json").exists():
        raise CheckpointError(f"{pointer} names {path.name}, which is missing or incomplete")
    return Checkpoint(path)


def clean_stale(run_dir: str | Path) -> list[Path]:
    """Remove what killed saves left in a run (half-written ``.step_*.tmp`` folders, GBs each at gpt2-124m, and
    other hidden temporaries), restoring a moved-aside checkpoint first; return the removed paths.

    Only the run's single writer may call it (another writer's temporaries look the same), before it writes.
    """
    run_dir = Path(run_dir)
    return atomic.remove_leftovers(run_dir / "checkpoints") + atomic.remove_leftovers(run_dir)


def resolve_checkpoint(path: str | Path) -> Checkpoint:
    """A checkpoint directory as it is, or a run directory's latest checkpoint."""
    path = Path(path)
    if (path / "state.json").is_file():
        return Checkpoint(path)
    latest = latest_checkpoint(path) if path.is_dir() else None
    if latest is None:
        raise FileNotFoundError(f"{path} is neither a checkpoint (step_*/ with state.json) nor a run with checkpoints")
    return latest


def prune_checkpoints(run_dir: str | Path, keep_last: int, keep_steps: set[int],
                      kept_dtype: str = FULL_PRECISION) -> None:
    """Delete rolling checkpoints beyond the newest ``keep_last``; never ``keep_steps`` nor the latest.

    A kept step older than the newest ``keep_last`` checkpoints is only evaluated, never resumed from: it becomes
    an evaluation checkpoint in ``kept_dtype`` (``to_evaluation``).
    """
    ckpts = list_checkpoints(run_dir)
    latest = latest_checkpoint(run_dir)
    rolling = [c for c in ckpts if c.step not in keep_steps and (latest is None or c.path != latest.path)]
    excess = len(rolling) - max(keep_last - 1, 0)
    for ckpt in rolling[: max(excess, 0)]:
        atomic.discard(ckpt.path)  # never a half-deleted step_* directory that looks like a checkpoint
    remaining = list_checkpoints(run_dir)
    newest = {c.path for c in remaining[-max(keep_last, 1):]} | ({latest.path} if latest else set())
    for ckpt in remaining:
        if ckpt.path not in newest:
            to_evaluation(ckpt, kept_dtype)


def drop_optimizer_state(ckpt: Checkpoint) -> None:
    """Make ``ckpt`` an evaluation checkpoint: weights, masks and state stay, the optimizer moments go."""
    (ckpt.path / OPTIMIZER_FILE).unlink(missing_ok=True)


def to_evaluation(ckpt: Checkpoint, dtype: str = FULL_PRECISION) -> None:
    """Make ``ckpt`` an evaluation checkpoint with its weights in ``dtype`` (``train.kept_dtype``): the optimizer
    moments go; weights in another dtype are cast, and the directory is replaced in one rename (state.json then
    records the new dtype and sha256, so the evaluations' ``fingerprint`` tells the two apart). Weights already
    cast cannot be restored: asking for float32 again is refused (a run's kept checkpoints share one dtype)."""
    drop_optimizer_state(ckpt)
    stored = ckpt.weights_dtype()
    if stored == dtype:
        return
    if stored != FULL_PRECISION:
        raise CheckpointError(f"{ckpt.path} was kept in {stored} and its {FULL_PRECISION} weights are gone: set "
                              f"train.kept_dtype={stored} for this run, or restart it with --overwrite")
    target = getattr(torch, dtype)
    weights = {k: v.to(target) for k, v in ckpt.weights().items()}
    masks, state = ckpt.masks(), ckpt.state()
    with atomic.atomic_path(ckpt.path) as tmp:
        tmp.mkdir()
        for f in ckpt.path.iterdir():
            if f.name not in (WEIGHTS_FILE, "state.json") and f.is_file():
                shutil.copy2(f, tmp / f.name)
        _save_weights(weights, tmp / WEIGHTS_FILE, state, masks)
        (tmp / "state.json").write_text(json.dumps(state, indent=2, sort_keys=True))


def restore_training_state(ckpt: Checkpoint, model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """Load weights, optimizer moments and RNG state from ``ckpt``; return its state.json.

    Every file is read (and checked) before the model or the optimizer is touched, and a damaged one is named.
    """
    state = ckpt.state()
    stored = ckpt.weights_dtype()
    if stored != FULL_PRECISION:
        raise CheckpointError(_not_resumable(ckpt, f"{ckpt.path / WEIGHTS_FILE} holds {stored} weights (an "
                                                   "evaluation checkpoint, see train.kept_dtype): a run resumes "
                                                   f"only from {FULL_PRECISION} ones"))
    if not (ckpt.path / OPTIMIZER_FILE).exists():
        raise CheckpointError(_not_resumable(ckpt, f"{ckpt.path} holds no optimizer state ({OPTIMIZER_FILE})"))
    missing = [key for key in ("loader",) if key not in state]
    if missing:
        raise CheckpointError(f"{ckpt.path / 'state.json'} is damaged: it lacks {missing}")
    device = next(unwrap(model).parameters()).device
    moments = _read(ckpt.path / OPTIMIZER_FILE, lambda f: torch.load(f, map_location=device, weights_only=True))
    rng = _read(ckpt.path / "rng.pt", lambda f: torch.load(f, weights_only=False))
    _load_weights(ckpt, model)
    try:
        optimizer.load_state_dict(moments)
    except (ValueError, KeyError, RuntimeError) as e:
        raise CheckpointError(f"{ckpt.path / OPTIMIZER_FILE} does not fit the optimizer ({e})") from None
    _set_rng_state(rng)
    return state


def _not_resumable(ckpt: Checkpoint, head: str) -> str:
    """Why ``ckpt`` cannot be resumed (``head``), and which checkpoint of its run can, if any."""
    resumable = [c for c in list_checkpoints(ckpt.run_dir) if c.path != ckpt.path and _resumable(c)]
    if resumable:
        newest = resumable[-1].path.name
        return (f"{head}; newest resumable checkpoint is {newest}: write '{newest}' into checkpoints/latest to "
                "resume from it, or pass --overwrite")
    return f"{head}, nor does any other checkpoint of the run: restart it with --overwrite"


def _resumable(ckpt: Checkpoint) -> bool:
    """Whether ``ckpt`` holds what a resume needs: optimizer moments, RNG state, float32 weights."""
    if not ((ckpt.path / OPTIMIZER_FILE).is_file() and (ckpt.path / "rng.pt").is_file()):
        return False
    try:
        return ckpt.weights_dtype() == FULL_PRECISION
    except CheckpointError:
        return False


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
