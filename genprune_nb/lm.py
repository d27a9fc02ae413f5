"""The GPT as a language model: next-token log-probabilities, the one primitive every evaluation builds on."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .train import autocast_context


@torch.no_grad()
def next_token_logprobs(
    model: nn.Module, ids: torch.Tensor, *, dtype: str = "bfloat16"
) -> torch.Tensor:
    """Natural-log probability of each token given the ones before it.

    ``ids`` [B, T] (on the model's device) -> [B, T-1] fp32, where entry t is log P(ids[:, t+1] | ids[:, :t+1]).
    Padding on the right never changes the values at earlier positions (the model is causal).
    Runs under bf16 autocast on CUDA, fp32 on CPU.
    """
    with autocast_context(ids.device, dtype):
        logits, _ = model(ids)
    B, T, V = logits.shape
    # targets shifted left, the last position ignored: the logits are read as they are, without a copy
    targets = F.pad(ids[:, 1:], (0, 1), value=-100)
    nll = F.cross_entropy(logits.view(-1, V), targets.reshape(-1), reduction="none", ignore_index=-100)
    return -nll.view(B, T)[:, :-1]


def model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device
