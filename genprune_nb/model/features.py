"""Representations from every layer of the GPT, as an xarray DataArray (presentation x neuroid): one extractor.

Layer 0 is the embedding output, layer i (1..n_layer) the output of block i (the residual stream, before the final
norm). :func:`layer_states` runs the forward for any token sequences; :func:`sentence_features` pools each sentence
to one vector (its last token's hidden state, DESIGN.md §5, the default, or the mean over its tokens) and
:func:`token_features` keeps every token of fixed-length windows (the inputs of CKA). Sequences of unequal length are
batched with right padding: the model is causal, so padding never changes the positions that are read.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import xarray as xr
from torch import nn

from ..progress import tqdm
from ..tokenizer import get_tokenizer
from .lm import autocast_context, model_device

POOLINGS = ("last", "mean")


def resolve_layers(layers: Sequence[int] | None, n_layer: int) -> list[int]:
    """The hidden-state layers to read: all (0 = embeddings .. n_layer) when None; refuses any out of range."""
    layers = list(range(n_layer + 1)) if layers is None else [int(l) for l in layers]
    bad = [l for l in layers if not 0 <= l <= n_layer]
    if bad or not layers:
        raise ValueError(f"layers {bad or layers} out of range 0..{n_layer} (0 = embeddings, i = block i)")
    return layers


def neuroid_coords(layers: Sequence[int], width: int) -> dict[str, tuple[str, np.ndarray]]:
    """The ``layer`` and ``unit`` coordinates of a feature array's neuroid dimension (layer-major)."""
    return {"layer": ("neuroid", np.repeat(layers, width)), "unit": ("neuroid", np.tile(np.arange(width), len(layers)))}


def tokenize_sentences(sentences: Sequence[str], *, tokenizer: str = "gpt2", prefix_eot: bool = True,
                       max_len: int | None = None) -> list[list[int]]:
    """Token ids of each sentence by ``tokenizer`` (a name), optionally after ``<|endoftext|>``; refuses empty or
    too long sentences."""
    tok = get_tokenizer(tokenizer)
    out = []
    for i, s in enumerate(sentences):
        ids = tok.encode(s)
        if not ids:
            raise ValueError(f"sentence {i} ({s!r}) has no tokens")
        ids = [tok.eot, *ids] if prefix_eot else ids
        if max_len is not None and len(ids) > max_len:
            raise ValueError(f"sentence {i} ({s[:40]!r}...) has {len(ids)} tokens, more than block_size {max_len}")
        out.append(ids)
    return out


@torch.no_grad()
def layer_states(
    model: nn.Module,
    sequences: Sequence[Sequence[int]] | torch.Tensor,
    layers: Sequence[int],
    *,
    pooling: str | None = None,
    first: int = 0,
    batch_size: int = 8,
    dtype: str = "bfloat16",
    autocast_cpu: bool = False,
    progress: bool = False,
    desc: str = "features",
) -> np.ndarray:
    """Hidden states of ``layers`` for token ``sequences``, float32: [n, L, C] pooled or [n, T, L, C] unpooled.

    The one forward behind every feature array, ``batch_size`` sequences at a time. ``pooling``: ``"last"`` (each
    sequence's last token), ``"mean"`` (mean over its tokens from position ``first`` on, e.g. 1 to skip a prefixed
    ``<|endoftext|>``) or None (every token; the sequences must then be equally long). Runs under autocast
    (``dtype``) on CUDA and in fp32 on CPU (autocast there too with ``autocast_cpu``); the caller puts the model in
    eval mode.
    """
    if pooling is not None and pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS} or None, got {pooling!r}")
    device = model_device(model)
    n, width = len(sequences), model.config.n_embd
    lengths_all = [sequences.shape[1]] * n if isinstance(sequences, torch.Tensor) else [len(ids) for ids in sequences]
    if pooling is None and len(set(lengths_all)) > 1:
        raise ValueError(f"unpooled features need sequences of one length, got lengths {sorted(set(lengths_all))}")
    shape = (n, len(layers), width) if pooling else (n, lengths_all[0] if n else 0, len(layers), width)
    out = np.empty(shape, dtype=np.float32)
    for start in tqdm(range(0, n, batch_size), desc=desc, disable=not progress):
        batch = sequences[start:start + batch_size]
        if isinstance(batch, torch.Tensor):
            idx = batch.to(device=device, dtype=torch.long)
        else:
            idx = torch.zeros((len(batch), max(lengths_all[start:start + batch_size])), dtype=torch.long)
            for b, ids in enumerate(batch):
                idx[b, :len(ids)] = torch.tensor(ids)
            idx = idx.to(device)
        with autocast_context(device, dtype, autocast_cpu):
            hidden = model.hidden_states(idx)
        if pooling is None:
            out[start:start + len(idx)] = torch.stack([hidden[l] for l in layers], dim=2).float().cpu().numpy()
            continue
        h = torch.stack([hidden[l] for l in layers], dim=1).float()  # [B, L, T, C]
        lengths = torch.tensor(lengths_all[start:start + len(idx)], device=device)
        if pooling == "last":
            pooled = h[torch.arange(len(idx), device=device), :, lengths - 1]
        else:
            pos = torch.arange(idx.size(1), device=device)
            keep = ((pos >= first) & (pos < lengths[:, None])).float()  # [B, T]
            pooled = (h * keep[:, None, :, None]).sum(2) / keep.sum(1)[:, None, None]
        out[start:start + len(idx)] = pooled.cpu().numpy()
    return out


