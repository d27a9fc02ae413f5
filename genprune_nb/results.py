"""The tidy results table shared by every evaluation, and the sweep over kept checkpoints.

One row per (condition, seed, step, task, metric[, extra keys such as layer or subject]) with its ``value`` and
``n`` (items behind it). Benchmarks, reading-time and brain-alignment scores all land in the same CSV, so a
notebook can plot any of them against training with one ``groupby``. Re-running a sweep skips what is there.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import pandas as pd
import torch
from tqdm.auto import tqdm

from . import atomic
from .checkpoint import Checkpoint
from .model import GPT

ID_COLUMNS = ["condition", "seed", "step", "tokens"]
COLUMNS = ID_COLUMNS + ["task", "metric", "value", "n"]


@dataclass(frozen=True)
class ModelRef:
    """One kept checkpoint of a run: which condition and seed, after how many steps and tokens."""

    condition: str
    seed: int
    step: int
    tokens: int
    path: Path

    def load_model(self, device: str | torch.device = "cpu") -> GPT:
        return Checkpoint(Path(self.path)).load_model(device).eval()

    def ids(self) -> dict[str, Any]:
        return {"condition": self.condition, "seed": self.seed, "step": self.step, "tokens": self.tokens}


class ResultsTable:
    """A CSV of tidy results, rewritten atomically on every ``add``."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def load(self) -> pd.DataFrame:
        if not self.path.exists():
            return pd.DataFrame(columns=COLUMNS)
        df = pd.read_csv(self.path)
        missing = [c for c in COLUMNS if c not in df.columns]
        if missing:
            raise ValueError(f"{self.path}: not a results table, columns {missing} are missing")
        return df

    def has(self, ref: ModelRef, task: str) -> bool:
        df = self.load()
        if df.empty:
            return False
        hit = (df["condition"] == ref.condition) & (df["seed"] == ref.seed) & (df["step"] == ref.step)
        return bool((hit & (df["task"] == task)).any())

    def add(self, rows: pd.DataFrame | Iterable[dict[str, Any]]) -> pd.DataFrame:
        """Append rows; a row with the same keys (every column but value and n) replaces the old one."""
        new = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
        missing = [c for c in COLUMNS if c not in new.columns]
        if missing:
            raise ValueError(f"results rows lack columns {missing}")
        df = pd.concat([self.load(), new], ignore_index=True) if self.path.exists() else new
        keys = [c for c in df.columns if c not in ("value", "n")]
        df = order_columns(df.drop_duplicates(subset=keys, keep="last").reset_index(drop=True))
        with atomic.atomic_path(self.path) as tmp:
            df.to_csv(tmp, index=False)
        return df


def order_columns(df: pd.DataFrame) -> pd.DataFrame:
    """The table's column order: ids and task, then extra keys (subject, layer, ...), then metric, value, n."""
    extra = [c for c in df.columns if c not in COLUMNS]
    return df[COLUMNS[:5] + extra + COLUMNS[5:]]


def final_rows(df: pd.DataFrame, by: Sequence[str] = ("condition", "seed")) -> pd.DataFrame:
    """The rows at the last step of each ``by`` group (each seed's final checkpoint)."""
    last = df.groupby(list(by))["step"].transform("max")
    return df[df["step"] == last].reset_index(drop=True)


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
        table.add([{**ref.ids(), "task": task, **row} for row in evaluate(model)])
        del model
    return table.load()
