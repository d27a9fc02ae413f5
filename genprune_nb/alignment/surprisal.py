"""Word surprisal: how many bits of surprise a language model assigns to each word of a running text.

A text is a list of words, each preceded by its separator (``""`` before the first word, usually ``" "`` after).
The whole text is tokenized at once, as the model saw text in training, and each token is credited to a word by
character (byte) offsets: a token belongs to the word whose span ``separator + word`` holds the token's last byte.
GPT-2 tokens carry their leading space (``" you"``), so a word's surprisal includes reading the space before it.
A word's surprisal is the sum of its tokens' surprisals, ``-log2 P(token | everything before it)``.

*First token.* The text is conditioned on ``<|endoftext|>`` (EOT), which precedes every document in training, so the
first token of the text gets a surprisal like any other, ``-log2 P(token | EOT)``.

*Long texts.* A story (~1,300 tokens) outgrows a small model's ``block_size``, so the model reads it in windows of
``block_size`` tokens that start every ``stride`` tokens. The first window scores all its tokens; every later window
scores only the tokens the previous window did not reach (its last ``stride`` ones), so each token is scored once and,
after the first window, with at least ``block_size - stride`` tokens of left context. The default stride is
``block_size // 2`` (at least 512 tokens of context for the paper's 1024-token model; the cost is about twice one pass).
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
from torch import nn

from ..model.lm import model_device, next_token_logprobs
from ..tokenizer import EOT, get_tokenizer


def separators_for(words: Sequence[str], separators: str | Sequence[str]) -> list[str]:
    """One separator per word: a string goes between words (none before the first); a list is taken as it is."""
    if isinstance(separators, str):
        return ["" if i == 0 else separators for i in range(len(words))]
    seps = list(separators)
    if len(seps) != len(words):
        raise ValueError(f"{len(seps)} separators for {len(words)} words; give one separator per word (or a string)")
    return seps


def tokenize_words(words: Sequence[str], separators: str | Sequence[str] = " ") -> tuple[list[int], np.ndarray]:
    """GPT-2 token ids of the joined text and, for every token, the index of the word it belongs to."""
    if not len(words):
        raise ValueError("no words to tokenize")
    bad = next((i for i, w in enumerate(words) if not isinstance(w, str)), None)
    if bad is not None:
        raise TypeError(f"word {bad} is {words[bad]!r} ({type(words[bad]).__name__}), not a string")
    regions = [s + w for s, w in zip(separators_for(words, separators), words)]
    enc = get_tokenizer()
    ids = enc.encode("".join(regions))
    return ids, enc.region_of_tokens(ids, regions)


def window_starts(n: int, block_size: int, stride: int) -> list[int]:
    """Start offsets of the windows that cover ``n`` ids: 0, stride, 2*stride, ... until one reaches the end."""
    if not 0 < stride < block_size:
        raise ValueError(f"stride must lie in [1, block_size - 1 = {block_size - 1}], got {stride}")
    starts = [0]
    while starts[-1] + block_size < n:
        starts.append(starts[-1] + stride)
    return starts


def token_logprobs(
    model: nn.Module, ids: Sequence[int], *, stride: int | None = None, batch_size: int = 8
) -> np.ndarray:
    """Natural-log probability of ``ids[1:]``, each given the ids before it, read in sliding windows (module doc).

    Entry ``p - 1`` is ``log P(ids[p] | ids[start:p])``, ``start`` being where the window that scores ``p`` starts.
    """
    block = model.config.block_size
    stride = block // 2 if stride is None else stride
    n = len(ids)
    if n < 2:
        raise ValueError("need at least two ids (a context and a token)")
    starts = window_starts(n, block, stride)
    # window k scores targets [first_k, end_k): the ones the previous window did not reach
    firsts = [1] + [s + block for s in starts[:-1]]
    device = model_device(model)
    out = np.empty(n - 1, dtype=np.float64)
    for b in range(0, len(starts), batch_size):
        group = starts[b : b + batch_size]
        windows = [ids[s : s + block] for s in group]
        batch = torch.zeros((len(group), max(map(len, windows))), dtype=torch.long)  # right padding is harmless
        for i, window in enumerate(windows):
            batch[i, : len(window)] = torch.as_tensor(window, dtype=torch.long)
        lp = next_token_logprobs(model, batch.to(device)).double().cpu().numpy()
        for i, s in enumerate(group):
            first, end = firsts[b + i], min(s + block, n)
            out[first - 1 : end - 1] = lp[i, first - s - 1 : end - s - 1]
    return out


def word_surprisal(
    model: nn.Module,
    words: Sequence[str],
    separators: str | Sequence[str] = " ",
    *,
    stride: int | None = None,
    batch_size: int = 8,
) -> np.ndarray:
    """Surprisal in bits of every word of a running text, conditioned on EOT (module doc).

    A word that receives no token gets NaN: an empty word, or one whose only token runs on into the next word
    (possible with empty separators: ``["no", "thing"]`` joined by ``""`` is the single token ``"nothing"``).
    """
    ids, word_of_token = tokenize_words(words, separators)
    lp = token_logprobs(model, [EOT, *ids], stride=stride, batch_size=batch_size)
    bits = np.bincount(word_of_token, weights=-lp / math.log(2), minlength=len(words))
    counts = np.bincount(word_of_token, minlength=len(words))
    return np.where(counts > 0, bits, np.nan)
