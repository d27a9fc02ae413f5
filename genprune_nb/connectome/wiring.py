"""The connectome: a ternary {-1, 0, +1} wiring pattern per weight tensor plus the constant it is scaled by.

It is what the outer loop hands to the inner loop: pruned weights are 0, survivors are sign x c. The file
format is ``ternary_codec`` (entropy coded, ~entropy bits per weight). ``random_control`` gives the
RandomConnectome control: the same per-tensor density, random positions and signs, the same constants.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from ..config import ModelConfig, OuterConfig
from ..model.gpt import GPT, init_std
from ..storage import hashing
from . import ternary_codec
from .pruning import check_covers, mlp_unit_pairs


@dataclass
class Connectome:
    signs: dict[str, torch.Tensor]  # int8 in {-1, 0, +1}; 0 = pruned
    scales: dict[str, float]  # the re-init constant c of each tensor
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if set(self.signs) != set(self.scales):
            raise ValueError(f"connectome tensors {sorted(self.signs)} and scales {sorted(self.scales)} differ")

    @classmethod
    def from_weights(
        cls,
        masks: Mapping[str, torch.Tensor],
        sign_weights: Mapping[str, torch.Tensor],
        scales: Mapping[str, float],
        meta: dict[str, Any] | None = None,
    ) -> "Connectome":
        """Survivors of ``masks`` get the sign of ``sign_weights`` (an exact 0 counts as +), the rest 0."""
        signs = {}
        for name, mask in masks.items():
            s = torch.where(sign_weights[name] < 0, -1, 1).to(torch.int8)
            signs[name] = s * mask.to(torch.int8).cpu()
        return cls(signs, {n: float(scales[n]) for n in masks}, dict(meta or {}))

    def masks(self) -> dict[str, torch.Tensor]:
        return {n: s != 0 for n, s in self.signs.items()}

    def densities(self) -> dict[str, float]:
        return {n: int(s.count_nonzero()) / s.numel() for n, s in self.signs.items()}

    @property
    def n_weights(self) -> int:
        return sum(s.numel() for s in self.signs.values())

    def density(self) -> float:
        return sum(int(s.count_nonzero()) for s in self.signs.values()) / self.n_weights

    def alive_units(self) -> dict[str, float]:
        """Per MLP (keyed by its ``c_fc`` name): the fraction of hidden units still wired in and out.

        A unit is alive while its ``c_fc`` row and its ``c_proj`` column each keep a survivor; structured pruning
        removes units whole, entry-wise criteria rarely do.
        """
        masks = self.masks()
        return {fc: float((masks[fc].any(1) & masks[proj].any(0)).float().mean())
                for fc, proj in mlp_unit_pairs(masks)}

    def entropy_bits(self) -> float:
        """Shannon entropy in bits per weight (per-tensor symbol frequencies, size-weighted)."""
        return ternary_codec.entropy_bits_per_weight(self._arrays())

    def init_state(self, model_cfg: ModelConfig, seed: int) -> dict[str, torch.Tensor]:
        """Initial weights of a model grown from this connectome: sign x c where wired, 0 where pruned.

        Tensors outside the connectome (exempted embeddings only: it must cover every other prunable tensor, in
        its shape) get the standard random init of ``seed``.
        """
        state = GPT(model_cfg, seed=seed).state_dict()
        check_covers(self.signs, state, "connectome", self.meta.get("prune_embeddings"))
        for name, s in self.signs.items():
            state[name] = s.to(state[name].dtype) * self.scales[name]
        return state

    def random_control(self, seed: int) -> "Connectome":
        """RandomConnectome: per tensor the same number of survivors at random positions with random signs."""
        gen = torch.Generator().manual_seed(seed)
        signs = {}
        for name, s in self.signs.items():
            k = int(s.count_nonzero())
            flat = torch.zeros(s.numel(), dtype=torch.int8)
            where = torch.randperm(s.numel(), generator=gen)[:k]
            flat[where] = (torch.randint(0, 2, (k,), generator=gen, dtype=torch.int8) * 2 - 1)
            signs[name] = flat.view(s.shape)
        return Connectome(signs, dict(self.scales), {**self.meta, "control": "random", "control_seed": seed})

    def digest(self) -> str:
        """Identity of the wiring (signs and constants), whatever the file's meta says: what a run grown from it
        records as its start."""
        return hashing.digest({"signs": hashing.tensors_sha256(self.signs), "scales": self.scales})

    def save(self, path: str | Path) -> int:
        """Write the entropy-coded file atomically; returns its size in bytes."""
        ternary_codec.save(path, self._arrays(), {"scales": self.scales, "meta": self.meta})
        return Path(path).stat().st_size

    @classmethod
    def load(cls, path: str | Path) -> "Connectome":
        arrays, metadata = ternary_codec.load(path)
        signs = {n: torch.from_numpy(np.ascontiguousarray(a)) for n, a in arrays.items()}
        return cls(signs, {n: float(c) for n, c in metadata["scales"].items()}, metadata.get("meta", {}))

    def _arrays(self) -> dict[str, np.ndarray]:
        return {n: s.numpy() for n, s in self.signs.items()}


def reinit_scales(model_cfg: ModelConfig, names: list[str], outer: OuterConfig) -> dict[str, float]:
    """The constant c of each tensor: ``outer.reinit_constant`` (paper: 0.02) or its init std (Zhou et al. 2019)."""
    if outer.reinit == "constant":
        return {n: outer.reinit_constant for n in names}
    return {n: init_std(model_cfg, n) for n in names}


def file_bits_per_weight(path: str | Path, n_weights: int) -> float:
    """Achieved size of a connectome file in bits per weight."""
    return 8 * Path(path).stat().st_size / n_weights if n_weights else math.nan
