"""Reading times for people: the ceilings side by side, surprisal token by token, surprisal against reading time
(one panel per model; Figure 1C itself is ``paper.figure_1c``)."""
from __future__ import annotations

from typing import Mapping

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import xarray as xr
from matplotlib.figure import Figure
from torch import nn

from ..alignment.behavior import ceiling, pearson_r
from ..alignment.surprisal import token_logprobs, tokenize_words, word_surprisal
from ..model.lm import model_tokenizer


def ceilings(rts: xr.DataArray, published: float | None = None) -> pd.DataFrame:
    """How high r could be: the reliability of the mean times, on all words and without each sentence's first
    word, beside a published (split-half) ceiling when given."""
    later = rts[~rts["first_in_sentence"].values]
    values = {"estimated here, all words": ceiling(rts),
              "estimated here, first words of sentences dropped": ceiling(later)}
    if published is not None:
        values["Brain-Score (split-half, Spearman-Brown)"] = published
    return pd.Series(values, name="ceiling").to_frame()


def token_surprisal_table(model: nn.Module, rts: xr.DataArray, n_words: int = 10) -> pd.DataFrame:
    """The first ``n_words`` words of ``rts`` read as one text after EOT, tokenized by the model's tokenizer: each
    token, the word it is credited to and its surprisal in bits."""
    words, seps = list(rts["word"].values[:n_words]), list(rts["separator"].values[:n_words])
    tokenizer = model_tokenizer(model)
    ids, owner = tokenize_words(words, seps, tokenizer)
    bits = -token_logprobs(model, [tokenizer.eot, *ids]) / np.log(2)
    return pd.DataFrame({"token": [repr(tokenizer.decode([t])) for t in ids], "word": [words[i] for i in owner],
                         "bits": bits})


def word_surprisal_table(model: nn.Module, rts: xr.DataArray, n_words: int = 10) -> pd.DataFrame:
    """The first ``n_words`` words of ``rts`` with their surprisal in bits (the sum of their tokens')."""
    words, seps = list(rts["word"].values[:n_words]), list(rts["separator"].values[:n_words])
    return pd.DataFrame({"word": words, "surprisal (bits)": word_surprisal(model, words, seps)})


def plot_surprisal_vs_rt(surprisals: Mapping[str, xr.DataArray], rts: xr.DataArray, *, bins: int = 20) -> Figure:
    """One panel per model: every word as a dot, and the mean reading time within surprisal quantile bins."""
    fig, axes = plt.subplots(1, len(surprisals), figsize=(4 * len(surprisals), 3.5), sharey=True, squeeze=False)
    for ax, (label, s) in zip(axes[0], surprisals.items()):
        x, y = s.values, rts.values
        ok = np.isfinite(x) & np.isfinite(y)
        ax.scatter(x[ok], y[ok], s=2, alpha=0.15, color="0.4", rasterized=True)
        edges = np.unique(np.quantile(x[ok], np.linspace(0, 1, bins + 1)))
        which = np.clip(np.searchsorted(edges, x[ok], side="right") - 1, 0, len(edges) - 2)
        centers = [x[ok][which == b].mean() for b in range(len(edges) - 1) if (which == b).any()]
        means = [y[ok][which == b].mean() for b in range(len(edges) - 1) if (which == b).any()]
        ax.plot(centers, means, color="C3", marker="o", ms=3, label="binned mean")
        ax.set_title(f"{label}  (r = {pearson_r(x, y):.3f})")
        ax.set_xlabel("surprisal (bits)")
    axes[0, 0].set_ylabel(f"mean reading time ({rts.attrs.get('units', 'ms')})")
    axes[0, 0].legend(frameon=False)
    fig.tight_layout()
    return fig
