"""Multiple-choice accuracy from continuation log-likelihoods: raw, per token and per character."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Sequence

from .scorer import Request, Score

Norm = Literal["none", "token", "char"]


@dataclass(frozen=True)
class Question:
    """One item: a request per choice, the index of the right one, and each choice's length in characters."""

    requests: tuple[Request, ...]
    gold: int
    chars: tuple[int, ...]

    def __post_init__(self) -> None:
        if not 0 <= self.gold < len(self.requests):
            raise ValueError(f"gold index {self.gold} outside the {len(self.requests)} choices")
        if len(self.chars) != len(self.requests):
            raise ValueError("one character count per choice is needed")


def choose(scores: Sequence[Score], norm: Norm, chars: Sequence[int] = ()) -> int:
    """Index of the best choice: summed log-prob (``none``), per-token mean (``token``) or per character (``char``).

    Ties go to the first choice.
    """
    if norm == "none":
        values = [s.logprob for s in scores]
    elif norm == "token":
        values = [s.mean for s in scores]
    elif norm == "char":
        if any(c <= 0 for c in chars) or len(chars) != len(scores):
            raise ValueError(f"per-character normalisation needs a positive length per choice, got {list(chars)}")
        values = [s.logprob / c for s, c in zip(scores, chars)]
    else:
        raise ValueError(f"unknown normalisation {norm!r}; use none, token or char")
    return max(range(len(values)), key=lambda i: (values[i], -i))


def accuracy(questions: Sequence[Question], scores: Sequence[Sequence[Score]], norm: Norm) -> float:
    """Fraction of questions whose best choice under ``norm`` is the gold one."""
    if not questions:
        raise ValueError("no questions to score")
    hits = sum(choose(s, norm, q.chars) == q.gold for q, s in zip(questions, scores, strict=True))
    return hits / len(questions)
