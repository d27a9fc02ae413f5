"""Provenance: a fingerprint of everything that determines a run's result, so that a run is only ever continued,
skipped or reused under the recipe it was trained with.

A run directory records ``fingerprint.json``: the model shape, the training recipe (minus fields that only change
what is logged or kept), the token shards it reads (names, sizes, and sha256 where the shard set's
``<prefix>_meta.json`` records one), its start state and its training penalty. Resuming or re-running under a
different fingerprint is refused with a message naming each differing field and the two ways out.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from ..config import ModelConfig, Preset, TrainConfig
from ..errors import GenpruneError
from ..storage import atomic
from ..storage.hashing import tensors_sha256

FINGERPRINT_FILE = "fingerprint.json"

# Train fields that change what is logged, validated or kept, never the weights a run reaches at a given step.
# (Validation reads its own loader and no random state, so its cadence leaves training untouched; ``compile``
# changes kernels, not the recipe, like the device or thread count, which are not recorded either; ``kept_dtype``
# casts only checkpoints no run resumes from, see ``checkpoint.to_evaluation``; ``loss_chunk`` only reorders the
# head's sums: the same loss and gradients up to fp rounding, ``chunked_loss``; like ``compile``, that rounding can
# flip a tie at a pruning threshold, so a study keeps one setting from start to end.)
NOT_RESULT_FIELDS = ("log_every", "val_every", "checkpoint_every", "keep_checkpoints", "keep_last", "compile",
                     "kept_dtype", "loss_chunk")

_HOW_OUT = ("pass --overwrite to restart that run from scratch (its checkpoints and metrics are removed), "
            "or use another run folder (--run-dir for train, --run-root for outer / inner)")


class ProvenanceError(GenpruneError, ValueError):
    """A run directory holds a run made under another fingerprint; the message names the differing fields."""


@dataclass(frozen=True)
class Difference:
    """One field (a dotted path) whose recorded value differs from the current one; None means absent."""

    field: str
    recorded: Any
    current: Any

    def __str__(self) -> str:
        if isinstance(self.recorded, list) and isinstance(self.current, list):
            return f"{self.field}: {_list_change(self.recorded, self.current)}"
        return f"{self.field}: {_show(self.recorded)} in the run, {_show(self.current)} now"


def _show(value: Any) -> str:
    return "absent" if value is None else json.dumps(value)


def _list_change(recorded: list, current: list) -> str:
    gone = [v for v in recorded if v not in current]
    new = [v for v in current if v not in recorded]
    if not gone and not new:
        return "the same items in another order"
    parts = ([f"{', '.join(map(str, gone))} only in the run"] if gone else []) + \
            ([f"{', '.join(map(str, new))} only now"] if new else [])
    return "; ".join(parts)


# Train fields recorded only when they differ from these defaults, so that the fingerprints of runs made before the
# field existed stay the same (as ``ModelConfig.recorded_fields`` does for the tokenizer).
RECORDED_WHEN_SET = {"autocast_cpu": False}


def train_fields(cfg: TrainConfig) -> dict[str, Any]:
    """The TrainConfig fields that determine a run's weights (see ``NOT_RESULT_FIELDS`` and ``RECORDED_WHEN_SET``)."""
    fields = {k: jsonable(v) for k, v in dataclasses.asdict(cfg).items() if k not in NOT_RESULT_FIELDS}
    for name, default in RECORDED_WHEN_SET.items():
        if fields[name] == default:
            del fields[name]
    return fields


def shard_record(files: Sequence[str | Path]) -> dict[str, Any]:
    """The shards a loader reads, in its order: names, sizes in tokens, sha256 where the set's meta records it."""
    from ..data.manifest import read_manifest
    from ..data.shards import read_header

    files = [Path(f) for f in files]
    hashes: dict[str, str] = {}
    for folder in dict.fromkeys(f.parent for f in files):
        for meta in sorted(folder.glob("*_meta.json")):
            recorded = read_manifest(meta).get("sha256") or {}
            if isinstance(recorded, dict):
                hashes.update(recorded)
    shards = {}
    for f in files:
        entry: dict[str, Any] = {"tokens": read_header(f).n_tokens}
        if f.name in hashes:
            entry["sha256"] = hashes[f.name]
        shards[f.name] = entry
    return {"files": [f.name for f in files], "shards": shards}