def sentence_features(
    model: nn.Module,
    sentences: Sequence[str],
    *,
    layers: Sequence[int] | None = None,
    pooling: str = "last",
    prefix_eot: bool = True,
    batch_size: int = 64,
    dtype: str = "bfloat16",
    autocast_cpu: bool = False,
    progress: bool = False,
) -> xr.DataArray:
    """Hidden states of ``layers`` (default: all, 0..n_layer) for each sentence, [presentation, neuroid] float32.

    ``pooling``: ``"last"`` (the last token) or ``"mean"`` (mean over the sentence's own tokens, not the prefix).
    The sentences are tokenized with the model's tokenizer (``model.config.tokenizer``). ``prefix_eot`` starts
    each sentence with ``<|endoftext|>``, as every training document starts (default).
    The model should be in eval mode; it runs under bf16 autocast on CUDA (``dtype``) and in fp32 on CPU (bf16 there
    too with ``autocast_cpu``).
    Coordinates: ``stimulus`` (the text) on presentation; ``layer`` and ``unit`` on neuroid.
    """
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
    n_layer, width = model.config.n_layer, model.config.n_embd
    layers = resolve_layers(layers, n_layer)
    tokens = tokenize_sentences(sentences, tokenizer=model.config.tokenizer, prefix_eot=prefix_eot,
                                max_len=model.config.block_size)
    out = layer_states(model, tokens, layers, pooling=pooling, first=1 if prefix_eot else 0, batch_size=batch_size,
                       dtype=dtype, autocast_cpu=autocast_cpu, progress=progress)
    return xr.DataArray(
        out.reshape(len(tokens), -1),
        dims=("presentation", "neuroid"),
        coords={
            "stimulus": ("presentation", np.asarray(sentences, dtype=object)),
            **neuroid_coords(layers, width),
        },
        attrs={"pooling": pooling, "prefix_eot": int(prefix_eot)},
    )


def token_features(
    model: nn.Module,
    tokens: torch.Tensor,
    *,
    layers: Sequence[int] | None = None,
    batch_size: int = 8,
    dtype: str = "bfloat16",
    autocast_cpu: bool = False,
    progress: bool = False,
) -> xr.DataArray:
    """Hidden states of ``layers`` (default all, 0..n_layer) at every token of ``tokens`` [n_seq, T] (float32).

    Returns [presentation = n_seq * T (sequence-major), neuroid = len(layers) * n_embd] with coords ``sequence`` and
    ``position`` on presentation, ``layer`` and ``unit`` on neuroid. The model is put in eval mode; it runs under
    autocast (``dtype``) on CUDA and in fp32 on CPU (autocast there too with ``autocast_cpu``), ``batch_size``
    sequences at a time.
    """
    tokens = torch.as_tensor(tokens)
    if tokens.ndim != 2 or tokens.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
        raise ValueError(f"tokens must be an integer tensor [n_seq, T], got dtype {tokens.dtype} shape "
                         f"{tuple(tokens.shape)}")
    n_seq, seq_len = tokens.shape
    if n_seq == 0 or seq_len == 0:
        raise ValueError(f"tokens is empty: shape {tuple(tokens.shape)}")
    cfg = model.config
    if seq_len > cfg.block_size:
        raise ValueError(f"token windows of {seq_len} tokens exceed the model's block_size {cfg.block_size}")
    outside = tokens[(tokens < 0) | (tokens >= cfg.vocab_size)]
    if outside.numel():
        raise ValueError(f"token id {int(outside[0])} is outside the model's vocabulary (vocab_size {cfg.vocab_size})")
    layers = resolve_layers(layers, cfg.n_layer)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    model.eval()
    out = layer_states(model, tokens, layers, batch_size=batch_size, dtype=dtype, autocast_cpu=autocast_cpu,
                       progress=progress, desc="token features")
    return xr.DataArray(
        out.reshape(n_seq * seq_len, len(layers) * cfg.n_embd),
        dims=("presentation", "neuroid"),
        coords={
            "sequence": ("presentation", np.repeat(np.arange(n_seq), seq_len)),
            "position": ("presentation", np.tile(np.arange(seq_len), n_seq)),
            **neuroid_coords(layers, cfg.n_embd),
        },
    )
