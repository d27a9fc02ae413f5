"""A kept checkpoint as the evaluations see it (``ModelRef``); ``genprune_nb.evals.evaluate`` scores them."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import pandas as pd
import torch

from ..model.gpt import GPT
from ..training.checkpoint import Checkpoint
from .conditions import condition_order


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


def checkpoint_table(refs: Iterable[ModelRef]) -> pd.DataFrame:
    """How many checkpoints each run (condition, seed) has and their first and last step: what will be scored."""
    df = pd.DataFrame([r.ids() for r in refs], columns=["condition", "seed", "step", "tokens"])
    return df.groupby(["condition", "seed"])["step"].agg(checkpoints="count", first_step="min", last_step="max")


def one_per_condition(refs: Iterable[ModelRef]) -> dict[str, ModelRef]:
    """The lowest seed's ref of each condition (its first listed on ties), in the paper's condition order: the one
    model per condition that a per-word figure shows (pass ``final_only`` refs for the final models)."""
    first: dict[str, ModelRef] = {}
    for ref in refs:
        if ref.condition not in first or ref.seed < first[ref.condition].seed:
            first[ref.condition] = ref
    return {c: first[c] for c in condition_order(first)}
