"""The tidy results table shared by every evaluation, and the sweep over kept checkpoints.

One row per (condition, seed, step, task, metric[, extra keys such as layer or subject]) with its ``value``, ``n``
(items behind it) and the ``fingerprint`` of the checkpoint it scored (``Checkpoint.fingerprint``; empty for
rows not scored from a checkpoint). Benchmarks, reading-time and brain-alignment scores all land in the same CSV,
so a notebook can plot any of them against training with one ``groupby``. Re-running a sweep skips what is there
for the same checkpoint; rows of a checkpoint that changed since are recomputed. Writers take turns (a file lock).
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
from .locking import file_lock
from .model import GPT

ID_COLUMNS = ["condition", "seed", "step", "tokens"]
COLUMNS = ID_COLUMNS + ["task", "metric", "value", "n"]
FINGERPRINT = "fingerprint"  # str: Checkpoint.fingerprint of the scored checkpoint; empty if unknown; not a key
_VALUES = ("value", "n", FINGERPRINT)


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


class ResultsTable:
    """A CSV of tidy results, rewritten atomically on every ``add``."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def load(self) -> pd.DataFrame:
        if not self.path.exists():
            return pd.DataFrame(columns=COLUMNS)
        df = pd.read_csv(self.path, dtype={FINGERPRINT: str})
        missing = [c for c in COLUMNS if c not in df.columns]
        if missing:
            raise ValueError(f"{self.path}: not a results table, columns {missing} are missing")
        if FINGERPRINT not in df.columns:  # a table written before rows recorded it: every row counts as unknown
            df = order_columns(df.assign(**{FINGERPRINT: None}))
        return df

    def has(self, ref: ModelRef, task: str) -> bool:
        df = self.load()
        if df.empty:
            return False
        hit = (df["condition"] == ref.condition) & (df["seed"] == ref.seed) & (df["step"] == ref.step)
        return bool((hit & (df["task"] == task) & (df[FINGERPRINT] == ref.checkpoint_fingerprint())).any())

    def add(self, rows: pd.DataFrame | Iterable[dict[str, Any]]) -> pd.DataFrame:
        """Append rows; a row with the same keys (every column but value, n and fingerprint) replaces the old one.

        Rows of a checkpoint scored under another fingerprint for the same task are dropped (they describe weights
        that no longer exist). The table is re-read and rewritten under its lock, so concurrent writers lose nothing.
        """
        new = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
        missing = [c for c in COLUMNS if c not in new.columns]
        if missing:
            raise ValueError(f"results rows lack columns {missing}")
        if FINGERPRINT not in new.columns:
            new = new.assign(**{FINGERPRINT: None})
        with file_lock(self.path):
            old = _drop_superseded(self.load(), new) if self.path.exists() else None
            df = pd.concat([old, new], ignore_index=True) if old is not None else new
            keys = [c for c in df.columns if c not in _VALUES]
            df = order_columns(df.drop_duplicates(subset=keys, keep="last").reset_index(drop=True))
            with atomic.atomic_path(self.path) as tmp:
                df.to_csv(tmp, index=False)
        return df


def _drop_superseded(old: pd.DataFrame, new: pd.DataFrame) -> pd.DataFrame:
    """``old`` without the rows of a (condition, seed, step, task) that ``new`` rescores under another fingerprint."""
    scored = new[new[FINGERPRINT].notna()]
    if scored.empty or old.empty:
        return old
    where = ["condition", "seed", "step", "task"]
    current = scored[where + [FINGERPRINT]].drop_duplicates(subset=where, keep="last")
    merged = old[where + [FINGERPRINT]].merge(current, on=where, how="left", suffixes=("", "_now"))
    stale = merged[f"{FINGERPRINT}_now"].notna() & (merged[FINGERPRINT] != merged[f"{FINGERPRINT}_now"])
    return old[~stale.to_numpy()].reset_index(drop=True)


def extra_keys(df: pd.DataFrame) -> list[str]:
    """The key columns beyond ``COLUMNS`` (subject, layer, paradigm, ...): empty in a task's overall rows."""
    return [c for c in df.columns if c not in COLUMNS and c != FINGERPRINT]


def order_columns(df: pd.DataFrame) -> pd.DataFrame:
    """The table's column order: ids and task, then extra keys (subject, layer, ...), then metric, value, n and,
    where rows record it, the checkpoint's fingerprint."""
    return df[COLUMNS[:5] + extra_keys(df) + COLUMNS[5:] + [c for c in [FINGERPRINT] if c in df.columns]]


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
        scored = {**ref.ids(), "task": task, FINGERPRINT: ref.checkpoint_fingerprint()}
        table.add([{**scored, **row} for row in evaluate(model)])
        del model
    return table.load()
