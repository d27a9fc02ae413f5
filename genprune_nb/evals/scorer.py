"""The one log-likelihood engine: score continuation tokens given a context, for every benchmark.

A :class:`Request` holds token ids already split into context and continuation (``Request.from_text`` makes the
split of DESIGN.md §5: tokens of the context, then tokens of ``" " + continuation``), encoded by the tokenizer of the
model that will score it: :func:`per_tokenizer` builds a benchmark's requests once per tokenizer, for whichever model
comes. :func:`score` runs groups of requests (the choices of one item) through the model together, right-padded,
longest groups first, and returns the summed natural-log probability of each continuation and its number of tokens
(with ``greedy=True`` also whether greedy decoding would produce it, lm-eval's ``is_greedy``); it refuses an id the
model cannot embed (a request built with another tokenizer).

Only what is read is computed (:func:`pack`): the vocabulary head meets only the continuation's positions, and the
requests of a group that share their first tokens (an item's context) share one sequence: the shared prefix once,
then the rest of each request at the positions it would have alone, under a tree attention mask (a token reads the
prefix and its own request's earlier tokens). The values are those of scoring each request alone.

Truncation is lm-eval's (HFLM): a request keeps the last ``block_size + 1`` tokens of context + continuation and the
model reads all but the last of them, so every scored token sees up to ``block_size`` tokens before it. A request
that fits (at most ``block_size + 1`` tokens) is scored whole, exactly as without truncation.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, NamedTuple, Sequence, TypeVar

import torch
from torch import nn

from ..model.lm import IGNORE, model_device, model_tokenizer, reads_packed, target_predictions
from ..progress import tqdm
from ..tokenizer import Tokenizer, TokenizerError, get_tokenizer

BATCH_SIZE = 32  # requests per forward; raise it on a GPU
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


class Pack(NamedTuple):
    """Windows of requests as one sequence the model reads: their common input prefix, then each request's other
    inputs. Per token its ``target`` (``IGNORE`` unless a continuation token is predicted there), its rotary
    ``position`` (where it sits in its own window) and its ``branch`` (0: the prefix, j + 1: request j's own part);
    ``spans[j]``: where request j's scored predictions lie."""

    inputs: list[int]
    targets: list[int]
    positions: list[int]
    branches: list[int]
    spans: list[slice]


def pack(windows: Sequence[Sequence[int]], scored: Sequence[int]) -> Pack:
    """Pack windows (:func:`window`) whose last ``scored[j]`` ids are scored into one :class:`Pack`.

    The shared prefix is the longest common prefix of the windows' inputs (all ids but the last), cut before the
    first position that predicts a scored token, so that every read position lies in one request's own part (a
    position of the prefix would predict a different token for each request).
    """
    inputs = [list(w[:-1]) for w in windows]
    shared = min(len(x) - k for x, k in zip(inputs, scored))
    shared = next((t for t in range(shared) if len({x[t] for x in inputs}) > 1), shared)
    out = Pack(inputs[0][:shared], [IGNORE] * shared, list(range(shared)), [0] * shared, [])
    for j, (x, w, k) in enumerate(zip(inputs, windows, scored)):
        own = len(x) - shared
        out.inputs.extend(x[shared:])
        out.targets.extend([IGNORE] * (own - k) + list(w[-k:]))
        out.positions.extend(range(shared, len(x)))
        out.branches.extend([j + 1] * own)
        out.spans.append(slice(len(out.inputs) - k, len(out.inputs)))
    return out


def body_cost(length: int, n_embd: int) -> int:
    """Forward FLOPs of a sequence of ``length`` tokens through a block, divided by 4 ``n_embd``: 6 ``n_embd`` per
    token for the matmuls (24 C^2) and ``length`` for the dense attention (4 C T, masked keys included)."""
    return length * (6 * n_embd + length)


def packs(windows: Sequence[Sequence[int]], scored: Sequence[int], n_embd: int | None) -> list[Pack]:
    """A group's windows as one shared :class:`Pack` if it costs less (:func:`body_cost` for a model of width
    ``n_embd``) than one pack per window (plain causal sequences), else one pack per window (always if ``n_embd`` is
    None: a model that cannot read packed sequences)."""
    alone = [pack([w], [k]) for w, k in zip(windows, scored)]
    if n_embd is not None and len(windows) > 1:
        together = pack(windows, scored)
        if body_cost(len(together.inputs), n_embd) < sum(body_cost(len(p.inputs), n_embd) for p in alone):
            return [together]
    return alone


def tree_mask(positions: torch.Tensor, branches: torch.Tensor) -> torch.Tensor:
    """[B, T, T] bool attention mask of packed rows ([B, T] each): a query reads the keys at positions up to its own
    in the prefix (branch 0) and in its own branch. Padding (branch -1, position 0) reads only the first token and
    padding (so no query reads nothing), and no other token reads padding."""
    earlier = positions[:, None, :] <= positions[:, :, None]
    key_branch = branches[:, None, :]
    return earlier & ((key_branch == 0) | (key_branch == branches[:, :, None]))


def _batches(groups: Sequence[Sequence[Request]], order: list[int], batch_size: int) -> list[list[int]]:
    """Groups in ``order`` packed into batches of at most ``batch_size`` requests (or one larger group)."""
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
    """Score every request; the requests of a group (an item's choices) always share a forward pass, and one packed
    sequence if their common context makes that cheaper (:func:`packs`; a GPT only, not a model without ``head``).

    ``batch_size`` is the number of requests per forward (a larger group still goes whole). A request longer than
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
    block_size, device = model.config.block_size, model_device(model)
    n_embd = model.config.n_embd if reads_packed(model) else None
    rows = [packs([window(r, block_size) for r in group], [len(r.continuation) for r in group], n_embd)
            for group in groups]
    order = sorted(range(len(groups)), key=lambda g: -max(len(p.inputs) for p in rows[g]))
    out: list[list[Score]] = [[] for _ in groups]
    with tqdm(total=len(groups), desc=desc, disable=not progress, unit="item") as bar:
        for batch in _batches(groups, order, batch_size):
            packed = [p for g in batch for p in rows[g]]
            width = max(len(p.inputs) for p in packed)
            inputs = torch.full((len(packed), width), PAD, dtype=torch.long)
            targets = torch.full((len(packed), width), IGNORE, dtype=torch.long)
            positions = torch.zeros((len(packed), width), dtype=torch.long)
            branches = torch.full((len(packed), width), -1, dtype=torch.long)
            for i, p in enumerate(packed):
                for table, values in ((inputs, p.inputs), (targets, p.targets), (positions, p.positions),
                                      (branches, p.branches)):
                    table[i, : len(values)] = torch.tensor(values)
            tree = bool((branches > 1).any())  # else every row is one causal sequence from position 0: the plain path
            positions, branches = positions.to(device), branches.to(device)
            lp, hits = target_predictions(model, inputs.to(device), targets.to(device), greedy=greedy,
                                          positions=positions if tree else None,
                                          attn_mask=tree_mask(positions, branches) if tree else None)
            lp, hits = lp.cpu(), None if hits is None else hits.cpu()
            i = 0
            for g in batch:
                for p in rows[g]:
                    for span in p.spans:
                        out[g].append(Score(lp[i, span].sum().item(), span.stop - span.start,
                                            None if hits is None else bool(hits[i, span].all())))
                    i += 1
            bar.update(len(batch))
    return out
