"""Pruning: which surviving weights to remove after a generation.

A *criterion* scores every weight (higher = more important); ``prune`` removes the lowest-scoring fraction of
each tensor's survivors (``scope="layer"``, the paper) or of all survivors at once (``scope="global"``).
How many, and what happens to equal scores, is the tie rule (``TIE_RULES``, ``lowest``):

* ``exact``: exactly round(fraction x n) of the n survivors go; among equal scores the lower flat index first;
* ``authors``: the authors' code: the score at sorted position floor(fraction x n) is a threshold and only scores
  strictly below it go, so every weight tied with the threshold survives (fewer go when there are ties: untrained
  embedding rows keep exactly equal magnitudes after the signed-constant re-init).

``prune_by`` applies one of the named strategies of ``CRITERIA``:

* ``magnitude``: |w|, the paper's iterative magnitude pruning;
* ``random``: seeded random scores, so the same per-tensor counts as magnitude at random positions;
* ``attribution``: first-order Taylor importance |w * dL/dw| summed over batches (``taylor_scores``);
* ``structured``: whole MLP hidden units (row j of ``c_fc`` with column j of ``c_proj``) ranked by their summed
  attribution; every other tensor is pruned entry-wise by attribution, so each tensor keeps the same density as
  under the other criteria. ``group_sparsity_penalty`` is the group lasso that pushes whole units to zero first.
"""
from __future__ import annotations

import contextlib
import math
import re
import zlib
from typing import Callable, Iterable, Mapping, Protocol

import torch
from torch import nn

from ..config import CRITERIA, TIE_RULES

EMBEDDINGS = ("transformer.wte.weight", "lm_head.weight")
_BLOCK = re.compile(r"\.h\.(\d+)\.")
NEEDS_ATTRIBUTION = ("attribution", "structured")


class Criterion(Protocol):
    """Importance of each entry of a weight tensor (same shape, higher = keep)."""

    def __call__(self, name: str, weight: torch.Tensor) -> torch.Tensor: ...


def magnitude(name: str, weight: torch.Tensor) -> torch.Tensor:
    """|w|: the paper's iterative magnitude pruning."""
    return weight.detach().abs().float()


def random_scores(seed: int) -> Criterion:
    """Uniform scores drawn per tensor from a generator seeded by ``seed`` and the tensor's name (order-free)."""

    def score(name: str, weight: torch.Tensor) -> torch.Tensor:
        gen = torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(name.encode()))
        return torch.rand(weight.shape, generator=gen)

    return score


def given_scores(scores: Mapping[str, torch.Tensor]) -> Criterion:
    """A criterion reading precomputed scores (e.g. ``taylor_scores``) by tensor name."""

    def score(name: str, weight: torch.Tensor) -> torch.Tensor:
        if name not in scores:
            raise KeyError(f"no precomputed score for {name!r}")
        return scores[name].float().cpu()

    return score


def prunable_names(state: Mapping[str, torch.Tensor], prune_embeddings: bool = True) -> list[str]:
    """Every 2-D weight, in state-dict order; without ``wte`` / ``lm_head`` unless ``prune_embeddings``."""
    return [n for n, t in state.items() if t.dim() == 2 and (prune_embeddings or n not in EMBEDDINGS)]


def check_covers(
    masks: Mapping[str, torch.Tensor],
    state: Mapping[str, torch.Tensor],
    what: str = "mask set",
    prune_embeddings: bool | None = None,
) -> None:
    """Refuse masks that do not fit the model tensor for tensor; the error names the tensor.

    A tensor the model lacks or of another shape cannot be applied; a prunable tensor left out would silently
    train dense (e.g. a connectome of a 2-layer model grown into 3 layers). Which tensors must be covered:
    ``prunable_names``, with ``wte`` / ``lm_head`` only if the masks were made with embeddings: ``prune_embeddings``
    where their maker recorded it, else the names tell (a set with neither embedding was made without them).
    """
    for name, mask in masks.items():
        if name not in state:
            raise ValueError(f"{what}: tensor {name!r} is not a parameter of the model")
        if tuple(mask.shape) != tuple(state[name].shape):
            raise ValueError(f"{what}: tensor {name!r} has shape {tuple(mask.shape)}, "
                             f"the model's {tuple(state[name].shape)}")
    if prune_embeddings is None:
        prune_embeddings = any(n in masks for n in EMBEDDINGS)
    missing = [n for n in prunable_names(state, prune_embeddings) if n not in masks]
    if missing:
        raise ValueError(f"{what} does not cover the model's prunable tensor {missing[0]!r} ({len(missing)} "
                         f"tensors uncovered; made for another model shape?)")


