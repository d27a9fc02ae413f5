"""Bits transmitted: how much each inner-loop condition receives from the outer loop, counted from what it takes.

- Connectome, RandomConnectome: the connectome file (``connectome.gpc``: positions and signs, entropy coded), 8 x
  its bytes. RandomConnectome keeps only the densities of that file, but is charged the file it is drawn from.
- TrainedSparse: the positions at the mask's entropy (per tensor ``n H2(k / n)`` bits for k survivors of n, the bound
  an entropy coder reaches; signs travel with the values), plus every survivor x the bits of its stored value (the
  trained checkpoint's dtype: 32 for fp32).
- TrainedDense: every weight of the trained checkpoint x its dtype's bits (exact zeros included: stored dense).
- Distilled: the teacher's size, every weight x its dtype's bits; it also needs the teacher at train time
  (``needs_teacher``), which no other condition does.
- NoConnectome: 0.

Tensors outside the connectome (embeddings exempted from pruning) start from the seed's random init in the
connectome-grown conditions and are not charged. ``bits_rows`` writes the counts as results rows (task
``BITS_TASK``, metrics ``bits`` and ``needs_teacher``, one row per condition and seed, at step 0).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import pandas as pd
import torch

from ..config import Preset
from ..connectome.wiring import Connectome
from ..stats import binary_entropy
from .conditions import BASELINE
from .generations import parse_condition
from .layout import StudyLayout
from .transmission import final_outer_checkpoint, teacher_checkpoint

BITS_TASK = "bits_transmitted"  # results task of the counts: metrics "bits" and "needs_teacher" (0 / 1)


@dataclass(frozen=True)
class Transmitted:
    """What one condition receives: ``bits``, the number of weights they describe (``weights``) and whether it needs
    the teacher while it trains."""

    condition: str
    bits: float
    weights: int
    needs_teacher: bool = False


def dtype_bits(tensor: torch.Tensor) -> int:
    """Bits one element of ``tensor`` takes as stored (fp32: 32, bf16: 16, int8: 8)."""
    info = torch.finfo if tensor.is_floating_point() else torch.iinfo
    return info(tensor.dtype).bits


def stored_bits(weights: Mapping[str, torch.Tensor]) -> int:
    """Bits of ``weights`` stored dense: elements x their dtype's bits, summed."""
    return sum(t.numel() * dtype_bits(t) for t in weights.values())


def mask_entropy_bits(masks: Mapping[str, torch.Tensor]) -> float:
    """Positions of the survivors at their entropy: per tensor ``n H2(k / n)`` (k survivors of n), summed."""
    return sum(mask.numel() * binary_entropy(int(mask.count_nonzero()) / mask.numel()) for mask in masks.values())


def connectome_file_bits(path: str | Path) -> int:
    """8 x the size of a connectome file."""
    return 8 * Path(path).stat().st_size


def bits_transmitted(preset: Preset, study: StudyLayout, condition: str) -> Transmitted:
    """The bits ``condition`` receives from ``study``'s outer loop (see the module docstring)."""
    base, criterion = parse_condition(condition, preset.outer.criterion)
    if base == BASELINE:
        return Transmitted(condition, 0.0, 0)
    if base == "Distilled":
        weights = teacher_checkpoint(preset, study, criterion).weights()
        return Transmitted(condition, float(stored_bits(weights)), sum(t.numel() for t in weights.values()), True)
    if base == "TrainedDense":
        weights = final_outer_checkpoint(preset, study, criterion).weights()
        return Transmitted(condition, float(stored_bits(weights)), sum(t.numel() for t in weights.values()))
    path = study.final_connectome(criterion)
    if not path.exists():
        raise FileNotFoundError(f"condition {condition!r} needs {path}: run the outer loop with criterion "
                                f"{criterion!r} first")
    connectome = Connectome.load(path)
    if base in ("Connectome", "RandomConnectome"):
        return Transmitted(condition, float(connectome_file_bits(path)), connectome.n_weights)
    masks = connectome.masks()
    trained = final_outer_checkpoint(preset, study, criterion).weights()
    values = sum(int(m.count_nonzero()) * dtype_bits(trained[n]) for n, m in masks.items())
    return Transmitted(condition, mask_entropy_bits(masks) + values, connectome.n_weights)


def bits_rows(preset: Preset, study: StudyLayout, conditions: Sequence[str], seeds: Sequence[int]) -> pd.DataFrame:
    """Results rows of ``bits_transmitted`` for each condition and seed (the counts do not vary with the seed): task
    ``BITS_TASK``, metrics ``bits`` and ``needs_teacher``, step and tokens 0, ``n`` the weights counted."""
    rows = []
    for condition in conditions:
        sent = bits_transmitted(preset, study, condition)
        for seed in seeds:
            for metric, value in (("bits", sent.bits), ("needs_teacher", float(sent.needs_teacher))):
                rows.append({"condition": condition, "seed": int(seed), "step": 0, "tokens": 0, "task": BITS_TASK,
                             "metric": metric, "value": value, "n": sent.weights})
    return pd.DataFrame(rows, columns=["condition", "seed", "step", "tokens", "task", "metric", "value", "n"])
