"""The tidy results table shared by every evaluation, and the sweep over kept checkpoints.

One row per (condition, seed, step, task, metric[, extra keys such as layer or subject]) with its ``value`` and
``n`` (items behind it). Benchmarks, reading-time and brain-alignment scores all land in the same CSV, so a
notebook can plot any of them against training with one ``groupby``. Re-running a sweep skips what is there.
"""
from __future__ import annotations

import csv
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
_INTEGER_COLUMNS = ("seed", "step", "tokens")
_NUMERIC_COLUMNS = ("value", "n")  # NaN allowed: a metric may be undefined for a checkpoint
_LABEL_COLUMNS = ("condition", "task", "metric")


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
        return read_results_csv(self.path)

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


def read_results_csv(path: Path) -> pd.DataFrame:
    """The table at ``path``, refused with the file and line (header = line 1) of the first damaged row.

    A row with another number of fields than the header, a non-integer seed / step / tokens, a non-numeric value
    or n, or an empty condition / task / metric would otherwise load as a NaN row that a sweep counts as done.
    """
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            if not header:
                raise ValueError(f"{path}: not a results table, the header line is missing")
            lines, end = [], reader.line_num  # lines[i]: the line where data row i starts
            for row in reader:
                if row:  # blank lines are skipped, as pandas does
                    if len(row) != len(header):
                        raise ValueError(f"{path}: line {end + 1} has {len(row)} fields, the header {len(header)}")
                    lines.append(end + 1)
                end = reader.line_num
    except (UnicodeDecodeError, csv.Error) as e:
        raise ValueError(f"{path}: not a readable CSV file ({e})") from None
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        raise ValueError(f"{path}: not a results table, columns {missing} are missing")
    df = pd.read_csv(path)
    for column in COLUMNS:
        raw = df[column]
        number = pd.to_numeric(raw, errors="coerce")
        if column in _INTEGER_COLUMNS:
            bad, want = number.isna() | (number % 1 != 0), "an integer"
        elif column in _NUMERIC_COLUMNS:
            bad, want = number.isna() & raw.notna(), "a number"
        else:
            bad, want = raw.isna() | (raw.astype(str).str.strip() == ""), "a non-empty label"
        if bad.any():
            i = int(bad.to_numpy().nonzero()[0][0])
            value = "empty" if pd.isna(raw.iloc[i]) else f"'{raw.iloc[i]}'"
            raise ValueError(f"{path}: line {lines[i]}: {column} is {value}, expected {want}")
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
