"""Layer-by-layer representational similarity of two GPTs: token features, linear CKA heatmaps, their figure.

Features are the residual stream of every token (layer 0 = embeddings, layer i = block i, before the final norm) as
an xarray DataArray [presentation, neuroid] like :func:`genprune_nb.model.features.sentence_features`;
:func:`layer_cka` compares two such arrays layer by layer with :mod:`genprune_nb.analysis.cka`. The default minibatch
estimator shuffles the tokens into batches (``seed=0``): consecutive tokens of one window are correlated, and the
unbiased estimator assumes exchangeable rows.
"""
from __future__ import annotations

import math
import os
from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
import xarray as xr
from torch import nn
from tqdm.auto import tqdm

from ..data.shards import read_header, read_shard
from ..model.features import neuroid_coords, resolve_layers
from ..model.lm import autocast_context, model_device
from .cka import cka_matrix


@torch.no_grad()
def token_features(
    model: nn.Module,
    tokens: torch.Tensor,
    *,
    layers: Sequence[int] | None = None,
    batch_size: int = 8,
    dtype: str = "bfloat16",
    progress: bool = False,
) -> xr.DataArray:
    """Hidden states of ``layers`` (default all, 0..n_layer) at every token of ``tokens`` [n_seq, T] (float32).

    Returns [presentation = n_seq * T (sequence-major), neuroid = len(layers) * n_embd] with coords ``sequence`` and
    ``position`` on presentation, ``layer`` and ``unit`` on neuroid. The model is put in eval mode; it runs under
    autocast (``dtype``) on CUDA and in fp32 on CPU, ``batch_size`` sequences at a time.
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
    layers = resolve_layers(layers, cfg.n_layer)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    model.eval()
    device = model_device(model)
    width = cfg.n_embd
    out = np.empty((n_seq, seq_len, len(layers), width), dtype=np.float32)
    for start in tqdm(range(0, n_seq, batch_size), desc="token features", disable=not progress):
        idx = tokens[start:start + batch_size].to(device=device, dtype=torch.long)
        with autocast_context(device, dtype):
            hidden = model.hidden_states(idx)
        out[start:start + len(idx)] = torch.stack([hidden[l] for l in layers], dim=2).float().cpu().numpy()
    return xr.DataArray(
        out.reshape(n_seq * seq_len, len(layers) * width),
        dims=("presentation", "neuroid"),
        coords={
            "sequence": ("presentation", np.repeat(np.arange(n_seq), seq_len)),
            "position": ("presentation", np.tile(np.arange(seq_len), n_seq)),
            **neuroid_coords(layers, width),
        },
    )


def sample_token_windows(files: Sequence[str | os.PathLike], n_tokens: int, seq_len: int,
                         seed: int | None = 0) -> torch.Tensor:
    """ceil(n_tokens / seq_len) windows of ``seq_len`` tokens from token shards, as a LongTensor [n_windows, T].

    Each shard is cut into aligned, non-overlapping windows; ``seed`` draws distinct windows uniformly from all of
    them (returned in file order), ``seed=None`` takes the first ones. E.g. the study's validation shards,
    ``genprune_nb.data.manifest.shard_files(preset, "val")``.
    """
    if n_tokens < 1 or seq_len < 1:
        raise ValueError(f"n_tokens and seq_len must be >= 1, got {n_tokens} and {seq_len}")
    files = list(files)
    if not files:
        raise ValueError("sample_token_windows needs at least one shard file")
    n_windows = math.ceil(n_tokens / seq_len)
    per_file = np.array([read_header(f).n_tokens // seq_len for f in files], dtype=np.int64)
    total = int(per_file.sum())
    if total < n_windows:
        names = ", ".join(str(f) for f in files)
        raise ValueError(f"{n_windows} windows of {seq_len} tokens ({n_tokens} tokens) requested, but the shards "
                         f"hold only {total} such windows: {names}")
    chosen = np.arange(n_windows) if seed is None else np.sort(
        np.random.default_rng(seed).choice(total, size=n_windows, replace=False))
    offsets = np.concatenate([[0], np.cumsum(per_file)])
    out = np.empty((n_windows, seq_len), dtype=np.int64)
    for f_i, f in enumerate(files):
        rows = np.flatnonzero((chosen >= offsets[f_i]) & (chosen < offsets[f_i + 1]))
        if rows.size:
            data = read_shard(f)
            for row, w in zip(rows, chosen[rows] - offsets[f_i]):
                out[row] = data[w * seq_len:(w + 1) * seq_len]
    return torch.from_numpy(out)


def _layer_blocks(features: xr.DataArray, name: str) -> tuple[list[int], list[np.ndarray]]:
    """The ``layer`` values of a feature array and each layer's [presentation, unit] block (a view if contiguous)."""
    if not isinstance(features, xr.DataArray) or set(features.dims) != {"presentation", "neuroid"}:
        dims = getattr(features, "dims", None)
        raise ValueError(f"{name} must be a DataArray with dims (presentation, neuroid), got dims {dims}")
    if "layer" not in features.coords or features["layer"].dims != ("neuroid",):
        raise ValueError(f"{name} has no 'layer' coordinate on its neuroid dimension")
    values = features.transpose("presentation", "neuroid").values
    layer = features["layer"].values
    names, blocks = [], []
    for l in sorted(set(layer.tolist())):
        cols = np.flatnonzero(layer == l)
        contiguous = cols[-1] - cols[0] + 1 == cols.size
        blocks.append(values[:, cols[0]:cols[-1] + 1] if contiguous else values[:, cols])
        names.append(l)
    return names, blocks


