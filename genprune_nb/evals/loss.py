"""Validation loss on a fixed number of held-out tokens (the paper's curves use 1.64M), via the training code, and
the same loss in bits per byte of text, which compares models of different tokenizers."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from torch import nn

from ..config import Preset, TrainConfig
from ..data.loader import TokenLoader
from ..data.manifest import shard_files
from ..data.shards import read_shard
from ..launch import DistContext
from ..model.gpt import GPT
from ..model.lm import model_device, validation_batches, validation_loss
from ..tokenizer import get_tokenizer


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


def bytes_per_token(files: Sequence[str | Path], tokenizer: str, tokens: int) -> float:
    """UTF-8 bytes of text per predicted token in the first ``tokens`` targets of the shards ``files`` (the tokens a
    val loss of that many tokens predicts: the stream from its second token on). ``<|endoftext|>`` separates
    documents: a token to predict, no bytes of text. A byte-level model gives just under 1."""
    if tokens < 1:
        raise ValueError(f"bytes_per_token needs at least one token, got tokens={tokens}")
    stream, have = [], 0
    for path in files:
        stream.append(read_shard(path)[: tokens + 1 - have])
        have += len(stream[-1])
        if have > tokens:
            break
    ids = np.concatenate(stream)[1:]
    if len(ids) < tokens:
        raise ValueError(f"the shards {[str(f) for f in files]} hold {len(ids) + 1} tokens, fewer than the "
                         f"{tokens + 1} that {tokens} targets need")
    kind = get_tokenizer(tokenizer)
    lengths = np.array([len(b) for b in kind.token_bytes(range(kind.n_vocab))], dtype=np.int64)
    lengths[kind.eot] = 0
    return float(lengths[ids].sum() / len(ids))


def preset_bytes_per_token(preset: Preset, *, schedule: TrainConfig | None = None) -> float:
    """:func:`bytes_per_token` of the preset's val shards over the ``val_tokens`` of ``schedule`` (default the inner
    loop's, whose curves the notebooks compare), in the preset's tokenizer."""
    t = schedule or preset.inner_train
    return bytes_per_token(shard_files(preset, "val"), preset.model.tokenizer, t.val_tokens)


def bits_per_byte(nats_per_token, bytes_per_token: float):
    """A loss in nats per token as bits per byte of text: ``loss / (ln 2 x bytes_per_token)`` (scalars or arrays)."""
    if not bytes_per_token > 0:
        raise ValueError(f"bytes_per_token must be positive, got {bytes_per_token!r}")
    return nats_per_token / (math.log(2) * bytes_per_token)
