"""Word surprisal: how many bits of surprise a language model assigns to each word of a running text.

A text is a list of words, each preceded by its separator (``""`` before the first word, usually ``" "`` after).
The whole text is tokenized at once by the model's tokenizer (``model.config.tokenizer``), as the model saw text in
training, and each token is credited to a word by
character (byte) offsets: a token belongs to the word whose span ``separator + word`` holds the token's last byte.
GPT-2 tokens carry their leading space (``" you"``), so a word's surprisal includes reading the space before it.
A word's surprisal is the sum of its tokens' surprisals, ``-log2 P(token | everything before it)``, and its token
count (a baseline predictor of reading time) is read from the same token-to-word mapping, whatever the tokenizer.
:func:`words_from_token_logprobs` does the same for another model's token log-probs given with character offsets.

*First token.* The text is conditioned on the tokenizer's ``<|endoftext|>`` (EOT), which precedes every document in
training, so the first token of the text gets a surprisal like any other, ``-log2 P(token | EOT)``.

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

from ..model.lm import model_device, model_tokenizer, next_token_logprobs
from ..tokenizer import Tokenizer, get_tokenizer, owner_of_tokens


def separators_for(words: Sequence[str], separators: str | Sequence[str]) -> list[str]:
    """One separator per word: a string goes between words (none before the first); a list is taken as it is."""
    if isinstance(separators, str):
        return ["" if i == 0 else separators for i in range(len(words))]
    seps = list(separators)
    if len(seps) != len(words):
        raise ValueError(f"{len(seps)} separators for {len(words)} words; give one separator per word (or a string)")
    return seps


def tokenize_words(words: Sequence[str], separators: str | Sequence[str] = " ",
                   tokenizer: Tokenizer | str = "gpt2") -> tuple[list[int], np.ndarray]:
    """Token ids of the joined text by ``tokenizer`` (the model's; a name or a :class:`Tokenizer`) and, for every
    token, the index of the word it belongs to."""
    if not len(words):
        raise ValueError("no words to tokenize")
    bad = next((i for i, w in enumerate(words) if not isinstance(w, str)), None)
    if bad is not None:
        raise TypeError(f"word {bad} is {words[bad]!r} ({type(words[bad]).__name__}), not a string")
    regions = [s + w for s, w in zip(separators_for(words, separators), words)]
    enc = get_tokenizer(tokenizer)
    ids = enc.encode("".join(regions))
    return ids, enc.region_of_tokens(ids, regions)


def sum_over_words(token_bits: Sequence[float], word_of_token: Sequence[int], n_words: int
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Per-word surprisal (the sum of its tokens' bits; NaN for a word without a token) and token count."""
    word_of_token = np.asarray(word_of_token, dtype=np.int64)
    bits = np.bincount(word_of_token, weights=np.asarray(token_bits, dtype=float), minlength=n_words)
    counts = np.bincount(word_of_token, minlength=n_words)
    return np.where(counts > 0, bits, np.nan), counts


def words_from_token_logprobs(
    words: Sequence[str],
    separators: str | Sequence[str],
    logprobs: Sequence[float],
    offsets: Sequence[tuple[int, int]],
) -> tuple[np.ndarray, np.ndarray]:
    """Per-word surprisal (bits) and token count from any model's tokens of the joined text (module doc).

    ``logprobs[k]`` is the natural-log probability of token ``k`` given the tokens before it; ``offsets[k]`` its
    ``(start, end)`` character span in ``"".join(separator + word)`` (as a tokenizer's offset mapping gives it; leave
    out special tokens, which cover no text). A token is credited to the word whose ``separator + word`` holds its
    last character; a word's surprisal is the sum of its tokens' ``-logprob / ln 2``. A word that receives no token
    gets NaN and count 0.
    """
    regions = [s + w for s, w in zip(separators_for(words, separators), words)]
    text_end = sum(map(len, regions))
    spans = np.asarray(offsets, dtype=np.int64).reshape(-1, 2) if len(offsets) else np.empty((0, 2), np.int64)
    lp = np.asarray(logprobs, dtype=float)
    if len(lp) != len(spans):
        raise ValueError(f"{len(lp)} log-probs for {len(spans)} token offsets; give one (start, end) per token")
    bad = np.flatnonzero((spans[:, 1] <= spans[:, 0]) | (spans[:, 0] < 0) | (spans[:, 1] > text_end))
    if len(bad):
        raise ValueError(f"token {bad[0]} has offsets {tuple(spans[bad[0]].tolist())}, not a non-empty span of the "
                         f"{text_end}-character text")
    bad = np.flatnonzero(~np.isfinite(lp) | (lp > 0))
    if len(bad):
        raise ValueError(f"token {bad[0]} has log-prob {float(lp[bad[0]])!r}; log-probs must be finite and <= 0")
    owner = owner_of_tokens(np.cumsum([len(r) for r in regions]), spans[:, 1])
    return sum_over_words(-lp / math.log(2), owner, len(words))


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


def word_surprisal_and_tokens(
    model: nn.Module,
    words: Sequence[str],
    separators: str | Sequence[str] = " ",
    *,
    stride: int | None = None,
    batch_size: int = 8,
) -> tuple[np.ndarray, np.ndarray]:
    """Surprisal in bits of every word of a running text, conditioned on EOT (module doc), and its token count, both
    under the model's tokenizer.

    A word that receives no token gets NaN and count 0: an empty word, or one whose only token runs on into the next
    word (possible with empty separators: ``["no", "thing"]`` joined by ``""`` is the single token ``"nothing"``).
    """
    tokenizer = model_tokenizer(model)
    ids, word_of_token = tokenize_words(words, separators, tokenizer)
    lp = token_logprobs(model, [tokenizer.eot, *ids], stride=stride, batch_size=batch_size)
    return sum_over_words(-lp / math.log(2), word_of_token, len(words))


def word_surprisal(
    model: nn.Module,
    words: Sequence[str],
    separators: str | Sequence[str] = " ",
    *,
    stride: int | None = None,
    batch_size: int = 8,
) -> np.ndarray:
    """The surprisal of :func:`word_surprisal_and_tokens` alone."""
    return word_surprisal_and_tokens(model, words, separators, stride=stride, batch_size=batch_size)[0]