def layer_cka(
    features_a: xr.DataArray,
    features_b: xr.DataArray,
    *,
    method: str = "minibatch",
    batch_size: int = 256,
    seed: int | None = 0,
) -> xr.DataArray:
    """Linear CKA between every layer of ``features_a`` and every layer of ``features_b`` -> [layer_a, layer_b].

    Both are feature DataArrays [presentation, neuroid] of the same presentations (same number, and equal values
    of every presentation coordinate they share); neuroids are grouped by their ``layer`` coordinate.
    ``method``/``batch_size``/``seed`` as in :func:`genprune_nb.analysis.cka.cka_matrix`, except that ``seed`` defaults to 0:
    the rows are shuffled before batching.
    """
    layers_a, blocks_a = _layer_blocks(features_a, "features_a")
    same = features_b is features_a
    layers_b, blocks_b = (layers_a, blocks_a) if same else _layer_blocks(features_b, "features_b")
    n_a, n_b = features_a.sizes["presentation"], features_b.sizes["presentation"]
    if n_a != n_b:
        raise ValueError(f"features_a and features_b must hold the same presentations: {n_a} vs {n_b} presentations")
    shared = [c for c in features_a.coords if c in features_b.coords and features_a[c].dims == ("presentation",)
              and features_b[c].dims == ("presentation",)]
    for c in shared:
        if not np.array_equal(features_a[c].values, features_b[c].values):
            raise ValueError(f"features_a and features_b differ in their presentation coordinate {c!r}: not the "
                             "same inputs in the same order")
    matrix = cka_matrix(blocks_a, blocks_a if same else blocks_b, method=method, batch_size=batch_size, seed=seed)
    return xr.DataArray(
        matrix,
        dims=("layer_a", "layer_b"),
        coords={"layer_a": layers_a, "layer_b": layers_b},
        attrs={"method": method, "batch_size": batch_size if method == "minibatch" else 0,
               "seed": -1 if seed is None or method == "full" else seed, "n_presentations": n_a},
        name="cka",
    )


def model_cka(
    model_a: nn.Module,
    model_b: nn.Module,
    tokens: torch.Tensor,
    *,
    layers: Sequence[int] | None = None,
    method: str = "minibatch",
    batch_size: int = 256,
    seed: int | None = 0,
    feature_batch_size: int = 8,
    dtype: str = "bfloat16",
    progress: bool = False,
) -> xr.DataArray:
    """:func:`layer_cka` of the two models' :func:`token_features` on the same ``tokens`` [n_seq, T]."""
    feats_a = token_features(model_a, tokens, layers=layers, batch_size=feature_batch_size, dtype=dtype,
                             progress=progress)
    feats_b = feats_a if model_b is model_a else token_features(
        model_b, tokens, layers=layers, batch_size=feature_batch_size, dtype=dtype, progress=progress)
    return layer_cka(feats_a, feats_b, method=method, batch_size=batch_size, seed=seed)


def _layer_labels(values) -> list[str]:
    return ["emb" if int(v) == 0 else str(int(v)) for v in values]


def plot_cka_heatmaps(
    matrices: Mapping[str, xr.DataArray],
    *,
    annotate: bool | None = None,
    xlabel: str = "layer of B",
    ylabel: str = "layer of A",
    cmap: str = "magma",
    panel_size: float = 3.6,
) -> plt.Figure:
    """One heatmap per entry of ``matrices`` ([layer_a, layer_b] CKA, e.g. from :func:`layer_cka`), titled by its key.

    Colour scale 0..1 shared by all panels, layer 0 labelled "emb", layer 0 at the bottom left. ``annotate``
    writes the values in the cells (default: when no matrix has more than 8 layers); otherwise a colourbar.
    """
    if not matrices:
        raise ValueError("plot_cka_heatmaps needs at least one matrix")
    for title, m in matrices.items():
        if m.dims != ("layer_a", "layer_b"):
            raise ValueError(f"matrix {title!r} must have dims ('layer_a', 'layer_b'), got {m.dims}")
    if annotate is None:
        annotate = max(max(m.shape) for m in matrices.values()) <= 8
    n = len(matrices)
    fig, axes = plt.subplots(1, n, figsize=(panel_size * n + (0 if annotate else 0.8), panel_size), squeeze=False,
                             constrained_layout=True)
    image = None
    for ax, (title, m) in zip(axes[0], matrices.items()):
        la, lb = m["layer_a"].values, m["layer_b"].values
        image = ax.imshow(m.values, origin="lower", vmin=0.0, vmax=1.0, cmap=cmap, aspect="equal")
        ax.set_xticks(range(len(lb)), _layer_labels(lb), fontsize=7, rotation=90 if len(lb) > 8 else 0)
        ax.set_yticks(range(len(la)), _layer_labels(la), fontsize=7)
        ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
        if annotate:
            for i in range(len(la)):
                for j in range(len(lb)):
                    v = float(m.values[i, j])
                    ax.text(j, i, f"{v:.2f}".replace("-0.00", "0.00"), ha="center", va="center", fontsize=7,
                            color="black" if v > 0.6 else "white")
    if not annotate:
        fig.colorbar(image, ax=axes[0].tolist(), shrink=0.8, label="linear CKA")
    return fig


