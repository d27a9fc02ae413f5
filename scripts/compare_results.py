"""Compare two tidy results tables (``runs/<preset>/results.csv``): same rows, values equal within float noise?

    python scripts/compare_results.py before/results.csv after/results.csv [--rtol 1e-5] [--atol 1e-8]

Rows are matched on every key column (ids, task, extra keys such as layer or subject, metric); ``value`` must
agree within ``rtol``/``atol`` (NaN equals NaN) and ``n`` exactly. Prints a summary per task and every difference;
exits 1 when the tables differ, 0 when they agree (with ``--allow-new``: when every row of the first is in the
second with the same value, so the second may add rows, e.g. of a benchmark added since). The checkpoint ``fingerprint`` column is compared and reported
but does not fail the comparison (it changes with the checkpoint file, not the science).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from genprune_nb.study.results import FINGERPRINT, extra_keys, read_results_csv  # noqa: E402

ID_COLUMNS = ["condition", "seed", "step", "tokens", "task"]


def keyed(df: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """``df`` with every key column present (missing extra keys as empty) and key values as comparable strings."""
    df = df.copy()
    for column in keys:
        if column not in df.columns:
            df[column] = np.nan
    df["_key"] = ["|".join(map(_text, row)) for row in df[keys].itertuples(index=False)]
    return df


def _text(value: object) -> str:
    """A key value as text that reads the same whether its column was parsed as int, float or str."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    if isinstance(value, (int, float, np.number)) and float(value).is_integer():
        return str(int(value))
    return str(value)


def compare(a: pd.DataFrame, b: pd.DataFrame, rtol: float, atol: float) -> dict[str, pd.DataFrame]:
    """Rows only in ``a``, only in ``b``, with a different value or n, and with another fingerprint."""
    keys = ID_COLUMNS + sorted(set(extra_keys(a)) | set(extra_keys(b))) + ["metric"]
    a, b = keyed(a, keys), keyed(b, keys)
    for name, df in (("first", a), ("second", b)):
        dup = df["_key"].duplicated()
        if dup.any():
            raise SystemExit(f"{name} table has {int(dup.sum())} duplicate keys, e.g. {df['_key'][dup].iloc[0]}")
    both = a.merge(b, on="_key", suffixes=("_a", "_b"))
    va, vb = both["value_a"].to_numpy(float), both["value_b"].to_numpy(float)
    same = np.isclose(va, vb, rtol=rtol, atol=atol, equal_nan=True) & (both["n_a"].to_numpy() == both["n_b"].to_numpy())
    fa = both.get(f"{FINGERPRINT}_a", pd.Series(index=both.index, dtype=object)).fillna("")
    fb = both.get(f"{FINGERPRINT}_b", pd.Series(index=both.index, dtype=object)).fillna("")
    return {
        "only in first": a[~a["_key"].isin(b["_key"])],
        "only in second": b[~b["_key"].isin(a["_key"])],
        "different value or n": both[~same],
        "different fingerprint": both[fa.to_numpy() != fb.to_numpy()],
        "matched": both,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("first", type=Path)
    parser.add_argument("second", type=Path)
    parser.add_argument("--rtol", type=float, default=1e-5)
    parser.add_argument("--atol", type=float, default=1e-8)
    parser.add_argument("--allow-new", action="store_true", help="rows only in the second table do not fail")
    args = parser.parse_args(argv)
    a, b = read_results_csv(args.first), read_results_csv(args.second)
    out = compare(a, b, args.rtol, args.atol)
    matched = out["matched"]
    print(f"{args.first}: {len(a)} rows; {args.second}: {len(b)} rows; {len(matched)} matched on their keys")
    tasks = sorted(set(a["task"]) | set(b["task"]))
    for task in tasks:
        n_a, n_b = int((a["task"] == task).sum()), int((b["task"] == task).sum())
        rows = matched[matched["task_a"] == task] if "task_a" in matched.columns else matched[matched["task"] == task]
        diff = np.abs(rows["value_a"].to_numpy(float) - rows["value_b"].to_numpy(float))
        worst = np.nanmax(diff) if len(diff) and not np.isnan(diff).all() else 0.0
        print(f"  {task:40s} {n_a:5d} / {n_b:5d} rows, max |value difference| {worst:.3g}")
    failed = False
    for what in ("only in first", "only in second", "different value or n"):
        rows = out[what]
        if len(rows):
            failed = failed or not (what == "only in second" and args.allow_new)
            print(f"{len(rows)} rows {what}:")
            shown = rows[["_key", "value_a", "value_b", "n_a", "n_b"]] if "value_a" in rows.columns else rows
            print(shown.rename(columns={"_key": "key"}).drop(columns=["_key"], errors="ignore").head(20)
                  .to_string(index=False))
    if len(out["different fingerprint"]):
        print(f"note: {len(out['different fingerprint'])} matched rows record another checkpoint fingerprint")
    same = "SAME" if not len(out["only in second"]) else "SAME for every row of the first, with new rows in the second"
    print("DIFFERENT" if failed else f"{same} (values within rtol={args.rtol}, atol={args.atol})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
