"""Summary statistics over seeds."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy.stats import t as student_t


def mean_se(df: pd.DataFrame, by: list[str], value: str) -> pd.DataFrame:
    """Mean, standard error (sample sd / sqrt(n); 0 for a single seed) and n of ``value`` per ``by`` group."""
    g = df.groupby(by, sort=True)[value]
    out = g.agg(mean="mean", sd="std", n="count").reset_index()
    out["se"] = (out["sd"] / np.sqrt(out["n"])).fillna(0.0)
    return out.drop(columns="sd")


def mean_ci(df: pd.DataFrame, by: list[str], value: str, level: float = 0.95) -> pd.DataFrame:
    """``mean_se`` plus the two-sided ``level`` t-interval of the mean: mean ± t(1 - (1 - level) / 2, n - 1) x se,
    as columns ``low`` and ``high`` (NaN for a single value, which has no spread to estimate)."""
    if not 0 < level < 1:
        raise ValueError(f"confidence level must lie in (0, 1), got {level!r}")
    out = mean_se(df, by, value)
    n = out["n"].to_numpy()
    t = np.where(n > 1, student_t.ppf(0.5 + level / 2, np.maximum(n - 1, 1)), np.nan)
    out["low"], out["high"] = out["mean"] - t * out["se"], out["mean"] + t * out["se"]
    return out


def bits_per_byte(nats_per_token, bytes_per_token: float):
    """A loss in nats per token as bits per byte of text: ``loss / (ln 2 x bytes_per_token)`` (scalars or arrays)."""
    if not bytes_per_token > 0:
        raise ValueError(f"bytes_per_token must be positive, got {bytes_per_token!r}")
    return nats_per_token / (math.log(2) * bytes_per_token)


def binary_entropy(p: float) -> float:
    """H2(p) in bits: the entropy of a yes/no event of probability ``p`` (0 at p = 0 or 1)."""
    return 0.0 if p <= 0 or p >= 1 else -(p * math.log2(p) + (1 - p) * math.log2(1 - p))
