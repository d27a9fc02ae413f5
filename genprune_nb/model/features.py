"""Sentence representations from every layer of the GPT, as an xarray DataArray (presentation x neuroid).

Layer 0 is the embedding output, layer i (1..n_layer) the output of block i (the residual stream, before the final
norm). A sentence is represented by its last token's hidden state (DESIGN.md §5, the default) or by the mean over
its tokens. Sentences are batched with right padding: the model is causal, so padding never changes the positions
that are read.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import xarray as xr
from torch import nn
from tqdm.auto import tqdm

from ..tokenizer import EOT, encode
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


def tokenize_sentences(sentences: Sequence[str], *, prefix_eot: bool = True, max_len: int | None = None
                       ) -> list[list[int]]:
    """Token ids of each sentence, optionally after ``<|endoftext|>``; refuses empty or too long sentences."""
    out = []
    for i, s in enumerate(sentences):
        ids = encode(s)
        if not ids:
            raise ValueError(f"sentence {i} ({s!r}) has no tokens")
        ids = [EOT, *ids] if prefix_eot else ids
        if max_len is not None and len(ids) > max_len:
            raise ValueError(f"sentence {i} ({s[:40]!r}...) has {len(ids)} tokens, more than block_size {max_len}")
        out.append(ids)
    return out


@torch.no_grad()
def sentence_features(
    model: nn.Module,
    sentences: Sequence[str],
    *,
    layers: Sequence[int] | None = None,
    pooling: str = "last",
    prefix_eot: bool = True,
    batch_size: int = 64,
    dtype: str = "bfloat16",
    progress: bool = False,
) -> xr.DataArray:
    """Hidden states of ``layers`` (default: all, 0..n_layer) for each sentence, [presentation, neuroid] float32.

    ``pooling``: ``"last"`` (the last token) or ``"mean"`` (mean over the sentence's own tokens, not the prefix).
    ``prefix_eot`` starts each sentence with ``<|endoftext|>``, as every training document starts (default).
    The model should be in eval mode; it runs under bf16 autocast on CUDA (``dtype``) and in fp32 on CPU.
    Coordinates: ``stimulus`` (the text) on presentation; ``layer`` and ``unit`` on neuroid.
    """
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
    n_layer, width = model.config.n_layer, model.config.n_embd
    layers = resolve_layers(layers, n_layer)
    tokens = tokenize_sentences(sentences, prefix_eot=prefix_eot, max_len=model.config.block_size)
    device = model_device(model)
    out = np.empty((len(tokens), len(layers), width), dtype=np.float32)
    starts = range(0, len(tokens), batch_size)
    for start in tqdm(starts, desc="features", disable=not progress):
        batch = tokens[start:start + batch_size]
        lengths = torch.tensor([len(ids) for ids in batch], device=device)
        idx = torch.full((len(batch), int(lengths.max())), EOT, dtype=torch.long)
        for b, ids in enumerate(batch):
            idx[b, :len(ids)] = torch.tensor(ids)
        with autocast_context(device, dtype):
            hidden = model.hidden_states(idx.to(device))
        h = torch.stack([hidden[l] for l in layers], dim=1).float()  # [B, L, T, C]
        if pooling == "last":
            pooled = h[torch.arange(len(batch), device=device), :, lengths - 1]
        else:
            pos = torch.arange(idx.size(1), device=device)
            first = 1 if prefix_eot else 0
            keep = ((pos >= first) & (pos < lengths[:, None])).float()  # [B, T]
            pooled = (h * keep[:, None, :, None]).sum(2) / keep.sum(1)[:, None, None]
        out[start:start + len(batch)] = pooled.cpu().numpy()
    return xr.DataArray(
        out.reshape(len(tokens), -1),
        dims=("presentation", "neuroid"),
        coords={
            "stimulus": ("presentation", np.asarray(sentences, dtype=object)),
            **neuroid_coords(layers, width),
        },
        attrs={"pooling": pooling, "prefix_eot": int(prefix_eot)},
    )