def _check_fraction(fraction: float) -> None:
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"prune fraction must lie in [0, 1), got {fraction}")


def lowest(scores: torch.Tensor, fraction: float, ties: str = "exact") -> torch.Tensor:
    """Positions in the 1-D ``scores`` to prune under the tie rule ``ties`` (module docstring), lowest first."""
    if ties not in TIE_RULES:
        raise ValueError(f"tie rule must be one of {TIE_RULES}, got {ties!r}")
    _check_fraction(fraction)
    order = torch.argsort(scores, stable=True)
    if ties == "exact":
        return order[: int(round(fraction * scores.numel()))]
    k = math.floor(fraction * scores.numel())
    if k == 0:
        return order[:0]
    threshold = scores[order[k]]
    return order[: int((scores < threshold).sum())]


def prune(
    weights: Mapping[str, torch.Tensor],
    masks: Mapping[str, torch.Tensor],
    fraction: float,
    criterion: Criterion = magnitude,
    scope: str = "layer",
    ties: str = "exact",
) -> dict[str, torch.Tensor]:
    """New boolean masks with ``fraction`` of the surviving weights removed.

    ``masks`` holds the current survivors of every tensor to prune (all-True before the first generation);
    pruned entries never come back. ``scope="layer"`` removes ``fraction`` of each tensor's survivors, ``"global"``
    ``fraction`` of all survivors with one threshold over every tensor's scores; ``ties`` says how many exactly
    (``lowest``).
    """
    _check_fraction(fraction)
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
            new[name].view(-1)[alive[name][lowest(scores[name], fraction, ties)]] = False
    elif scope == "global":
        if not names:
            return new
        all_scores = torch.cat([scores[n] for n in names])
        owner = torch.cat([torch.full_like(alive[n], i) for i, n in enumerate(names)])
        index = torch.cat([alive[n] for n in names])
        drop = lowest(all_scores, fraction, ties)
        for i, name in enumerate(names):
            sel = drop[owner[drop] == i]
            new[name].view(-1)[index[sel]] = False
    else:
        raise ValueError(f"pruning scope must be 'layer' or 'global', got {scope!r}")
    return new


# --- structured pruning of MLP hidden units -------------------------------------------------------------------

def mlp_unit_pairs(names: Iterable[str]) -> list[tuple[str, str]]:
    """(``c_fc``, ``c_proj``) weight names of every block whose MLP tensors are both in ``names``."""
    names = set(names)
    pairs = []
    for fc in sorted(n for n in names if n.endswith(".mlp.c_fc.weight")):
        proj = fc.replace(".mlp.c_fc.weight", ".mlp.c_proj.weight")
        if proj in names:
            pairs.append((fc, proj))
    return sorted(pairs, key=lambda pair: int(m.group(1)) if (m := _BLOCK.search(pair[0])) else -1)


def unit_scores(scores: Mapping[str, torch.Tensor], fc: str, proj: str) -> torch.Tensor:
    """Score of each hidden unit j: the sum of its ``c_fc`` row j and its ``c_proj`` column j."""
    return scores[fc].float().sum(1) + scores[proj].float().sum(0)


def prune_units(
    masks: Mapping[str, torch.Tensor], fraction: float, scores: torch.Tensor, fc: str, proj: str,
    ties: str = "exact",
) -> dict[str, torch.Tensor]:
    """New masks of one MLP with ``fraction`` of its surviving units (the lowest-scoring, counted by the tie rule
    ``ties``: ``lowest``) removed whole.

    A unit survives while its ``c_fc`` row has a survivor; a pruned unit loses its whole row and column.
    """
    _check_fraction(fraction)
    fc_mask, proj_mask = masks[fc].bool().clone(), masks[proj].bool().clone()
    if fc_mask.shape[0] != proj_mask.shape[1] or scores.shape != (fc_mask.shape[0],):
        raise ValueError(f"{fc} {tuple(fc_mask.shape)}, {proj} {tuple(proj_mask.shape)} and unit scores "
                         f"{tuple(scores.shape)} do not describe the same hidden units")
    alive = fc_mask.any(1).nonzero().squeeze(1)
    drop = alive[lowest(scores.float().cpu()[alive], fraction, ties)]
    fc_mask[drop, :] = False
    proj_mask[:, drop] = False
    return {fc: fc_mask, proj: proj_mask}