def tensor_start(init_state: Mapping[str, torch.Tensor] | None, masks: Mapping[str, torch.Tensor] | None,
                 seed: int) -> dict[str, Any]:
    """A start state described by hashing the given tensors (for callers that have no better description)."""
    if init_state is None and masks is None:
        return {"kind": "random init", "seed": seed}
    start: dict[str, Any] = {"kind": "given weights", "seed": seed}
    if init_state is not None:
        start["init_sha256"] = tensors_sha256(init_state)
    if masks is not None:
        start["masks_sha256"] = tensors_sha256({n: m.bool() for n, m in masks.items()})
    return start


def run_fingerprint(
    model: ModelConfig,
    train: TrainConfig,
    train_files: Sequence[str | Path],
    val_files: Sequence[str | Path],
    start: Mapping[str, Any],
    group_sparsity: float = 0.0,
) -> dict[str, Any]:
    """What determines a run's result, as a JSON-able dict (``fingerprint.json``)."""
    return {
        "model": jsonable(model.recorded_fields()),
        "train": train_fields(train),
        "data": {"train": shard_record(train_files), "val": shard_record(val_files)},
        "start": jsonable(dict(start)),
        "group_sparsity": float(group_sparsity),
    }


def preset_fingerprint(preset: Preset, schedule: TrainConfig | None = None) -> dict[str, Any]:
    """The part of a fingerprint a saved preset and the schedule it ran (default ``preset.train``) tell: for runs
    written before fingerprints were recorded."""
    return {"model": jsonable(preset.model.recorded_fields()), "train": train_fields(schedule or preset.train)}


def compare(recorded: Mapping[str, Any], current: Mapping[str, Any]) -> list[Difference]:
    """Fields (dotted paths) whose values differ; only the sections ``recorded`` has are compared."""
    return _diff(dict(recorded), {k: current.get(k) for k in recorded}, "")


def _diff(a: Any, b: Any, path: str) -> list[Difference]:
    if isinstance(a, dict) and isinstance(b, dict):
        out: list[Difference] = []
        for key in list(a) + [k for k in b if k not in a]:
            out += _diff(a.get(key), b.get(key), f"{path}.{key}" if path else str(key))
        return out
    return [] if a == b else [Difference(path, a, b)]


def refusal(where: str | Path, differences: Sequence[Difference], remedy: str = _HOW_OUT) -> ProvenanceError:
    """The error for a run dir (or file) whose recorded fingerprint differs from the current one."""
    shown = "; ".join(str(d) for d in differences)
    return ProvenanceError(f"{where} was made with another recipe ({shown}); {remedy}")


def read(run_dir: str | Path) -> dict[str, Any] | None:
    """The run's recorded fingerprint, or None if it records none."""
    path = Path(run_dir) / FINGERPRINT_FILE
    if not path.exists():
        return None
    try:
        found = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as e:
        raise ProvenanceError(f"{path} is not valid JSON ({e}); {_HOW_OUT}") from None
    if not isinstance(found, dict):
        raise ProvenanceError(f"{path} does not hold a fingerprint object; {_HOW_OUT}")
    return found


def write(run_dir: str | Path, fingerprint: Mapping[str, Any]) -> None:
    """Record ``fingerprint`` as the run's (atomically)."""
    atomic.write_json(Path(run_dir) / FINGERPRINT_FILE, dict(fingerprint))


def jsonable(value: Any) -> Any:
    """Tuples as lists, as they come back from JSON, so that a recorded and a fresh fingerprint compare equal."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value
