"""HellaSwag (Zellers et al. 2019): pick the ending of a video / how-to context, 10,042 validation items.

Two conventions (DESIGN.md §5), as two tasks:

* ``authors`` (the authors' code and llm.c): context ``ctx``, continuation ``" " + ending``; ``acc`` = best summed
  log-prob, ``acc_norm`` = best per-token mean log-prob (GPT-2 124M: 0.2859 / 0.2955).
* ``lm-eval``: context ``activity_label + ": " + ctx_a + " " + ctx_b.capitalize()`` and endings cleaned of
  WikiHow bracket tags; ``acc_norm`` divides by the ending's characters (GPT-2 124M: 0.2892 / 0.3114).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from torch import nn

from ..data import catalog
from ..tokenizer import Tokenizer
from .datafile import DataFormatError, check_limit, read_jsonl
from .multiple_choice import Norm, Question, accuracy
from .scorer import BATCH_SIZE, Request, score

Style = Literal["authors", "lm-eval"]
N_ENDINGS = 4
FIELDS = ("activity_label", "ctx_a", "ctx_b", "ctx", "endings", "label")
NORMS: dict[Style, Norm] = {"authors": "token", "lm-eval": "char"}


@dataclass(frozen=True)
class Item:
    activity_label: str
    ctx_a: str
    ctx_b: str
    ctx: str
    endings: tuple[str, ...]
    label: int


def load(path: str | Path | None = None, limit: int | None = None) -> list[Item]:
    """The first ``limit`` items (all if None) of a HellaSwag jsonl file (default: the catalog's validation set)."""
    check_limit(limit)
    path = Path(path) if path is not None else catalog.locate("hellaswag", "hellaswag_val.jsonl")
    items = []
    for line, rec in read_jsonl(path, FIELDS):
        if limit is not None and len(items) == limit:
            break
        endings = rec["endings"]
        if not isinstance(endings, list) or len(endings) != N_ENDINGS or not all(isinstance(e, str) for e in endings):
            raise DataFormatError(path, line, f"'endings' must be a list of {N_ENDINGS} strings, got {endings!r}")
        try:
            label = int(rec["label"])
        except (TypeError, ValueError):
            raise DataFormatError(path, line, f"'label' is not an integer: {rec['label']!r}") from None
        if not 0 <= label < N_ENDINGS:
            raise DataFormatError(path, line, f"'label' {label} is outside 0..{N_ENDINGS - 1}")
        texts = [rec[k] for k in FIELDS[:4]]
        if not all(isinstance(t, str) for t in texts):
            raise DataFormatError(path, line, f"fields {list(FIELDS[:4])} must be strings")
        items.append(Item(*texts, endings=tuple(endings), label=label))
    return items


def preprocess(text: str) -> str:
    """lm-eval's cleaning of WikiHow text: ``" [title]"`` -> ``". "``, other ``[tags]`` removed, double spaces merged.

    As in lm-eval, an ending that starts with a tag keeps the space after it (about half the items).
    """
    text = text.strip().replace(" [title]", ". ")
    text = re.sub(r"\[.*?\]", "", text)
    return text.replace("  ", " ")


def texts(item: Item, style: Style = "authors") -> tuple[str, list[str]]:
    """The item's context and its four endings (without the separating space) under ``style``."""
    if style == "authors":
        return item.ctx, list(item.endings)
    if style == "lm-eval":
        context = preprocess(f"{item.activity_label}: {item.ctx_a} {item.ctx_b.capitalize()}")
        return context, [preprocess(e) for e in item.endings]
    raise ValueError(f"unknown HellaSwag style {style!r}; use 'authors' or 'lm-eval'")


def question(item: Item, style: Style = "authors", tokenizer: Tokenizer | str = "gpt2") -> Question:
    """The item's four (context, " " + ending) requests under ``style``, encoded by ``tokenizer`` (the model's)."""
    context, endings = texts(item, style)
    return Question(tuple(Request.from_text(context, e, tokenizer=tokenizer) for e in endings), item.label,
                    tuple(len(e) for e in endings))


def evaluate(
    model: nn.Module,
    questions: list[Question],
    style: Style = "authors",
    *,
    batch_size: int = BATCH_SIZE,
    progress: bool = False,
) -> list[dict[str, Any]]:
    """Rows ``acc`` and ``acc_norm`` (per token for ``authors``, per character for ``lm-eval``)."""
    scores = score(model, [q.requests for q in questions], batch_size=batch_size, progress=progress,
                   desc="hellaswag")
    n = len(questions)
    return [{"metric": "acc", "value": accuracy(questions, scores, "none"), "n": n},
            {"metric": "acc_norm", "value": accuracy(questions, scores, NORMS[style]), "n": n}]
