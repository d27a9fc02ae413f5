"""Reading benchmark files: errors that name the file and line, and ``limit`` spread over subsets."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence, TypeVar

from ..errors import GenpruneError

T = TypeVar("T")


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


def check_limit(limit: int | None) -> None:
    """Refuse a ``limit`` that is neither None nor a positive count."""
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1 or None, got {limit}")
