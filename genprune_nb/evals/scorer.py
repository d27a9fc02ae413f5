"""The one log-likelihood engine: score continuation tokens given a context, for every benchmark.

A :class:`Request` holds token ids already split into context and continuation (``Request.from_text`` makes the
split of DESIGN.md §5: tokens of the context, then tokens of ``" " + continuation``), encoded by the tokenizer of the
model that will score it: :func:`per_tokenizer` builds a benchmark's requests once per tokenizer, for whichever model
comes. :func:`score` runs groups of requests (the choices of one item) through the model together, right-padded,
longest groups first, and returns the summed natural-log probability of each continuation and its number of tokens
(with ``greedy=True`` also whether greedy decoding would produce it, lm-eval's ``is_greedy``); it refuses an id the
model cannot embed (a request built with another tokenizer).

Truncation is lm-eval's (HFLM): a request keeps the last ``block_size + 1`` tokens of context + continuation and the
model reads all but the last of them, so every scored token sees up to ``block_size`` tokens before it. A request
that fits (at most ``block_size + 1`` tokens) is scored whole, exactly as without truncation.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, NamedTuple, Sequence, TypeVar

import torch
from torch import nn

from ..model.lm import IGNORE, model_device, model_tokenizer, target_predictions
from ..progress import tqdm
from ..tokenizer import Tokenizer, TokenizerError, get_tokenizer

BATCH_SIZE = 32  # sequences per forward; raise it on a GPU
# Right padding of a batch: any id the model can embed. Padding follows every position that is read and the model is
# causal, so its value never changes a score; 0 is valid under every vocabulary (GPT-2's EOT, 50256, is not).
PAD = 0
Built = TypeVar("Built")


@dataclass(frozen=True)
class Request:
    """Token ids of a context and of the continuation to score after it."""

    context: tuple[int, ...]
    continuation: tuple[int, ...]

    def __post_init__(self) -> None:
        if not self.context:
            raise ValueError("a request needs at least one context token (use EOT for an unconditioned sentence)")
        if not self.continuation:
            raise ValueError("a request needs at least one continuation token")

    @classmethod
    def from_text(cls, context: str, continuation: str, sep: str = " ",
                  tokenizer: Tokenizer | str = "gpt2") -> "Request":
        """Tokens of ``context`` and of ``sep + continuation``, encoded separately by ``tokenizer`` (the scoring
        model's; a name or a :class:`Tokenizer`).

        The separator belongs to the continuation (GPT-2 tokens carry their leading space), so a context ending in
        whitespace would put a second space in the text: refused.
        """
        if sep and context != context.rstrip():
            raise ValueError(f"context ends with whitespace before the separator {sep!r}: {context[-20:]!r}")
        tok = get_tokenizer(tokenizer)
        return cls(tuple(tok.encode(context)), tuple(tok.encode(sep + continuation)))

    @classmethod
    def sentence(cls, text: str, sep: str = "", tokenizer: Tokenizer | str = "gpt2") -> "Request":
        """A whole sentence conditioned on ``<|endoftext|>`` (as a document start): the tokens of ``sep + text``
        after ``tokenizer``'s EOT (the scoring model's tokenizer; a name or a :class:`Tokenizer`).

        No separator is the BabyLM convention; lm-eval puts its target delimiter ``" "`` before the sentence.
        """
        tok = get_tokenizer(tokenizer)
        return cls((tok.eot,), tuple(tok.encode(sep + text)))

    def __len__(self) -> int:
        return len(self.context) + len(self.continuation)


class Score(NamedTuple):
    """Summed log-probability (natural log) of a continuation, the number of its tokens and whether each of them
    is the model's top choice at its position (None unless asked for: ``score(..., greedy=True)``)."""

    logprob: float
    n_tokens: int
    greedy: bool | None = None

    @property
    def mean(self) -> float:
        """Per-token mean log-probability (the authors' and llm.c's ``acc_norm``)."""
        return self.logprob / self.n_tokens


def window(request: Request, block_size: int) -> list[int]:
    """The last ``block_size + 1`` ids of context + continuation: the model reads all but the last of them.

    A continuation of up to ``block_size`` tokens fits (its first token then sees one context token); a longer one
    is refused.
    """
    if len(request.continuation) > block_size:
        raise ValueError(
            f"continuation of {len(request.continuation)} tokens exceeds the model's block size {block_size}: "
            "its first tokens could not be scored"
        )
    return [*request.context, *request.continuation][-(block_size + 1):]