def group_sparsity_penalty(model: nn.Module) -> torch.Tensor:
    """Group lasso over MLP hidden units: sum_j ||(c_fc[j, :], c_proj[:, j])||_2 over every block, in fp32."""
    params = dict(model.named_parameters())
    pairs = mlp_unit_pairs(params)
    if not pairs:
        raise ValueError("the model has no MLP c_fc / c_proj weight pairs to penalise")
    total = torch.zeros((), device=params[pairs[0][0]].device)
    for fc, proj in pairs:
        squares = params[fc].float().pow(2).sum(1) + params[proj].float().pow(2).sum(0)
        total = total + squares.clamp_min(1e-30).sqrt().sum()  # clamp: a zeroed unit has zero (sub)gradient
    return total


# --- first-order (Taylor) attribution --------------------------------------------------------------------------

def taylor_scores(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    names: Iterable[str] | None = None,
    forward_context: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
) -> dict[str, torch.Tensor]:
    """|w * dL/dw| summed over ``batches`` of (inputs, targets), per named weight (default: every 2-D weight).

    The model's gradients are cleared before and after; its weights are unchanged. Runs on the model's device;
    ``forward_context`` wraps each forward (e.g. bf16 autocast on CUDA), the backward runs outside it.
    """
    params = dict(model.named_parameters())
    names = list(names) if names is not None else [n for n, p in params.items() if p.dim() == 2]
    unknown = [n for n in names if n not in params]
    if unknown:
        raise KeyError(f"the model has no parameters {unknown}")
    device = next(model.parameters()).device
    scores = {n: torch.zeros_like(params[n], dtype=torch.float32) for n in names}
    was_training = model.training
    model.eval()
    model.zero_grad(set_to_none=True)
    n_batches = 0
    for x, y in batches:
        with forward_context():
            _, loss = model(x.to(device), y.to(device))
        loss.backward()
        with torch.no_grad():
            for n in names:
                if params[n].grad is not None:
                    scores[n] += (params[n].detach().float() * params[n].grad.float()).abs()
        model.zero_grad(set_to_none=True)
        n_batches += 1
    model.train(was_training)
    if not n_batches:
        raise ValueError("taylor_scores needs at least one batch")
    return {n: s.cpu() for n, s in scores.items()}


def prune_by(
    criterion: str,
    weights: Mapping[str, torch.Tensor],
    masks: Mapping[str, torch.Tensor],
    fraction: float,
    scope: str = "layer",
    *,
    ties: str = "exact",
    seed: int = 0,
    attribution: Mapping[str, torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """One generation's new masks under the named ``criterion`` and tie rule ``ties`` (see the module docstring).

    ``attribution`` (``taylor_scores``) is required by ``attribution`` and ``structured``; ``seed`` by ``random``.
    """
    if criterion not in CRITERIA:
        raise ValueError(f"unknown pruning criterion {criterion!r}; choose one of {', '.join(CRITERIA)}")
    if criterion in NEEDS_ATTRIBUTION and attribution is None:
        raise ValueError(f"pruning criterion {criterion!r} needs attribution scores (pruning.taylor_scores)")
    if criterion == "magnitude":
        return prune(weights, masks, fraction, magnitude, scope, ties)
    if criterion == "random":
        return prune(weights, masks, fraction, random_scores(seed), scope, ties)
    if criterion == "attribution":
        return prune(weights, masks, fraction, given_scores(attribution), scope, ties)
    pairs = mlp_unit_pairs(masks)
    in_units = {n for pair in pairs for n in pair}
    new = prune(weights, {n: m for n, m in masks.items() if n not in in_units}, fraction,
                given_scores(attribution), scope, ties)
    for fc, proj in pairs:
        new.update(prune_units(masks, fraction, unit_scores(attribution, fc, proj), fc, proj, ties))
    return {n: new[n] for n in masks}
