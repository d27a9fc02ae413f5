"""Validation loss on a fixed number of held-out tokens (the paper's curves use 1.64M), via the training code."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from torch import nn

from ..config import Preset, TrainConfig
from ..data.loader import TokenLoader
from ..data.manifest import shard_files
from ..launch import DistContext
from ..model.gpt import GPT
from ..model.lm import model_device, validation_batches, validation_loss


def val_loss(
    model: nn.Module,
    files: Sequence[str | Path],
    *,
    tokens: int,
    seq_len: int,
    batch_size: int = 8,
    dtype: str = "bfloat16",
) -> dict[str, Any]:
    """Row ``loss``: mean next-token cross-entropy (nats) over the first ``tokens`` tokens of the val shards.

    ``tokens`` is rounded down to whole batches of ``batch_size`` x ``seq_len``; ``n`` is the number actually used.
    """
    config = model.config if isinstance(model, GPT) else None
    vocab_size, tokenizer = (config.vocab_size, config.tokenizer) if config is not None else (None, None)
    loader = TokenLoader(files, batch_size, seq_len, vocab_size=vocab_size, tokenizer=tokenizer)
    n_batches = validation_batches(tokens, loader)
    value = validation_loss(model, loader, n_batches, DistContext(device=model_device(model)), dtype)
    return {"metric": "loss", "value": value, "n": n_batches * loader.step_tokens}


def preset_val_loss(
    model: nn.Module, preset: Preset, *, schedule: TrainConfig | None = None, tokens: int | None = None,
    limit: int | None = None,
) -> dict[str, Any]:
    """:func:`val_loss` on the preset's val shards, with the sequence length and micro-batch of ``schedule`` (the
    one the model trained on, ``Checkpoint.schedule``; default ``preset.train``).

    ``tokens`` defaults to the schedule's ``val_tokens``; ``limit`` caps it at ``limit`` sequences (quick runs).
    """
    t = schedule or preset.train
    tokens = t.val_tokens if tokens is None else tokens
    if limit is not None:
        tokens = min(tokens, limit * t.seq_len)
    batch_size = max(1, min(t.micro_batch_size, tokens // t.seq_len))
    return val_loss(model, shard_files(preset, "val"), tokens=tokens, seq_len=t.seq_len, batch_size=batch_size,
                    dtype=t.autocast_dtype)

