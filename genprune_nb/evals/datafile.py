"""Reading benchmark files: errors that name the file and line, and the two ways a ``limit`` picks items.

A quick run's ``limit`` N over a benchmark split in subsets (MMLU subjects, BLiMP paradigms; HellaSwag is one):

* ``round_robin`` (the authors' and DESIGN.md tasks): N items in all, taken in turn from each subset;
* ``per_subset`` (lm-eval's ``--limit``, which applies to every (sub)task): the first N items of each subset.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator, Literal, Mapping, Sequence, TypeVar

from ..errors import GenpruneError

T = TypeVar("T")
LimitRule = Literal["round_robin", "per_subset"]
LIMIT_RULES: tuple[LimitRule, ...] = ("round_robin", "per_subset")


class DataFormatError(GenpruneError, ValueError):
    """A benchmark file holds a malformed row; the message names the file and the line."""

    def __init__(self, path: str | Path, line: int, problem: str):
        super().__init__(f"{path}, line {line}: {problem}")
        self.path, self.line, self.problem = Path(path), line, problem


def read_jsonl(path: str | Path, required: Sequence[str]) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, record) for every line of a JSON-lines file; each record must hold the ``required`` keys."""
    path = Path(path)
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                raise DataFormatError(path, number, "empty line")
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataFormatError(path, number, f"not valid JSON ({e.msg})") from None
            if not isinstance(record, dict):
                raise DataFormatError(path, number, f"expected a JSON object, got {type(record).__name__}")
            missing = [k for k in required if k not in record]
            if missing:
                raise DataFormatError(path, number, f"missing field(s) {missing}")
            yield number, record


def round_robin(subsets: Mapping[str, Sequence[T]], limit: int | None) -> dict[str, list[T]]:
    """The first ``limit`` items taken in turn from each subset (all of them if ``limit`` is None).

    A quick run (``limit`` small) thus touches as many subjects / paradigms as possible, in their given order.
    """
    check_limit(limit)
    if limit is None:
        return {k: list(v) for k, v in subsets.items()}
    taken: dict[str, list[T]] = {k: [] for k in subsets}
    count, depth = 0, 0
    while count < limit and any(depth < len(v) for v in subsets.values()):
        for k, v in subsets.items():
            if depth < len(v) and count < limit:
                taken[k].append(v[depth])
                count += 1
        depth += 1
    return {k: v for k, v in taken.items() if v}


def first_per_subset(subsets: Mapping[str, Sequence[T]], limit: int | None) -> dict[str, list[T]]:
    """The first ``limit`` items of every subset (all of them if ``limit`` is None), as lm-eval's ``--limit``."""
    check_limit(limit)
    return {k: list(v[:limit]) for k, v in subsets.items()}


def take(subsets: Mapping[str, Sequence[T]], limit: int | None, rule: LimitRule) -> dict[str, list[T]]:
    """The items a ``limit`` picks under ``rule`` (see the module)."""
    if rule == "round_robin":
        return round_robin(subsets, limit)
    if rule == "per_subset":
        return first_per_subset(subsets, limit)
    raise ValueError(f"unknown limit rule {rule!r}; use one of {', '.join(LIMIT_RULES)}")


def per_subset_cap(limit: int | None, n_subsets: int, rule: LimitRule) -> int | None:
    """The most items any one subset can contribute, so a reader can stop early (None: all)."""
    if limit is None:
        return None
    return limit if rule == "per_subset" else -(-limit // n_subsets)


def describe_limit(rule: LimitRule, subset: str | None = None) -> str:
    """How a ``limit`` N picks items, for a benchmark's description (``subset``: "subject", "paradigm"; None for a
    benchmark that is one set, where both rules take its first N items)."""
    if rule not in LIMIT_RULES:
        raise ValueError(f"unknown limit rule {rule!r}; use one of {', '.join(LIMIT_RULES)}")
    lmeval = " (lm-eval's --limit)" if rule == "per_subset" else ""
    if subset is None:
        return f"limit N = the first N items{lmeval}"
    if rule == "round_robin":
        return f"limit N = N items in all, taken in turn over the {subset}s"
    return f"limit N = the first N items of each {subset}{lmeval}"


def check_limit(limit: int | None) -> None:
    """Refuse a ``limit`` that is neither None nor a positive count."""
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1 or None, got {limit}")
