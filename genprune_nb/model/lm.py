"""The GPT as a language model: autocast, next-token log-probabilities (the primitive every evaluation builds on),
the tokenizer it reads (:func:`model_tokenizer`) and the validation loss shared by training and ``val_loss``."""
from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn

from ..data.loader import TokenLoader
from ..launch import DistContext
from ..tokenizer import Tokenizer, get_tokenizer

IGNORE = -100  # a target that is not scored (its log-prob reads 0)


@torch.no_grad()
def next_token_logprobs(
    model: nn.Module, ids: torch.Tensor, *, dtype: str = "bfloat16", autocast_cpu: bool = False
) -> torch.Tensor:
    """Natural-log probability of each token given the ones before it.

    ``ids`` [B, T] (on the model's device) -> [B, T-1] fp32, where entry t is log P(ids[:, t+1] | ids[:, :t+1]).
    Padding on the right never changes the values at earlier positions (the model is causal).
    Runs under bf16 autocast on CUDA, fp32 on CPU (bf16 there too with ``autocast_cpu``).
    """
    # targets shifted left, the last position ignored
    return target_logprobs(model, ids, F.pad(ids[:, 1:], (0, 1), value=IGNORE), dtype=dtype,
                           autocast_cpu=autocast_cpu)[:, :-1]


def target_logprobs(
    model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, *, dtype: str = "bfloat16",
    autocast_cpu: bool = False,
) -> torch.Tensor:
    """log P(targets[:, t] | inputs[:, :t+1]) [B, T] fp32, for ``inputs`` and ``targets`` [B, T] on one device.

    ``targets`` equal to ``IGNORE`` give 0.
    """
    return target_predictions(model, inputs, targets, dtype=dtype, greedy=False, autocast_cpu=autocast_cpu)[0]


@torch.no_grad()
def target_predictions(
    model: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    *,
    dtype: str = "bfloat16",
    greedy: bool = True,
    positions: torch.Tensor | None = None,
    attn_mask: torch.Tensor | None = None,
    autocast_cpu: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """:func:`target_logprobs` and, if ``greedy``, whether each target is the model's top choice there ([B, T] bool,
    False where ignored; None otherwise).

    Only the positions whose target is not ``IGNORE`` meet the vocabulary head and the softmax (a model with
    ``final_hidden`` and ``head``, the GPT; another model's ``forward`` logits are read at those positions).
    ``positions`` and ``attn_mask`` read packed sequences (see ``GPT.hidden_states``; GPT only). ``autocast_cpu``:
    bf16 autocast on CPU too (:func:`autocast_context`).
    """
    read = targets != IGNORE
    wanted = targets[read]
    with autocast_context(inputs.device, dtype, autocast_cpu):
        if reads_packed(model):
            hidden = model.final_hidden(inputs, positions, attn_mask)[read]
            rows = head_rows(hidden.device, model.config.vocab_size)
            # a chunk's logits are read as soon as they are made (on a CPU while they are still in cache)
            chunks = ((model.head(h), t) for h, t in zip(hidden.split(rows), wanted.split(rows)))
        elif positions is None and attn_mask is None:
            chunks = iter([(model(inputs)[0][read].float(), wanted)])
        else:
            raise TypeError(f"{type(model).__name__} has no final_hidden / head: it cannot read packed sequences")
        read_logprobs, read_hits = [], []
        for logits, t in chunks:
            read_logprobs.append(-F.cross_entropy(logits, t, reduction="none"))
            if greedy:
                read_hits.append(logits.argmax(dim=-1) == t)
    logprobs = torch.zeros(targets.shape, device=targets.device)
    logprobs[read] = torch.cat(read_logprobs)
    if not greedy:
        return logprobs, None
    hits = torch.zeros(targets.shape, dtype=torch.bool, device=targets.device)
    hits[read] = torch.cat(read_hits)
    return logprobs, hits


# Logits per head chunk in scoring. On a CPU a chunk of 2**23 fp32 logits (32 MiB, 166 rows of a 50k vocabulary) is
# reduced while it is still in the last-level cache instead of going through memory as one [rows, V] tensor, which
# counts where the head's matmul is cheap per logit, in a narrow model (bench/head_rows.py, BENCHMARKS.md).
# Elsewhere the chunk only bounds memory (2**28 logits, 1 GiB).
HEAD_CHUNK_LOGITS = {"cpu": 2**23}
DEVICE_HEAD_CHUNK_LOGITS = 2**28


def head_rows(device: torch.device, vocab_size: int) -> int:
    """Rows of final hidden states that meet the vocabulary head at once when scoring (see ``HEAD_CHUNK_LOGITS``)."""
    return max(1, HEAD_CHUNK_LOGITS.get(device.type, DEVICE_HEAD_CHUNK_LOGITS) // vocab_size)


def reads_packed(model: nn.Module) -> bool:
    """Whether ``model`` gives its final hidden states and its head apart (``final_hidden``, ``head``: the GPT), so
    that :func:`target_predictions` can read packed sequences and apply the head only where a target is read."""
    return callable(getattr(model, "final_hidden", None)) and callable(getattr(model, "head", None))


def model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def model_tokenizer(model: nn.Module) -> Tokenizer:
    """The tokenizer the model reads (``model.config.tokenizer``): every evaluation encodes its text with it."""
    return get_tokenizer(model.config.tokenizer)


def autocast_context(device: torch.device, dtype: str, cpu: bool = False) -> contextlib.AbstractContextManager:
    """bf16 (or fp16) autocast on CUDA; on CPU only with ``cpu``, else fp32. (An autocast the caller opened, e.g.
    ``torch.autocast("cpu", torch.bfloat16)`` around an evaluation, stays in force.)"""
    if device.type in (("cuda", "cpu") if cpu else ("cuda",)) and dtype != "float32":
        return torch.autocast(device.type, dtype=getattr(torch, dtype))
    return contextlib.nullcontext()


@torch.no_grad()
def validation_loss(
    model: nn.Module, loader: TokenLoader, n_batches: int, ctx: DistContext, dtype: str = "bfloat16",
    autocast_cpu: bool = False,
    loss_chunk: int = 0,
) -> float:
    """Mean loss over the first ``n_batches`` batches of ``loader`` (from its start), averaged over ranks;
    ``loss_chunk`` > 0 takes it that many positions at a time (``GPT.forward``)."""
    was_training = model.training
    model.eval()
    loader.reset()
    total = torch.zeros((), device=ctx.device)
    for _ in range(n_batches):
        x, y = (t.to(ctx.device, non_blocking=True) for t in loader.next_batch())
        with autocast_context(ctx.device, dtype, autocast_cpu):
            _, loss = model(x, y, loss_chunk=loss_chunk)
        total += loss.float()
    model.train(was_training)
    return ctx.all_reduce_mean(total / n_batches).item()


def validation_batches(tokens: int, loader: TokenLoader, required: bool = True) -> int:
    """Whole validation batches (of the loader's world step) in ``tokens``, all within the val shards.

    Refuses more batches than the shards hold (they would repeat tokens) and, if ``required``, fewer than one.
    """
    n = tokens // loader.step_tokens
    if required and n == 0:
        raise ValueError(f"{tokens} val tokens are less than one validation batch of {loader.step_tokens} tokens "
                         f"({loader.batch_size} x {loader.seq_len} x {loader.world_size} ranks)")
    if n > loader.steps_per_epoch():
        raise ValueError(f"{tokens} val tokens need {n} batches of {loader.step_tokens} tokens, but the val shards "
                         f"{[str(f) for f in loader.files]} hold only {loader.steps_per_epoch()}")
    return n
