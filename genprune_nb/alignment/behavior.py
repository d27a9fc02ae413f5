"""Behavioral alignment: how well a model's word surprisal predicts human reading times.

Three scores (DESIGN.md §5 "Reading times"):

* ``pearson_r``: Pearson r between surprisal and mean reading time over all words (the authors' raw score), with a
  percentile bootstrap confidence interval over words.
* ``brainscore``: Brain-Score's Futrell2018 variant: the first word of each sentence is dropped, and ``|r|`` is
  divided by a ceiling. Brain-Score's published ceiling is 0.858 (Spearman-Brown corrected split-half correlation
  of per-subject times; the ``reading_times`` benchmark's ``ceiling``); our data has per-word mean, sd and n but no
  per-subject times, so :func:`reliability` estimates the same quantity from those.
* ``delta_loglik`` / ``delta_r2``: what surprisal adds to an OLS regression of reading time on word length, log
  unigram frequency (in the training corpus), position in the story and the previous word's surprisal (spillover).

The ``reading_times`` benchmark (``genprune_nb.evals``) scores every kept checkpoint into the study's results table.
"""
from __future__ import annotations

import functools
import math
import re
from collections import Counter
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import statsmodels.api as sm
import torch
import xarray as xr
from torch import nn

from ..data.catalog import text_files
from ..stats import mean_se
from ..study.conditions import condition_order
from ..study.model_refs import ModelRef
from ..study.results import final_rows, select
from .reading_times import story_words
from .surprisal import word_surprisal

TASK = "reading_times"
BASELINE = ("length", "log_frequency", "position", "previous_surprisal")

_WORD = re.compile(r"[a-z0-9]+(?:['’\-][a-z0-9]+)*")


def surprisal_for(
    model: nn.Module, rts: xr.DataArray, *, stride: int | None = None, batch_size: int = 8
) -> xr.DataArray:
    """Word surprisal (bits) of every word in ``rts``, each story read as one running text; same coords as ``rts``."""
    bits = np.concatenate([word_surprisal(model, words, seps, stride=stride, batch_size=batch_size)
                           for _, words, seps in story_words(rts)])
    return rts.copy(data=bits).rename("surprisal").assign_attrs(units="bits")


def surprisals(
    refs: Mapping[str, ModelRef], rts: xr.DataArray, *, device: str | torch.device | None = None,
    stride: int | None = None,
) -> dict[str, xr.DataArray]:
    """:func:`surprisal_for` under each checkpoint of ``refs`` (label -> ref, e.g. one per condition), same labels;
    each model is loaded in turn, so only one sits in memory."""
    return {label: surprisal_for(ref.load_model(device or "cpu"), rts, stride=stride) for label, ref in refs.items()}


def _pairs(x: Sequence[float], y: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"x and y must be 1-D of the same length, got shapes {x.shape} and {y.shape}")
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 3:
        raise ValueError(f"need at least 3 pairs of finite values, got {int(ok.sum())}")
    return x[ok], y[ok]


def pearson_r(x: Sequence[float], y: Sequence[float]) -> float:
    """Pearson correlation over the pairs where both values are finite."""
    x, y = _pairs(x, y)
    return float(np.corrcoef(x, y)[0, 1])