# --- the study's comparisons: which models to set side by side ---------------------------------------------------

def features_of(
    models: Mapping[str, object],
    tokens: torch.Tensor,
    *,
    device: str | torch.device = "cpu",
    progress: bool = False,
    **kwargs,
) -> dict[str, xr.DataArray]:
    """:func:`token_features` of every named model on the same ``tokens``, loading one model at a time.

    A value is a model or anything with ``load_model(device)`` (a ``ModelRef`` or a ``Checkpoint``).
    """
    out = {}
    for name, source in tqdm(models.items(), desc="features", disable=not progress):
        model = source.load_model(device) if hasattr(source, "load_model") else source
        out[name] = token_features(model.eval(), tokens, **kwargs)
        del model
    return out


def generation_checkpoints(study, criterion: str = "magnitude") -> dict[str, object]:
    """The trained model of every generation of one criterion's outer loop, as ``{"gen g": Checkpoint}``."""
    from ..training.checkpoint import latest_checkpoint

    found, g = {}, 0
    while (ckpt := latest_checkpoint(study.generation(g, criterion))) is not None:
        found[f"gen {g}"] = ckpt
        g += 1
    if not found:
        raise FileNotFoundError(f"no trained generation under {study.outer(criterion)}: run the outer loop first")
    return found


def consecutive_cka(features: Mapping[str, xr.DataArray], **kwargs) -> dict[str, xr.DataArray]:
    """:func:`layer_cka` of each entry with the next one (e.g. generation g vs g + 1), keyed ``"A → B"``."""
    names = list(features)
    return {f"{a} → {b}": layer_cka(features[a], features[b], **kwargs) for a, b in zip(names, names[1:])}


def pairwise_cka(features: Mapping[str, xr.DataArray], label: str = "", **kwargs) -> dict[str, xr.DataArray]:
    """:func:`layer_cka` of every pair of entries, in their order, keyed ``"A vs B"`` (plus ``label``)."""
    names = list(features)
    return {f"{a} vs {b}{label}": layer_cka(features[a], features[b], **kwargs)
            for i, a in enumerate(names) for b in names[i + 1:]}


def diagonal_cka(features: Mapping[str, xr.DataArray], reference: str, **kwargs) -> pd.DataFrame:
    """Same-layer CKA of every entry with ``features[reference]``: columns model, layer, cka (tidy)."""
    if reference not in features:
        raise KeyError(f"reference {reference!r} is not among the features {list(features)}")
    rows = []
    for name, feats in features.items():
        matrix = layer_cka(feats, features[reference], **kwargs)
        for layer in matrix["layer_a"].values:
            if layer in matrix["layer_b"].values:
                rows.append({"model": name, "layer": int(layer),
                             "cka": float(matrix.sel(layer_a=layer, layer_b=layer))})
    return pd.DataFrame(rows, columns=["model", "layer", "cka"])


def cka_over_training(
    runs: Mapping[str, Mapping[int, object]], tokens: torch.Tensor, *, device: str | torch.device = "cpu", **kwargs
) -> pd.DataFrame:
    """Same-layer CKA of every kept checkpoint of each run with the run's last one: columns run, step, layer, cka.

    ``runs`` maps a name (e.g. the condition) to ``{step: ModelRef}``; features on the same ``tokens`` for all.
    """
    frames = []
    for name, by_step in runs.items():
        feats = features_of({step: by_step[step] for step in sorted(by_step)}, tokens, device=device)
        table = diagonal_cka(feats, max(by_step), **kwargs).rename(columns={"model": "step"})
        frames.append(table.assign(run=name)[["run", "step", "layer", "cka"]])
    return pd.concat(frames, ignore_index=True)


def plot_cka_lines(df: pd.DataFrame, *, x: str = "layer", hue: str = "model", col: str | None = None,
                   title: str = "", xlabel: str | None = None) -> plt.Figure:
    """Same-layer CKA (e.g. from :func:`diagonal_cka`) as lines of ``cka`` vs ``x``, one per ``hue`` (0..1 scale)."""
    import seaborn as sns

    grid = sns.relplot(df, x=x, y="cka", hue=hue, col=col, kind="line", marker="o", height=3.4, aspect=1.2,
                       palette="viridis" if pd.api.types.is_numeric_dtype(df[hue]) else None)
    grid.set(ylim=(0, 1.02), xlabel=xlabel or x, ylabel="linear CKA")
    if x == "layer":
        for ax in grid.axes.flat:
            ax.xaxis.get_major_locator().set_params(integer=True)
    grid.figure.suptitle(title, y=1.03)
    return grid.figure
