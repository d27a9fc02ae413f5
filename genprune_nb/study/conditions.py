"""The inner loop's conditions, defined once, in their display order: the paper's three, then what else the outer
loop could hand down (the transmission conditions of notebook 09)."""
from __future__ import annotations

from typing import Iterable

# named on the config floor so a preset's default can list them
from ..config import CONDITIONS, TRANSMISSION_CONDITIONS

__all__ = ["CONDITIONS", "TRANSMISSION_CONDITIONS", "CONDITION_BASES", "BASELINE", "condition_order"]

CONDITION_BASES = CONDITIONS + TRANSMISSION_CONDITIONS  # every base a condition name may start with
BASELINE = "NoConnectome"  # the dense standard init every other condition is compared with


def condition_order(conditions: Iterable[str]) -> list[str]:
    """The paper's three conditions first (in its order), then the transmission conditions (in theirs), any others
    after, alphabetically."""
    present = set(conditions)
    return [c for c in CONDITION_BASES if c in present] + sorted(present - set(CONDITION_BASES))
