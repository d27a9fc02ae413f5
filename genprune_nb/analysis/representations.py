"""Layer-by-layer representational similarity of GPTs: linear CKA over layers, between models, generations and
the checkpoints of a run.

Features are :func:`genprune_nb.model.features.token_features` (the residual stream of every token, layer 0 =
embeddings, layer i = block i) of the same val token windows for every model; :func:`layer_cka` compares two such
arrays layer by layer with :mod:`genprune_nb.analysis.cka`. The default minibatch estimator shuffles the tokens into
batches (``seed=0``): consecutive tokens of one window are correlated, and the unbiased estimator assumes
exchangeable rows. The figures are drawn by :mod:`genprune_nb.report.representations`.
"""
from __future__ import annotations

import math
import os
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import torch
import xarray as xr
from torch import nn

from ..config import Preset
from ..data.manifest import shard_files
from ..data.shards import read_header, read_shard, require_tokenizer
from ..model.features import token_features
from ..progress import tqdm
from ..study.layout import StudyLayout
from ..study.model_refs import ModelRef
from ..training.checkpoint import latest_checkpoint
from .cka import cka_matrix


def sample_token_windows(files: Sequence[str | os.PathLike], n_tokens: int, seq_len: int,
                         seed: int | None = 0, *, vocab_size: int, tokenizer: str | None = None) -> torch.Tensor:
    """ceil(n_tokens / seq_len) windows of ``seq_len`` tokens from token shards, as a LongTensor [n_windows, T].

    Each shard is cut into aligned, non-overlapping windows; ``seed`` draws distinct windows uniformly from all of
    them (returned in file order), ``seed=None`` takes the first ones. E.g. the study's validation shards,
    ``genprune_nb.data.manifest.shard_files(preset, "val")``. A shard whose windows hold a token id the model
    cannot embed (>= ``vocab_size``, the model's) is refused, naming the file; so is, with ``tokenizer`` (the
    model's), a shard whose header records another tokenizer.
    """
    if n_tokens < 1 or seq_len < 1:
        raise ValueError(f"n_tokens and seq_len must be >= 1, got {n_tokens} and {seq_len}")
    files = list(files)
    if not files:
        raise ValueError("sample_token_windows needs at least one shard file")
    if tokenizer is not None:
        require_tokenizer(files, tokenizer)
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
            read = out[rows]
            if int(read.max()) >= vocab_size:
                raise ValueError(f"{f}: token id {int(read.max())} is outside the model's vocabulary "
                                 f"(vocab_size {vocab_size})")
    return torch.from_numpy(out)


def validation_windows(preset: Preset, n_tokens: int, seed: int | None = 0) -> torch.Tensor:
    """:func:`sample_token_windows` of the study's val shards, in the preset's training windows, vocabulary and
    tokenizer."""
    return sample_token_windows(shard_files(preset, "val"), n_tokens, preset.train.seq_len, seed,
                                vocab_size=preset.model.vocab_size, tokenizer=preset.model.tokenizer)


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
    ``method``/``batch_size``/``seed`` as in :func:`genprune_nb.analysis.cka.cka_matrix`, except that ``seed``
    defaults to 0: the rows are shuffled before batching.
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
    """:func:`layer_cka` of the two models' :func:`token_features` on the same ``tokens`` [n_seq, T] (the two must
    share a tokenizer, or the same ids would be different texts to them)."""
    same_tokenizer({"model_a": model_a, "model_b": model_b})
    feats_a = token_features(model_a, tokens, layers=layers, batch_size=feature_batch_size, dtype=dtype,
                             progress=progress)
    feats_b = feats_a if model_b is model_a else token_features(
        model_b, tokens, layers=layers, batch_size=feature_batch_size, dtype=dtype, progress=progress)
    return layer_cka(feats_a, feats_b, method=method, batch_size=batch_size, seed=seed)


