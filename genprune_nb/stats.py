"""Summary statistics over seeds."""
from __future__ import annotations

import numpy as np
import pandas as pd


def mean_se(df: pd.DataFrame, by: list[str], value: str) -> pd.DataFrame:
    """Mean, standard error (sample sd / sqrt(n); 0 for a single seed) and n of ``value`` per ``by`` group."""
    g = df.groupby(by, sort=True)[value]
    out = g.agg(mean="mean", sd="std", n="count").reset_index()
    out["se"] = (out["sd"] / np.sqrt(out["n"])).fillna(0.0)
    return out.drop(columns="sd")
