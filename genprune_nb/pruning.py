"""Pruning: which surviving weights to remove after a generation.

A *criterion* scores every weight (higher = more important); ``prune`` removes the lowest-scoring fraction of
each tensor's survivors (``scope="layer"``, the paper) or of all survivors at once (``scope="global"``).
Ties are broken deterministically: among equal scores the lower flat index is pruned first.
"""
from __future__ import annotations

from typing import Callable, Mapping, Protocol

import torch

EMBEDDINGS = ("transformer.wte.weight", "lm_head.weight")


class Criterion(Protocol):
    """Importance of each entry of a weight tensor (same shape, higher = keep)."""

    def __call__(self, name: str, weight: torch.Tensor) -> torch.Tensor: ...


def magnitude(name: str, weight: torch.Tensor) -> torch.Tensor:
    """|w|: the paper's iterative magnitude pruning."""
    return weight.detach().abs().float()


CRITERIA: dict[str, Callable[..., Criterion]] = {"magnitude": lambda: magnitude}


def get_criterion(name: str, **kwargs) -> Criterion:
    """The criterion registered as ``name``; an unknown name is refused with the known ones."""
    if name not in CRITERIA:
        raise ValueError(f"unknown pruning criterion {name!r}; choose one of {', '.join(CRITERIA)}")
    return CRITERIA[name](**kwargs)


def prunable_names(state: Mapping[str, torch.Tensor], prune_embeddings: bool = True) -> list[str]:
    """Every 2-D weight, in state-dict order; without ``wte`` / ``lm_head`` unless ``prune_embeddings``."""
    return [n for n, t in state.items() if t.dim() == 2 and (prune_embeddings or n not in EMBEDDINGS)]


def _count(fraction: float, survivors: int) -> int:
    return int(round(fraction * survivors))


def prune(
    weights: Mapping[str, torch.Tensor],
    masks: Mapping[str, torch.Tensor],
    fraction: float,
    criterion: Criterion = magnitude,
    scope: str = "layer",
) -> dict[str, torch.Tensor]:
    """New boolean masks with ``fraction`` of the surviving weights removed.

    ``masks`` holds the current survivors of every tensor to prune (all-True before the first generation);
    pruned entries never come back. ``scope="layer"`` removes round(fraction x survivors) per tensor;
    ``"global"`` removes round(fraction x all survivors) with one threshold over every tensor's scores.
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"prune fraction must lie in [0, 1), got {fraction}")
    names = list(masks)
    scores, alive = {}, {}
    for name in names:
        if name not in weights:
            raise KeyError(f"mask for {name!r} has no weight")
        mask = masks[name].bool()
        s = criterion(name, weights[name])
        if s.shape != mask.shape:
            raise ValueError(f"criterion score for {name!r} has shape {tuple(s.shape)}, expected {tuple(mask.shape)}")
        alive[name] = mask.flatten().nonzero().squeeze(1)
        scores[name] = s.flatten()[alive[name]]
    new = {name: masks[name].bool().clone() for name in names}
    if scope == "layer":
        for name in names:
            k = _count(fraction, alive[name].numel())
            order = torch.argsort(scores[name], stable=True)
            new[name].view(-1)[alive[name][order[:k]]] = False
    elif scope == "global":
        all_scores = torch.cat([scores[n] for n in names])
        owner = torch.cat([torch.full_like(alive[n], i) for i, n in enumerate(names)])
        index = torch.cat([alive[n] for n in names])
        k = _count(fraction, all_scores.numel())
        drop = torch.argsort(all_scores, stable=True)[:k]
        for i, name in enumerate(names):
            sel = drop[owner[drop] == i]
            new[name].view(-1)[index[sel]] = False
    else:
        raise ValueError(f"pruning scope must be 'layer' or 'global', got {scope!r}")
    return new