def same_tokenizer(models: Mapping[str, object]) -> None:
    """Refuse models (or tokenizer names) that do not share one tokenizer, naming the first two that differ."""
    names = {name: m if isinstance(m, str) else m.config.tokenizer for name, m in models.items()}
    (first, tok), *rest = names.items()
    for name, other in rest:
        if other != tok:
            raise ValueError(f"{first} uses tokenizer {tok!r} but {name} uses {other!r}: their token ids are "
                             "different texts, so their features cannot be compared on the same tokens")


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

    A value is a model or anything with ``load_model(device)`` (a ``ModelRef`` or a ``Checkpoint``). All models must
    share one tokenizer (a model of another one is refused, naming it).
    """
    out, first = {}, None
    for name, source in tqdm(models.items(), desc="features", disable=not progress):
        model = source.load_model(device) if hasattr(source, "load_model") else source
        first = first or (name, model.config.tokenizer)
        same_tokenizer({first[0]: first[1], name: model})
        out[name] = token_features(model.eval(), tokens, **kwargs)
        del model
    return out


def generation_checkpoints(study: StudyLayout, criterion: str = "magnitude") -> dict[str, object]:
    """The trained model of every generation of one criterion's outer loop, as ``{"gen g": Checkpoint}``."""
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


def diagonal_cka(features: Mapping[str, xr.DataArray], reference: str | None = None, **kwargs) -> pd.DataFrame:
    """Same-layer CKA of every entry with ``features[reference]`` (default: the last entry): columns model, layer,
    cka (tidy)."""
    reference = list(features)[-1] if reference is None else reference
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
    runs: Mapping[str, Mapping[int, object]], tokens: torch.Tensor, *, device: str | torch.device = "cpu",
    column: str = "run", **kwargs
) -> pd.DataFrame:
    """Same-layer CKA of every kept checkpoint of each run with the run's last one: columns ``column`` (the run's
    name), step, layer, cka.

    ``runs`` maps a name (e.g. the condition, as from :func:`condition_runs`) to ``{step: ModelRef}``; features on the
    same ``tokens`` for all.
    """
    frames = []
    for name, by_step in runs.items():
        feats = features_of({step: by_step[step] for step in sorted(by_step)}, tokens, device=device)
        table = diagonal_cka(feats, max(by_step), **kwargs).rename(columns={"model": "step"})
        frames.append(table.assign(**{column: name})[[column, "step", "layer", "cka"]])
    return pd.concat(frames, ignore_index=True)


def condition_runs(study: StudyLayout, conditions: Sequence[str], seed: int) -> dict[str, dict[int, ModelRef]]:
    """The kept checkpoints of one seed's run of each condition, ``{condition: {step: ModelRef}}`` in the given
    order; refuses a condition with no kept checkpoint of that seed."""
    refs = study.model_refs(conditions=list(conditions))
    runs = {c: {r.step: r for r in refs if r.condition == c and r.seed == seed} for c in conditions}
    missing = [c for c, by_step in runs.items() if not by_step]
    if missing:
        raise FileNotFoundError(f"no kept checkpoint of seed {seed} for {missing} under {study.root / 'inner'}: "
                                "run the inner loop first")
    return runs


def condition_cka(runs: Mapping[str, Mapping[int, object]], tokens: torch.Tensor, steps: Sequence[int] | None = None,
                  *, device: str | torch.device = "cpu", **kwargs) -> dict[str, xr.DataArray]:
    """:func:`pairwise_cka` of the runs' models after the same number of steps, keyed ``"A vs B, step s"``.

    ``steps`` default to the last step every run kept; a step some run did not keep is refused, naming the run.
    """
    common = sorted(set.intersection(*(set(by_step) for by_step in runs.values())))
    steps = list(steps) if steps else common[-1:]
    for step in steps:
        lacking = [name for name, by_step in runs.items() if step not in by_step]
        if lacking:
            raise ValueError(f"step {step} is not a kept checkpoint of {lacking}; steps kept by every run: {common}")
    matrices = {}
    for step in steps:
        at = {name: by_step[step] for name, by_step in runs.items()}
        matrices.update(pairwise_cka(features_of(at, tokens, device=device), f", step {step}", **kwargs))
    return matrices