def per_tokenizer(build: Callable[[Tokenizer], Built]) -> Callable[[nn.Module], Built]:
    """``model -> build(the model's tokenizer)``, built once per tokenizer name: a benchmark reads its data once and
    encodes its requests for each tokenizer it meets, so one evaluator scores models of any tokenizer."""
    built: dict[str, Built] = {}

    def for_model(model: nn.Module) -> Built:
        tokenizer = model_tokenizer(model)
        if tokenizer.name not in built:
            built[tokenizer.name] = build(tokenizer)
        return built[tokenizer.name]
    return for_model


def check_vocabulary(groups: Sequence[Sequence[Request]], vocab_size: int) -> None:
    """Refuse a request holding an id outside ``0 .. vocab_size - 1`` (the model's embedding rows): it was encoded
    by another tokenizer than the model's."""
    for g, group in enumerate(groups):
        for r, request in enumerate(group):
            ids = request.context + request.continuation
            low, high = min(ids), max(ids)
            if low < 0 or high >= vocab_size:
                raise TokenizerError(f"request {r} of group {g} holds token id {low if low < 0 else high}, "
                                     f"outside the model's vocabulary (vocab_size {vocab_size}): encode requests "
                                     "with the model's tokenizer (model_tokenizer, per_tokenizer)")


def _batches(groups: Sequence[Sequence[Request]], order: list[int], batch_size: int) -> list[list[int]]:
    """Groups in ``order`` packed into batches of at most ``batch_size`` sequences (or one larger group)."""
    batches, current, size = [], [], 0
    for g in order:
        if current and size + len(groups[g]) > batch_size:
            batches.append(current)
            current, size = [], 0
        current.append(g)
        size += len(groups[g])
    if current:
        batches.append(current)
    return batches


@torch.no_grad()
def score(
    model: nn.Module,
    groups: Sequence[Sequence[Request]],
    *,
    batch_size: int = BATCH_SIZE,
    progress: bool = False,
    desc: str = "score",
    greedy: bool = False,
) -> list[list[Score]]:
    """Score every request; the requests of a group (an item's choices) always share a forward pass.

    ``batch_size`` is the number of sequences per forward (a larger group still goes whole). A request longer than
    ``model.config.block_size + 1`` tokens loses its oldest context tokens (lm-eval's rule, see the module); one holding
    an id outside ``model.config.vocab_size`` is refused (``TokenizerError``). Groups are run longest first, to waste
    little padding and to fail early if memory is short; results come back in input order. ``greedy`` also fills
    ``Score.greedy``.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if not all(groups):
        raise ValueError("every group needs at least one request")
    check_vocabulary(groups, model.config.vocab_size)
    block_size = model.config.block_size
    device = model_device(model)
    ids = [[window(r, block_size) for r in group] for group in groups]
    order = sorted(range(len(groups)), key=lambda g: -max(len(s) for s in ids[g]))
    out: list[list[Score]] = [[] for _ in groups]
    with tqdm(total=len(groups), desc=desc, disable=not progress, unit="item") as bar:
        for batch in _batches(groups, order, batch_size):
            seqs = [s for g in batch for s in ids[g]]
            width = max(len(s) for s in seqs) - 1
            inputs = torch.full((len(seqs), width), PAD, dtype=torch.long)
            targets = torch.full((len(seqs), width), IGNORE, dtype=torch.long)
            for i, s in enumerate(seqs):
                inputs[i, : len(s) - 1] = torch.tensor(s[:-1])
                targets[i, : len(s) - 1] = torch.tensor(s[1:])
            lp, hits = target_predictions(model, inputs.to(device), targets.to(device), greedy=greedy)
            lp, hits = lp.cpu(), None if hits is None else hits.cpu()
            row = 0
            for g in batch:
                for s, request in zip(ids[g], groups[g]):
                    k = len(request.continuation)
                    # entry t of lp scores s[t+1], so the last k tokens of s are entries len(s)-1-k .. len(s)-2
                    span = slice(len(s) - 1 - k, len(s) - 1)
                    out[g].append(Score(lp[row, span].sum().item(), k,
                                        None if hits is None else bool(hits[row, span].all())))
                    row += 1
            bar.update(len(batch))
    return out
