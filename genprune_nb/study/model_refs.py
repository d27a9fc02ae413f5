"""A kept checkpoint as the evaluations see it (``ModelRef``), and the sweep that scores them into a results table."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import pandas as pd
import torch
from tqdm.auto import tqdm

from ..model.gpt import GPT
from ..training.checkpoint import Checkpoint
from .results import FINGERPRINT, ResultsTable


@dataclass(frozen=True)
class ModelRef:
    """One kept checkpoint of a run: which condition and seed, after how many steps and tokens."""

    condition: str
    seed: int
    step: int
    tokens: int
    path: Path
    fingerprint: str | None = None  # Checkpoint.fingerprint of ``path``; None: read from the checkpoint when needed

    def load_model(self, device: str | torch.device = "cpu") -> GPT:
        return Checkpoint(Path(self.path)).load_model(device).eval()

    def checkpoint_fingerprint(self) -> str:
        return self.fingerprint or Checkpoint(Path(self.path)).fingerprint()

    def ids(self) -> dict[str, Any]:
        return {"condition": self.condition, "seed": self.seed, "step": self.step, "tokens": self.tokens}


def sweep(
    refs: Iterable[ModelRef],
    task: str,
    evaluate: Callable[[GPT], Iterable[dict[str, Any]]],
    table: ResultsTable,
    *,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> pd.DataFrame:
    """Evaluate every checkpoint in ``refs`` not yet in ``table`` for ``task``; return the whole table.

    ``evaluate(model)`` returns rows with at least ``metric``, ``value`` and ``n`` (and any extra keys);
    the checkpoint's ids and ``task`` are added here. Results are saved after every checkpoint.
    """
    todo = [r for r in refs if not table.has(r, task)]
    for ref in tqdm(todo, desc=task, disable=not progress):
        model = ref.load_model(device)
        scored = {**ref.ids(), "task": task, FINGERPRINT: ref.checkpoint_fingerprint()}
        table.add([{**scored, **row} for row in evaluate(model)])
        del model
    return table.load()
