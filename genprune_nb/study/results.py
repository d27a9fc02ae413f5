"""The tidy results table shared by every evaluation, and the labels of the tasks it stores.

One row per (condition, seed, step, task, metric[, extra keys such as layer or subject]) with its ``value``, ``n``
(items behind it), the ``fingerprint`` of the checkpoint it scored (``Checkpoint.fingerprint``; empty for
rows not scored from a checkpoint) and the ``revision`` of the benchmark that scored it (``Benchmark.revision``,
raised whenever a change alters its numbers; empty = 1, the rows written before revisions were recorded).
Benchmarks, reading-time and brain-alignment scores all land in the same CSV, so a notebook can plot any of them
against training with one ``groupby``. Re-running a sweep skips what is there
for the same checkpoint and benchmark revision; rows of a checkpoint or a benchmark that changed since are
recomputed and replace the old ones. Writers take turns (a file lock).
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Sequence

import pandas as pd

from ..storage import atomic
from ..storage.locking import file_lock

if TYPE_CHECKING:
    from .model_refs import ModelRef

ID_COLUMNS = ["condition", "seed", "step", "tokens"]
COLUMNS = ID_COLUMNS + ["task", "metric", "value", "n"]
FINGERPRINT = "fingerprint"  # str: Checkpoint.fingerprint of the scored checkpoint; empty if unknown; not a key
REVISION = "revision"  # int: Benchmark.revision of the scoring code; empty = 1 (before revisions); not a key
_VALUES = ("value", "n", FINGERPRINT, REVISION)
_INTEGER_COLUMNS = ("seed", "step", "tokens")
_NUMERIC_COLUMNS = ("value", "n")  # NaN allowed: a metric may be undefined for a checkpoint


class ResultsTable:
    """A CSV of tidy results, rewritten atomically on every ``add``."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def load(self) -> pd.DataFrame:
        if not self.path.exists():
            return pd.DataFrame(columns=COLUMNS)
        df = read_results_csv(self.path)
        if FINGERPRINT not in df.columns:  # a table written before rows recorded it: every row counts as unknown
            df = order_columns(df.assign(**{FINGERPRINT: None}))
        if REVISION not in df.columns:  # a table written before rows recorded it: revision 1
            df = order_columns(df.assign(**{REVISION: 1}))
        df[REVISION] = pd.to_numeric(df[REVISION]).fillna(1).astype(int)
        return df

    def has(self, ref: ModelRef, task: str, revision: int = 1) -> bool:
        """Whether ``task`` rows of this checkpoint (same fingerprint) scored at benchmark ``revision`` are stored."""
        df = self.load()
        if df.empty:
            return False
        hit = (df["condition"] == ref.condition) & (df["seed"] == ref.seed) & (df["step"] == ref.step)
        hit &= (df["task"] == task) & (df[REVISION] == revision)
        return bool((hit & (df[FINGERPRINT] == ref.checkpoint_fingerprint())).any())

    def add(self, rows: pd.DataFrame | Iterable[dict[str, Any]]) -> pd.DataFrame:
        """Append rows; a row with the same keys (every column but value, n, fingerprint, revision) replaces the old
        one.

        Rows of a checkpoint scored under another fingerprint or benchmark revision for the same task are dropped
        (they describe weights that no longer exist, or code that no longer scores that way). The table is re-read
        and rewritten under its lock, so concurrent writers lose nothing.
        """
        new = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
        missing = [c for c in COLUMNS if c not in new.columns]
        if missing:
            raise ValueError(f"results rows lack columns {missing}")
        if FINGERPRINT not in new.columns:
            new = new.assign(**{FINGERPRINT: None})
        if REVISION not in new.columns:
            new = new.assign(**{REVISION: 1})
        with file_lock(self.path):
            old = _drop_superseded(self.load(), new) if self.path.exists() else None
            df = pd.concat([old, new], ignore_index=True) if old is not None else new
            keys = [c for c in df.columns if c not in _VALUES]
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
    df = pd.read_csv(path, dtype={FINGERPRINT: str})
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


def _drop_superseded(old: pd.DataFrame, new: pd.DataFrame) -> pd.DataFrame:
    """``old`` without the rows of a (condition, seed, step, task) that ``new`` rescores under another fingerprint
    or benchmark revision."""
    if new.empty or old.empty:
        return old
    where = ["condition", "seed", "step", "task"]
    current = new[where + [FINGERPRINT, REVISION]].drop_duplicates(subset=where, keep="last")
    merged = old[where + [FINGERPRINT, REVISION]].merge(current, on=where, how="left", suffixes=("", "_now"))
    rescored = merged[f"{REVISION}_now"].notna()
    other_weights = merged[f"{FINGERPRINT}_now"].notna() & (merged[FINGERPRINT] != merged[f"{FINGERPRINT}_now"])
    other_code = merged[REVISION] != merged[f"{REVISION}_now"]
    return old[~(rescored & (other_weights | other_code)).to_numpy()].reset_index(drop=True)


