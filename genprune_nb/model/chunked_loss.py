"""The training loss without its logits: the vocabulary head and cross-entropy taken over chunks of rows.

``linear_cross_entropy(h, weight, targets, rows)`` equals ``F.cross_entropy(F.linear(h, weight).float(), targets,
ignore_index=-1)`` (the plain path of ``GPT.forward``), but the [N, V] logits never exist whole: each chunk of
``rows`` positions gets its logits, their log-sum-exp, its share of the loss and, at once, its gradients with respect
to ``h`` and ``weight`` ((softmax - onehot) / N_valid, the ignored rows zero), after which its logits are freed.
Backward only scales those gradients by the incoming one. Peak memory is one chunk's logits instead of several
copies of the whole [N, V] tensor; the FLOPs are the plain path's three head matmuls.

Precision follows the plain path: under autocast the head's matmuls run in the autocast dtype (``h`` and ``weight``
cast to it, the logits rounded to it, then taken to fp32 for the softmax, as ``lm_head(x).float()`` does) and the
logit gradients are cast back to it for the two backward matmuls; without autocast everything is in the weight's
dtype. The weight's gradient is summed over chunks in fp32 (each chunk's product rounded to the autocast dtype
first, as the plain path rounds the whole one), ``h``'s is stored in ``h``'s dtype.
"""
from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

IGNORE_INDEX = -1  # targets not scored; the loss is the mean over the others, as F.cross_entropy's ignore_index


@torch.compiler.disable  # eager under torch.compile: a graph break at the head, not a traced loop of chunks
def linear_cross_entropy(h: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, rows: int) -> torch.Tensor:
    """Mean cross-entropy of the logits ``h @ weight.T`` (h [..., C], weight [V, C], targets [...]) over the
    targets that are not ``IGNORE_INDEX``, ``rows`` positions at a time (fp32 scalar)."""
    if rows <= 0:
        raise ValueError(f"rows per chunk must be positive, got {rows}")
    h2, t = h.reshape(-1, h.size(-1)), targets.reshape(-1)
    dtype = compute_dtype(h.device, weight.dtype)
    if torch.is_grad_enabled() and (h.requires_grad or weight.requires_grad):
        return _LinearCrossEntropy.apply(h2, weight, t, rows, dtype)
    return _chunked(h2, weight, t, rows, dtype, grad_h=False, grad_weight=False)[0]


def compute_dtype(device: torch.device, weight_dtype: torch.dtype) -> torch.dtype:
    """The dtype the head's matmul runs in: autocast's on ``device`` when it is on, else the weight's."""
    if torch.is_autocast_enabled(device.type):
        return torch.get_autocast_dtype(device.type)
    return weight_dtype


class _LinearCrossEntropy(torch.autograd.Function):
    """Forward computes the loss and both gradients chunk by chunk; backward multiplies them by grad_output."""

    @staticmethod
    def forward(ctx, h, weight, targets, rows, dtype):
        loss, grad_h, grad_weight = _chunked(h, weight, targets, rows, dtype,
                                             grad_h=ctx.needs_input_grad[0], grad_weight=ctx.needs_input_grad[1])
        ctx.save_for_backward(grad_h, grad_weight)
        ctx.weight_dtype = weight.dtype
        return loss

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_loss):
        grad_h, grad_weight = ctx.saved_tensors
        grad_h = grad_h * grad_loss.to(grad_h.dtype) if grad_h is not None else None
        grad_weight = (grad_weight * grad_loss).to(ctx.weight_dtype) if grad_weight is not None else None
        return grad_h, grad_weight, None, None, None


def _chunked(h: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, rows: int, dtype: torch.dtype, *,
             grad_h: bool, grad_weight: bool) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """(mean loss, d loss / d h or None, d loss / d weight in fp32 or None) for h [N, C], targets [N]."""
    with torch.autocast(h.device.type, enabled=False):  # the casts below are explicit
        valid = targets != IGNORE_INDEX
        n_valid = valid.sum()
        w = weight.to(dtype)
        total = torch.zeros((), dtype=torch.float32, device=h.device)
        dh = torch.empty_like(h) if grad_h else None
        acc = torch.promote_types(weight.dtype, torch.float32)  # fp32 (fp64 for an fp64 weight)
        dw = torch.zeros(weight.shape, dtype=acc, device=weight.device) if grad_weight else None
        for start in range(0, h.size(0), rows):
            hc, tc, vc = h[start:start + rows].to(dtype), targets[start:start + rows], valid[start:start + rows]
            logits = (hc @ w.T).float()  # [rows, V], as the plain path's lm_head(x).float()
            picked = logits.gather(1, tc.clamp(min=0)[:, None]).squeeze(1)
            top = logits.amax(dim=1)
            probs = logits.sub_(top[:, None]).exp_()  # in place: one [rows, V] fp32 buffer per chunk
            norm = probs.sum(dim=1)
            total += torch.where(vc, top + norm.log() - picked, 0.0).sum()  # log-sum-exp minus the target's logit
            if not (grad_h or grad_weight):
                continue
            probs.div_(norm[:, None])
            probs.scatter_add_(1, tc.clamp(min=0)[:, None], -vc[:, None].float())  # softmax - onehot
            g = probs.mul_((vc / n_valid)[:, None]).to(dtype)  # ignored rows 0; the mean's 1 / N_valid
            if dh is not None:
                dh[start:start + rows] = g @ w
            if dw is not None:
                if dtype == acc:
                    dw.addmm_(g.T, hc)
                else:
                    dw += (g.T @ hc).to(acc)
        return total / n_valid, dh, dw
