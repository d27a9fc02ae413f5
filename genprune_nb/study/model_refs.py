"""A kept checkpoint as the evaluations see it (``ModelRef``); ``genprune_nb.evals.evaluate`` scores them."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..model.gpt import GPT
from ..training.checkpoint import Checkpoint


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

