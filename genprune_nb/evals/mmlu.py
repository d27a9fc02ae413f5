"""MMLU (Hendrycks et al. 2021): 57 subjects of four-choice questions, 14,042 test items (chance 0.25).

Formats (DESIGN.md §5), as tasks:

* ``cloze`` (the authors'): ``"Question: {q}\\n\\nAnswer:"`` + ``" " + option text``; ``acc`` on the summed
  log-prob, ``acc_norm`` on the per-token mean (GPT-2 124M: 0.2557 / 0.2721).
* ``letters`` (lm-eval): the question, the options as ``A. ..`` to ``D. ..``, ``"Answer:"``, scored on
  ``" A"`` .. ``" D"``; 0-shot or k-shot with the subject's first k dev questions as worked examples.

Overall accuracy is item-weighted (every question counts once, as in lm-eval's MMLU group); per-subject rows too.
Files: ``<split>/<subject>_<split>.csv``, either with a header ``question,choice0..choice3,answer`` and answers
0-3 (the copy in the shared data), or Hendrycks' original layout (no header, answers A-D).
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from torch import nn

from ..data import catalog
from ..tokenizer import Tokenizer
from .datafile import DataFormatError, LimitRule, take
from .multiple_choice import Question, accuracy
from .scorer import BATCH_SIZE, Request, score

Format = Literal["cloze", "letters"]
LETTERS = "ABCD"
HEADER = ["question", "choice0", "choice1", "choice2", "choice3", "answer"]


@dataclass(frozen=True)
class Item:
    subject: str
    question: str
    choices: tuple[str, str, str, str]
    answer: int  # 0..3


def read_csv(path: str | Path, subject: str) -> list[Item]:
    """Every question of one subject file, in either layout (detected from its first row)."""
    path = Path(path)
    items: list[Item] = []
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        start, header = 1, None
        for row in reader:
            if header is None:
                header = row == HEADER
                if header:
                    start = reader.line_num + 1
                    continue
            if len(row) != len(HEADER):
                raise DataFormatError(path, start, f"expected {len(HEADER)} fields (question, 4 choices, answer), "
                                                   f"got {len(row)}")
            answer = row[5].strip()
            if header:
                if answer not in ("0", "1", "2", "3"):
                    raise DataFormatError(path, start, f"answer {answer!r} is not an index 0-3")
                index = int(answer)
            else:
                if answer not in tuple(LETTERS):
                    raise DataFormatError(path, start, f"answer {answer!r} is not a letter A-D")
                index = LETTERS.index(answer)
            items.append(Item(subject, row[0], (row[1], row[2], row[3], row[4]), index))
            start = reader.line_num + 1
    if not items:
        raise DataFormatError(path, 1, "no questions")
    return items


def load(split: str = "test", root: str | Path | None = None) -> dict[str, list[Item]]:
    """Subject -> questions of ``split`` (test, dev or val), subjects in alphabetical order.

    ``root`` holds ``<split>/<subject>_<split>.csv`` (default: the catalog's MMLU folder).
    """
    folder = (Path(root) if root is not None else catalog.locate("mmlu")) / split
    paths = sorted(folder.glob(f"*_{split}.csv"))
    if not paths:
        raise FileNotFoundError(f"no MMLU files {folder}/<subject>_{split}.csv")
    return {p.name[: -len(f"_{split}.csv")]: read_csv(p, p.name[: -len(f"_{split}.csv")]) for p in paths}


def cloze_prompt(item: Item) -> str:
    return f"Question: {item.question}\n\nAnswer:"


def letters_prompt(item: Item) -> str:
    options = "".join(f"\n{letter}. {choice}" for letter, choice in zip(LETTERS, item.choices))
    return f"{item.question.strip()}{options}\nAnswer:"


def letters_context(item: Item, shots: list[Item]) -> str:
    """lm-eval's prompt: a one-line description, the worked examples, then the question."""
    subject = item.subject.replace("_", " ")
    examples = "".join(f"{letters_prompt(s)} {LETTERS[s.answer]}\n\n" for s in shots)
    return f"The following are multiple choice questions (with answers) about {subject}.\n\n{examples}" \
           f"{letters_prompt(item)}"


def question(item: Item, fmt: Format = "cloze", shots: list[Item] | None = None,
             tokenizer: Tokenizer | str = "gpt2") -> Question:
    """The item's four requests: option texts after the cloze prompt, or letters after the lm-eval prompt, encoded
    by ``tokenizer`` (the model's)."""
    if fmt == "cloze":
        if shots:
            raise ValueError("the cloze format is 0-shot")
        context, options = cloze_prompt(item), list(item.choices)
    elif fmt == "letters":
        context, options = letters_context(item, shots or []), list(LETTERS)
    else:
        raise ValueError(f"unknown MMLU format {fmt!r}; use 'cloze' or 'letters'")
    return Question(tuple(Request.from_text(context, o, tokenizer=tokenizer) for o in options), item.answer,
                    tuple(len(o) for o in options))


@dataclass(frozen=True)
class Selection:
    """The test items of one subject that a run scores, and the dev items shown before each as worked examples."""

    items: list[Item]
    shots: list[Item]


def select(
    shots: int = 0,
    limit: int | None = None,
    root: str | Path | None = None,
    rule: LimitRule = "round_robin",
) -> dict[str, Selection]:
    """Subject -> the test items a ``limit`` picks under ``rule`` (``round_robin``: ``limit`` in all, in turn over
    subjects; ``per_subset``: the first ``limit`` of each subject) and its first ``shots`` dev items."""
    test = take(load("test", root), limit, rule)
    dev = load("dev", root) if shots else {}
    out = {}
    for subject, items in test.items():
        examples = dev.get(subject, [])[:shots]
        if len(examples) < shots:
            raise ValueError(f"MMLU subject {subject!r} has {len(examples)} dev questions, {shots} shots asked")
        out[subject] = Selection(items, examples)
    return out


def questions_of(selected: dict[str, Selection], fmt: Format = "cloze",
                 tokenizer: Tokenizer | str = "gpt2") -> dict[str, list[Question]]:
    """Subject -> the selected items as questions in ``fmt``, encoded by ``tokenizer`` (the model's)."""
    return {subject: [question(item, fmt, s.shots, tokenizer) for item in s.items] for subject, s in selected.items()}


def questions(
    fmt: Format = "cloze",
    shots: int = 0,
    limit: int | None = None,
    root: str | Path | None = None,
    rule: LimitRule = "round_robin",
    tokenizer: Tokenizer | str = "gpt2",
) -> dict[str, list[Question]]:
    """Subject -> test questions in ``fmt`` with ``shots`` dev examples (:func:`select`), encoded by ``tokenizer``."""
    return questions_of(select(shots, limit, root, rule), fmt, tokenizer)


def evaluate(
    model: nn.Module,
    by_subject: dict[str, list[Question]],
    fmt: Format = "cloze",
    *,
    batch_size: int = BATCH_SIZE,
    progress: bool = False,
) -> list[dict[str, Any]]:
    """Rows ``acc`` (and ``acc_norm`` per token for cloze): item-weighted overall, then one per subject."""
    flat = [q for qs in by_subject.values() for q in qs]
    scores = score(model, [q.requests for q in flat], batch_size=batch_size, progress=progress, desc="mmlu")
    metrics = {"acc": "none", "acc_norm": "token"} if fmt == "cloze" else {"acc": "none"}
    rows, offset = [], 0
    for metric, norm in metrics.items():
        rows.append({"metric": metric, "value": accuracy(flat, scores, norm), "n": len(flat)})
    for subject, qs in by_subject.items():
        sub = scores[offset : offset + len(qs)]
        offset += len(qs)
        for metric, norm in metrics.items():
            rows.append({"metric": metric, "value": accuracy(qs, sub, norm), "n": len(qs), "subject": subject})
    return rows
