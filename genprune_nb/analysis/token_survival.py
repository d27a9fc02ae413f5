"""Which embedding rows survive pruning: the surviving fraction of ``wte`` and ``lm_head`` rows by token frequency.

Row t of either tensor belongs to token t. Early in training magnitude is not importance: rows of tokens the model
never saw keep their (tied) constants while rows of frequent tokens move and get pruned. ``row_survival`` counts,
per generation, tensor and frequency bin, the survivors among the weights of the rows in that bin. Frequencies are
counted in the large corpus L (``token_counts``); ``frequency_bins`` puts the ``top`` most frequent tokens in their
own bin and the rest in decades of count (never seen, 1-9, 10-99, ...).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from ..connectome.pruning import EMBEDDINGS
from ..connectome.wiring import Connectome
from ..data.shards import check_vocab, read_shard
from ..study.layout import PAPER_CRITERION, StudyLayout

UNSEEN = "unseen"


def token_counts(files: Sequence[str | Path], vocab_size: int) -> np.ndarray:
    """How often each token id occurs in the shards ``files`` (length ``vocab_size``); an id beyond it is refused."""
    counts = np.zeros(vocab_size, dtype=np.int64)
    for f in files:
        tokens = read_shard(f)
        check_vocab(f, tokens, vocab_size)
        counts += np.bincount(tokens, minlength=vocab_size)
    return counts


def default_top(vocab_size: int) -> int:
    """How many of the most frequent tokens get a bin of their own: 500, or a tenth of a smaller vocabulary (a byte
    model's 320 rows: 32)."""
    return min(500, vocab_size // 10)


def frequency_bins(counts: np.ndarray, top: int | None = None) -> tuple[np.ndarray, list[str]]:
    """(bin label of each token, the labels in order from rare to frequent).

    The ``top`` most frequent tokens (default :func:`default_top`; ties by lower id) form ``"top {top}"``; every other token goes by its count:
    ``"unseen"`` (0), ``"1-9"``, ``"10-99"``, ... up to the largest count among them. Empty bins are left out.
    """
    counts = np.asarray(counts)
    top = default_top(counts.size) if top is None else top
    if top < 0 or top > counts.size:
        raise ValueError(f"top must lie in [0, {counts.size}] (the vocabulary), got {top}")
    labels = np.empty(counts.size, dtype=object)
    frequent = np.argsort(-counts, kind="stable")[:top]
    rest = np.ones(counts.size, dtype=bool)
    rest[frequent] = False
    labels[frequent] = f"top {top}"
    decade = np.floor(np.log10(np.maximum(counts, 1))).astype(int)
    for d in np.unique(decade[rest & (counts > 0)]):
        labels[rest & (counts > 0) & (decade == d)] = f"{10 ** d}-{10 ** (d + 1) - 1}"
    labels[rest & (counts == 0)] = UNSEEN
    order = [UNSEEN] if (rest & (counts == 0)).any() else []
    order += [f"{10 ** d}-{10 ** (d + 1) - 1}" for d in np.unique(decade[rest & (counts > 0)])]
    order += [f"top {top}"] if top else []
    return labels, order


def row_survival(connectomes: Sequence[Connectome], counts: np.ndarray, top: int | None = None) -> pd.DataFrame:
    """Surviving fraction of the ``wte`` / ``lm_head`` rows of each frequency bin after each generation.

    ``connectomes[g]`` is generation g's. Columns: generation, tensor, bin (ordered from rare to frequent), tokens
    (rows in the bin), surviving (fraction of the bin's weights still wired). Embeddings a connectome leaves out
    (``outer.prune_embeddings=false``: dense) give no rows.
    """
    labels, order = frequency_bins(counts, top)
    rows = []
    for g, connectome in enumerate(connectomes):
        for name in EMBEDDINGS:
            if name not in connectome.signs:
                continue
            signs = connectome.signs[name]
            if signs.shape[0] != len(labels):
                raise ValueError(f"generation {g}: {name} has {signs.shape[0]} rows but the token counts cover "
                                 f"{len(labels)} ids")
            alive = (signs != 0).sum(1).numpy()
            for label in order:
                in_bin = labels == label
                rows.append({"generation": g, "tensor": name, "bin": label, "tokens": int(in_bin.sum()),
                             "surviving": float(alive[in_bin].sum()) / (int(in_bin.sum()) * signs.shape[1])})
    frame = pd.DataFrame(rows, columns=["generation", "tensor", "bin", "tokens", "surviving"])
    frame["bin"] = pd.Categorical(frame["bin"], categories=order, ordered=True)
    return frame


def study_row_survival(study: StudyLayout, large_files: Sequence[str | Path], vocab_size: int,
                       criterion: str = PAPER_CRITERION, top: int | None = None) -> pd.DataFrame:
    """``row_survival`` of every pruned generation of one outer loop of ``study``, frequencies counted in L."""
    connectomes = []
    while study.connectome(len(connectomes), criterion).exists():
        connectomes.append(Connectome.load(study.connectome(len(connectomes), criterion)))
    return row_survival(connectomes, token_counts(large_files, vocab_size), top)