def bootstrap_ci(
    x: Sequence[float], y: Sequence[float], *, n_boot: int = 1000, level: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of Pearson r: resample the finite pairs with replacement ``n_boot`` times
    (indices ``np.random.default_rng(seed).integers(0, n, (n_boot, n))``) and take the central ``level`` quantiles."""
    x, y = _pairs(x, y)
    idx = np.random.default_rng(seed).integers(0, len(x), size=(n_boot, len(x)))
    xs, ys = x[idx], y[idx]
    xs = xs - xs.mean(1, keepdims=True)
    ys = ys - ys.mean(1, keepdims=True)
    r = (xs * ys).sum(1) / np.sqrt((xs**2).sum(1) * (ys**2).sum(1))
    alpha = (1 - level) / 2
    low, high = np.nanquantile(r, [alpha, 1 - alpha])
    return float(low), float(high)


def reliability(mean: Sequence[float], sd: Sequence[float], n: Sequence[float]) -> float:
    """Reliability of per-word mean reading times from their sd and number of readers.

    ``rho = (var(mean) - mean(sd**2 / n)) / var(mean)``: the share of the between-word variance of the observed means
    (``var`` with ddof=1) that is not the sampling noise of a mean (``sd**2 / n``, the squared standard error). It is
    what a Spearman-Brown corrected split-half correlation estimates: halves of n/2 readers correlate at
    ``c = v / (v + 2 e)`` (``v`` true variance, ``e`` mean squared error), and ``2c / (1 + c) = v / (v + e) = rho``.
    """
    mean, sd, n = (np.asarray(a, dtype=float) for a in (mean, sd, n))
    if not (np.isfinite(sd).all() and np.isfinite(n).all() and (n > 0).all()):
        raise ValueError("the ceiling needs a finite sd and a positive number of readers for every word")
    between = mean.var(ddof=1)
    return float((between - np.mean(sd**2 / n)) / between)


def ceiling(rts: xr.DataArray) -> float:
    """:func:`reliability` of the words in ``rts``."""
    return reliability(rts.values, rts["sd"].values, rts["n_readers"].values)


def normalize_word(word: str) -> str:
    """Lower case without surrounding punctuation (``"'Admiral"`` -> ``"admiral"``), as counted in a corpus."""
    found = _WORD.findall(word.lower())
    return max(found, key=len) if found else word.lower()


@functools.lru_cache(maxsize=None)
def corpus_word_counts(corpus: str = "english_prose") -> Counter:
    """Word counts of a catalog text corpus (lower-cased words; inner apostrophes and hyphens kept)."""
    counts: Counter = Counter()
    for path in text_files(corpus):
        counts.update(_WORD.findall(path.read_text(encoding="utf-8", errors="replace").lower()))
    return counts


def log_frequency(words: Iterable[str], counts: Mapping[str, int]) -> np.ndarray:
    """Natural-log unigram frequency with add-one smoothing, ``log((count + 1) / (total + vocabulary))``."""
    total, vocab = sum(counts.values()), len(counts)
    return np.array([math.log((counts.get(normalize_word(w), 0) + 1) / (total + vocab)) for w in words])


def predictors(rts: xr.DataArray, surprisal: xr.DataArray, counts: Mapping[str, int]) -> pd.DataFrame:
    """One row per word: reading time, surprisal and the baseline predictors (:data:`BASELINE`).

    ``length`` counts the characters of the word without surrounding punctuation; ``previous_surprisal`` is NaN for
    a story's first word.
    """
    words = [str(w) for w in rts["word"].values]
    df = pd.DataFrame({
        "story": rts["story"].values,
        "word": words,
        "rt": rts.values,
        "surprisal": surprisal.values,
        "length": [len(normalize_word(w)) for w in words],
        "log_frequency": log_frequency(words, counts),
        "position": rts["position"].values,
    })
    df["previous_surprisal"] = df.groupby("story")["surprisal"].shift(1)
    return df


@dataclass(frozen=True)
class Regression:
    """OLS of reading time on the baseline predictors, and on them plus surprisal, fit to the same words."""

    baseline: sm.regression.linear_model.RegressionResultsWrapper
    full: sm.regression.linear_model.RegressionResultsWrapper

    @property
    def n(self) -> int:
        return int(self.full.nobs)

    @property
    def delta_loglik(self) -> float:
        return float(self.full.llf - self.baseline.llf)

    @property
    def delta_r2(self) -> float:
        return float(self.full.rsquared - self.baseline.rsquared)

    @property
    def lr_pvalue(self) -> float:
        """Likelihood-ratio test of the surprisal coefficient."""
        return float(self.full.compare_lr_test(self.baseline)[1])

    def table(self) -> pd.DataFrame:
        """Coefficients of both models (ms per unit of each predictor) with standard errors, t and p."""
        rows = []
        for model, fit in (("baseline", self.baseline), ("full", self.full)):
            for term in fit.params.index:
                rows.append({"model": model, "term": term, "coef": fit.params[term], "se": fit.bse[term],
                             "t": fit.tvalues[term], "p": fit.pvalues[term]})
        return pd.DataFrame(rows)


def regress(frame: pd.DataFrame, baseline: Sequence[str] = BASELINE) -> Regression:
    """Fit both OLS models to the rows of :func:`predictors` where every predictor is finite."""
    columns = ["rt", "surprisal", *baseline]
    data = frame[columns].replace([np.inf, -np.inf], np.nan).dropna()
    if len(data) <= len(columns):
        raise ValueError(f"only {len(data)} complete rows for a regression on {len(columns) - 1} predictors")
    base = sm.OLS(data["rt"], sm.add_constant(data[list(baseline)])).fit()
    full = sm.OLS(data["rt"], sm.add_constant(data[[*baseline, "surprisal"]])).fit()
    return Regression(base, full)


def score(
    surprisal: xr.DataArray,
    rts: xr.DataArray,
    *,
    counts: Mapping[str, int],
    ceiling_value: float,
    n_boot: int = 1000,
) -> list[dict]:
    """The reading-time scores of one model's surprisal, as results-table rows (metric, value, n); ``brainscore``
    is ``|r|`` of the later words over ``ceiling_value``."""
    later = ~rts["first_in_sentence"].values
    r = pearson_r(surprisal.values, rts.values)
    low, high = bootstrap_ci(surprisal.values, rts.values, n_boot=n_boot)
    r_later = pearson_r(surprisal.values[later], rts.values[later])
    fit = regress(predictors(rts, surprisal, counts))
    n_all, n_later = int(np.isfinite(surprisal.values).sum()), int(np.isfinite(surprisal.values[later]).sum())
    return [
        {"metric": "pearson_r", "value": r, "n": n_all},
        {"metric": "pearson_r_low", "value": low, "n": n_all},
        {"metric": "pearson_r_high", "value": high, "n": n_all},
        {"metric": "pearson_r_later_words", "value": r_later, "n": n_later},
        {"metric": "brainscore", "value": abs(r_later) / ceiling_value, "n": n_later},
        {"metric": "delta_loglik", "value": fit.delta_loglik, "n": fit.n},
        {"metric": "delta_r2", "value": fit.delta_r2, "n": fit.n},
        {"metric": "mean_surprisal", "value": float(np.nanmean(surprisal.values)), "n": n_all},
    ]


def metric_rows(results: pd.DataFrame, metric: str = "pearson_r", task: str = TASK) -> pd.DataFrame:
    """The rows of one reading-time metric (every condition, seed and step), e.g. for Figure 1C; ``task``: a stored
    label, or the task name when one label is stored."""
    df = select(results, task, metric, required=False)
    if df.empty:
        raise ValueError(f"no rows for task {task!r} and metric {metric!r} in the results")
    return df


def final_scores(results: pd.DataFrame, metrics: Sequence[str], task: str = TASK) -> pd.DataFrame:
    """Each seed's last checkpoint, then mean and SE over seeds: one row per condition, (metric, mean/se) columns."""
    df = select(results, task, required=False)
    df = df[df["metric"].isin(metrics)]
    wide = mean_se(final_rows(df), ["condition", "metric"], "value").pivot(index="condition", columns="metric",
                                                                 values=["mean", "se"])
    wide = wide.swaplevel(axis=1).reindex(columns=pd.MultiIndex.from_product([metrics, ["mean", "se"]]))
    return wide.loc[condition_order(wide.index)].rename_axis(index=None, columns=[None, None])


def compare_fits(fits: Mapping[str, Regression]) -> pd.DataFrame:
    """Full-model coefficients (ms per unit) of several fits side by side, with their gain over the baseline."""
    cols = {}
    for label, fit in fits.items():
        coef = fit.full.params.rename({"const": "intercept"})
        gain = pd.Series({"delta_loglik": fit.delta_loglik, "delta_r2": fit.delta_r2, "lr_pvalue": fit.lr_pvalue,
                          "n": fit.n})
        cols[label] = pd.concat([coef, gain])
    return pd.DataFrame(cols)


def compare_regressions(
    surprisals: Mapping[str, xr.DataArray], rts: xr.DataArray, counts: Mapping[str, int] | None = None
) -> pd.DataFrame:
    """:func:`compare_fits` of the :func:`regress` of each model's surprisal (label -> surprisal of the words of
    ``rts``); ``counts`` for the frequency predictor default to the training corpus's (:func:`corpus_word_counts`)."""
    counts = corpus_word_counts() if counts is None else counts
    return compare_fits({label: regress(predictors(rts, s, counts)) for label, s in surprisals.items()})