def extra_keys(df: pd.DataFrame) -> list[str]:
    """The key columns beyond ``COLUMNS`` (subject, layer, paradigm, ...): empty in a task's overall rows."""
    return [c for c in df.columns if c not in COLUMNS and c not in (FINGERPRINT, REVISION)]


def order_columns(df: pd.DataFrame) -> pd.DataFrame:
    """The table's column order: ids and task, then extra keys (subject, layer, ...), then metric, value, n and,
    where rows record them, the checkpoint's fingerprint and the benchmark's revision."""
    return df[COLUMNS[:5] + extra_keys(df) + COLUMNS[5:] + [c for c in (FINGERPRINT, REVISION) if c in df.columns]]


def resolve_task(results: pd.DataFrame, task: str) -> str:
    """The stored label of ``task``: itself if stored, else the one label of that task name (``"blimp"`` ->
    ``"blimp@50"``); a ValueError names the stored labels when there is none or several."""
    labels = sorted(set(results["task"].dropna())) if "task" in results.columns else []
    if task in labels:
        return task
    same = [t for t in labels if base_task(t) == task]
    if len(same) != 1:
        raise ValueError(f"no task {task!r} in the results" + (f" (several labels: {same})" if same else "")
                         + f"; stored tasks: {labels}")
    return same[0]


def select(
    results: pd.DataFrame,
    task: str,
    metric: str | None = None,
    *,
    overall: bool = True,
    breakdown: str | None = None,
    required: bool = True,
    **keys: Any,
) -> pd.DataFrame:
    """The rows of one task (a stored label, or a task name with one stored label) and ``metric`` (None: all).

    ``keys`` pick extra-key values (``paradigm="anaphor_gender_agreement"``, ``layer=6``); ``breakdown`` keeps the
    rows that have that extra key set (``breakdown="layer"``: one row per layer). With ``overall`` (the default)
    every other extra key must be empty: a task's overall score, never a subject's or a layer's. Sorted by
    condition, seed and tokens. ``required``: raise a ValueError naming what is missing instead of returning no rows.
    """
    empty = results.iloc[0:0]
    try:
        label = resolve_task(results, task)
        df = results[results["task"] == label]
        if metric is not None:
            if metric not in set(df["metric"]):
                raise ValueError(f"task {label!r} has no metric {metric!r}; it has {sorted(set(df['metric']))}")
            df = df[df["metric"] == metric]
        named = list(keys) + ([breakdown] if breakdown else [])
        unknown = [k for k in named if k not in df.columns]
        if unknown:
            raise ValueError(f"results have no column(s) {unknown} to select on")
    except ValueError:
        if required:
            raise
        return empty
    for column in extra_keys(df):
        if column in keys:
            df = df[df[column] == keys[column]]
        elif column == breakdown:
            df = df[df[column].notna()]
        elif overall:
            df = df[df[column].isna()]
    if df.empty and required:
        raise ValueError(f"no {label!r} {metric or ''} rows match {keys or breakdown or 'the overall score'}")
    return df.sort_values(["condition", "seed", "tokens"], kind="stable").reset_index(drop=True)


def final_rows(df: pd.DataFrame, by: Sequence[str] = ("condition", "seed")) -> pd.DataFrame:
    """The rows at the last step of each ``by`` group (each seed's final checkpoint)."""
    last = df.groupby(list(by))["step"].transform("max")
    return df[df["step"] == last].reset_index(drop=True)


def task_label(name: str, limit: int | None = None, **sizes: Any) -> str:
    """The ``task`` value stored in results: the name for a full run; a quick run gets a suffix naming its size, so
    that it never stands in for a full one: ``hellaswag@50`` (``limit`` items), ``brain_encoding@sentences=40``,
    ``reading_times@stories=1,2,words=100`` (keyed ``sizes``, in the order given; a collection is written sorted
    without repeats). Sizes that are None (everything) are left out. A non-default option that changes the numbers
    is keyed the same way (``brain_encoding@protocol=standardized``)."""
    def written(value: Any) -> str:
        return ",".join(map(str, sorted(set(value)))) if isinstance(value, (list, tuple, set, range)) else str(value)

    parts = [str(limit)] if limit is not None else []
    parts += [f"{key}={written(value)}" for key, value in sizes.items() if value is not None]
    return name + ("@" + ",".join(parts) if parts else "")


def base_task(label: str) -> str:
    """Task name of a stored label (``"hellaswag@20"`` -> ``"hellaswag"``)."""
    return label.split("@", 1)[0]
