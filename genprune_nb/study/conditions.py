"""The inner loop's three conditions, defined once, in their display order."""
from __future__ import annotations

from typing import Iterable

from ..config import CONDITIONS  # named on the config floor so a preset's default can list them

__all__ = ["CONDITIONS", "condition_order"]


def condition_order(conditions: Iterable[str]) -> list[str]:
    """The paper's three conditions first (in its order), any others after, alphabetically."""
    present = set(conditions)
    return [c for c in CONDITIONS if c in present] + sorted(present - set(CONDITIONS))
