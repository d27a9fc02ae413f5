"""AdamW and the masked step (DESIGN.md §3): pruned weights get no gradient and stay exactly 0.0."""
from __future__ import annotations

from typing import Mapping

import torch
from torch import nn

from ..config import TrainConfig
from ..connectome.pruning import check_covers


class WeightMask:
    """Fixed binary masks on named parameters of a model.

    ``apply_to_grads`` runs after backward and before clipping (so pruned entries do not count in the
    gradient norm); ``apply_to_weights`` runs after the optimizer step and whenever weights are (re)loaded,
    so a pruned weight is exactly zero at every forward. The masks must cover every prunable tensor
    (``pruning.check_covers``): one left out would train dense.
    """

    def __init__(self, model: nn.Module, masks: Mapping[str, torch.Tensor]):
        params = dict(model.named_parameters())
        check_covers(masks, params)  # every prunable tensor, each of its shape
        self.names: list[str] = []
        self._params: list[nn.Parameter] = []
        self._masks: list[torch.Tensor] = []
        for name, mask in masks.items():
            p = params[name]
            self.names.append(name)
            self._params.append(p)
            self._masks.append((mask != 0).to(device=p.device, dtype=p.dtype))

    @torch.no_grad()
    def apply_to_weights(self) -> None:
        if self._params:
            torch._foreach_mul_(self._params, self._masks)

    @torch.no_grad()
    def apply_to_grads(self) -> None:
        pairs = [(p.grad, m) for p, m in zip(self._params, self._masks) if p.grad is not None]
        if pairs:
            grads, masks = zip(*pairs)
            torch._foreach_mul_(list(grads), list(masks))

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Masks as bool CPU tensors keyed by parameter name."""
        return {n: m.detach().to("cpu", torch.bool) for n, m in zip(self.names, self._masks)}

    def density(self) -> float:
        """Fraction of masked-parameter entries that survive."""
        total = sum(m.numel() for m in self._masks)
        return sum(int(m.count_nonzero()) for m in self._masks) / total if total else 1.0


def build_optimizer(model: nn.Module, cfg: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    """AdamW with betas (beta1, beta2), weight decay on matrices only, fused kernels on CUDA."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": cfg.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    groups = [g for g in groups if g["params"]]
    return torch.optim.AdamW(
        groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.adam_eps, fused=device.type == "cuda"
    )


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
