"""Behavioral alignment: how well a model's word surprisal predicts human reading times.

Three scores (DESIGN.md §5 "Reading times"):

* ``delta_loglik`` / ``delta_r2`` (the headline): what surprisal adds, on held-out words, to an OLS regression of
  reading time on the :data:`BASELINE` predictors: word length, log unigram frequency (in the training corpus),
  position in the story, the previous word's surprisal (spillover), and the two a token counter wins with: the
  word's number of tokens under the model's tokenizer and its attached punctuation. A small model's surprisal is
  mostly its token count, and token count and punctuation predict reading time by themselves (longer, rarer words
  and clause ends are read slowly), so only a gain over them shows that the model's *predictions* matter. The gain
  is cross-validated (:func:`heldout_gain`), with a bootstrap interval over words, so a useless predictor scores
  about 0 and can score below it.
* ``pearson_r``: Pearson r between surprisal and mean reading time over all scored words (the authors' raw score),
  with a percentile bootstrap confidence interval over words.
* ``brainscore``: Brain-Score's Futrell2018 variant: the first word of each sentence is dropped, and ``|r|`` is
  divided by the data set's ceiling (none known: no such score). Brain-Score's published ceiling for Natural
  Stories is 0.858 (Spearman-Brown corrected split-half correlation of per-subject times); :func:`reliability`
  estimates the same quantity from per-word mean, sd and number of readers.

Words whose reading time is NaN are context: the model reads them, nothing scores them.

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
from .surprisal import word_surprisal_and_tokens, words_from_token_logprobs

TASK = "reading_times"
BASELINE = ("length", "log_frequency", "position", "previous_surprisal", "n_tokens", "punctuation")
"""Default baseline predictors of the regression (columns of :func:`predictors`)."""
FOLDS = 10

# a word as counted in a corpus (lower case; inner apostrophes and hyphens kept)
WORD = re.compile(r"[a-z0-9]+(?:['’\-][a-z0-9]+)*")


def surprisal_for(
    model: nn.Module, rts: xr.DataArray, *, stride: int | None = None, batch_size: int = 8
) -> xr.DataArray:
    """Word surprisal (bits) of every word in ``rts``, each story read as one running text; same coords as ``rts``
    plus ``n_tokens``, the word's number of tokens under the model's tokenizer."""
    per_story = [word_surprisal_and_tokens(model, words, seps, stride=stride, batch_size=batch_size)
                 for _, words, seps in story_words(rts)]
    return _as_surprisal(rts, per_story)


def surprisal_from_tokens(
    rts: xr.DataArray, tokens: Mapping[object, tuple[Sequence[float], Sequence[tuple[int, int]]]]
) -> xr.DataArray:
    """Word surprisal of ``rts`` from another model's output: ``tokens`` maps each story id to the (natural-log)
    log-probs of its tokens and their character offsets in the story's text (``surprisal.words_from_token_logprobs``);
    same result shape as :func:`surprisal_for`, ready for :func:`score`."""
    missing = [getattr(story, "item", lambda: story)() for story, _, _ in story_words(rts) if story not in tokens]
    if missing:
        raise ValueError(f"no token log-probs for story(ies) {missing}; got stories {list(tokens)}")
    return _as_surprisal(rts, [words_from_token_logprobs(words, seps, *tokens[story])
                               for story, words, seps in story_words(rts)])


def story_text(rts: xr.DataArray, story: object) -> str:
    """The text of one story as the model reads it (separators and words joined): the text token offsets index."""
    for label, words, seps in story_words(rts):
        if label == story:
            return "".join(s + w for s, w in zip(seps, words))
    raise ValueError(f"no story {story!r}; the stories are {[label for label, _, _ in story_words(rts)]}")


def _as_surprisal(rts: xr.DataArray, per_story: Sequence[tuple[np.ndarray, np.ndarray]]) -> xr.DataArray:
    bits = np.concatenate([b for b, _ in per_story])
    n_tokens = np.concatenate([c for _, c in per_story])
    out = rts.copy(data=bits).rename("surprisal").assign_attrs(units="bits")
    return out.assign_coords(n_tokens=(rts.dims[0], n_tokens))


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
    """:func:`reliability` of the scored words of ``rts`` (those with a reading time)."""
    scored = np.isfinite(rts.values)
    return reliability(rts.values[scored], rts["sd"].values[scored], rts["n_readers"].values[scored])


def normalize_word(word: str) -> str:
    """Lower case without surrounding punctuation (``"'Admiral"`` -> ``"admiral"``), as counted in a corpus."""
    found = WORD.findall(word.lower())
    return max(found, key=len) if found else word.lower()


def punctuation(word: str) -> int:
    """Characters attached to a word around its core (``"'Stop!'"`` -> 3, ``"don't."`` -> 1, ``"--"`` -> 2)."""
    found = WORD.findall(word.lower())
    return len(word) - (len(max(found, key=len)) if found else 0)


@functools.lru_cache(maxsize=None)
def corpus_word_counts(corpus: str = "english_prose") -> Counter:
    """Word counts of a catalog text corpus (lower-cased words; inner apostrophes and hyphens kept)."""
    counts: Counter = Counter()
    for path in text_files(corpus):
        counts.update(WORD.findall(path.read_text(encoding="utf-8", errors="replace").lower()))
    return counts


def log_frequency(words: Iterable[str], counts: Mapping[str, int]) -> np.ndarray:
    """Natural-log unigram frequency with add-one smoothing, ``log((count + 1) / (total + vocabulary))``."""
    total, vocab = sum(counts.values()), len(counts)
    if not total:
        raise ValueError("the word counts for the frequency predictor are empty")
    return np.array([math.log((counts.get(normalize_word(w), 0) + 1) / (total + vocab)) for w in words])


def predictors(rts: xr.DataArray, surprisal: xr.DataArray, counts: Mapping[str, int]) -> pd.DataFrame:
    """One row per word of ``rts`` (context words too, with rt NaN): reading time, surprisal and the predictors a
    baseline can name: those of :data:`BASELINE` and every further coordinate of ``rts`` (the columns
    ``from_table`` kept).

    ``length`` counts the characters of the word without surrounding punctuation, ``punctuation`` the ones around it;
    ``n_tokens`` comes from the surprisal's coordinate of that name (NaN if it has none); ``previous_surprisal`` is
    the surprisal of the word before (context words included; NaN for a story's first word).
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
        "n_tokens": surprisal["n_tokens"].values if "n_tokens" in surprisal.coords else np.nan,
        "punctuation": [punctuation(w) for w in words],
    })
    df["previous_surprisal"] = df.groupby("story", sort=False)["surprisal"].shift(1)
    for name in rts.coords:
        if name not in df.columns and name != rts.dims[0]:
            df[name] = rts[name].values
    return df


def _complete(frame: pd.DataFrame, baseline: Sequence[str]) -> pd.DataFrame:
    """The rows of ``frame`` with a finite reading time, surprisal and baseline predictor."""
    unknown = [c for c in baseline if c not in frame.columns]
    if unknown:
        raise ValueError(f"baseline predictor(s) {unknown} are not columns of the predictors; choose from "
                         f"{[c for c in frame.columns if c not in ('rt', 'surprisal', 'story', 'word')]}")
    columns = ["rt", "surprisal", *baseline]
    data = frame[columns].apply(pd.to_numeric, errors="coerce").replace([np.inf, -np.inf], np.nan)
    empty = [c for c in baseline if data[c].isna().all()]
    if empty:
        raise ValueError(f"baseline predictor(s) {empty} have no value (n_tokens needs a surprisal with token "
                         "counts: surprisal_for or surprisal_from_tokens)")
    data = data.dropna()
    if len(data) <= len(columns):
        raise ValueError(f"only {len(data)} complete rows for a regression on {len(columns) - 1} predictors")
    return data


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


def distinct(data: pd.DataFrame, baseline: Sequence[str]) -> list[str]:
    """The baseline predictors without exact copies of an earlier one: under the ``bytes`` tokenizer a word's
    ``n_tokens`` is its ``length`` (ASCII words), and an OLS on both has no unique coefficients."""
    kept: list[str] = []
    for name in baseline:
        if not any(data[name].equals(data[other]) for other in kept):
            kept.append(name)
    return kept


def regress(frame: pd.DataFrame, baseline: Sequence[str] = BASELINE) -> Regression:
    """Fit both OLS models (in sample) to the rows of :func:`predictors` where every predictor is finite (a
    predictor that copies an earlier one is left out: :func:`distinct`)."""
    data = _complete(frame, baseline)
    baseline = distinct(data, baseline)
    base = sm.OLS(data["rt"], sm.add_constant(data[list(baseline)])).fit()
    full = sm.OLS(data["rt"], sm.add_constant(data[[*baseline, "surprisal"]])).fit()
    return Regression(base, full)


@dataclass(frozen=True)
class Gain:
    """What surprisal adds to the baseline on held-out words: log-likelihood (nats, summed over words) and R²,
    each with a percentile bootstrap interval over words."""

    delta_loglik: float
    delta_loglik_ci: tuple[float, float]
    delta_r2: float
    delta_r2_ci: tuple[float, float]
    n: int


def _fold_predictions(y: np.ndarray, x: np.ndarray, folds: int) -> tuple[np.ndarray, np.ndarray]:
    """Held-out predictions of an OLS with intercept, and each word's residual variance (that of its fold's
    training fit, maximum likelihood), over ``folds`` contiguous blocks of words."""
    design = np.column_stack([np.ones(len(y)), x])
    pred, var = np.empty(len(y)), np.empty(len(y))
    for test in np.array_split(np.arange(len(y)), folds):
        train = np.ones(len(y), dtype=bool)
        train[test] = False
        coef = np.linalg.lstsq(design[train], y[train], rcond=None)[0]
        var[test] = np.mean((y[train] - design[train] @ coef) ** 2)
        pred[test] = design[test] @ coef
    return pred, var


def heldout_gain(
    frame: pd.DataFrame, baseline: Sequence[str] = BASELINE, *, folds: int = FOLDS, n_boot: int = 1000,
    level: float = 0.95, seed: int = 0,
) -> Gain:
    """Cross-validated gain of adding surprisal to the baseline OLS, on the complete rows of :func:`predictors`.

    The words (in reading order) are cut into ``folds`` contiguous blocks (fewer for fewer than ``2 * folds``
    words: blocks of two); each block is predicted by both models fit
    to the others, scoring each word's Gaussian log-likelihood under its fit's residual variance. ``delta_loglik`` is
    the sum over words of full minus baseline log-likelihood, ``delta_r2`` the held-out R² difference
    ``(SSE_base - SSE_full) / SST``. Intervals: resample words with replacement ``n_boot`` times
    (``np.random.default_rng(seed)``) and take the central ``level`` quantiles.
    """
    data = _complete(frame, baseline)
    baseline = distinct(data, baseline)
    folds = max(2, min(folds, len(data) // 2))
    if len(data) - -(-len(data) // folds) <= len(baseline) + 2:
        raise ValueError(f"{len(data)} complete rows are too few for {folds}-fold regressions on "
                         f"{len(baseline) + 1} predictors")
    y = data["rt"].to_numpy(dtype=float)
    x_base = data[list(baseline)].to_numpy(dtype=float)
    x_full = np.column_stack([x_base, data["surprisal"].to_numpy(dtype=float)])
    (p_base, v_base), (p_full, v_full) = _fold_predictions(y, x_base, folds), _fold_predictions(y, x_full, folds)
    e_base, e_full = (y - p_base) ** 2, (y - p_full) ** 2
    d_ll = 0.5 * (np.log(v_base / v_full) + e_base / v_base - e_full / v_full)
    d_sse, centred = e_base - e_full, (y - y.mean()) ** 2
    idx = np.random.default_rng(seed).integers(0, len(y), size=(n_boot, len(y)))
    boot_ll = d_ll[idx].sum(1)
    boot_r2 = d_sse[idx].sum(1) / ((y[idx] - y[idx].mean(1, keepdims=True)) ** 2).sum(1)
    q = [(1 - level) / 2, (1 + level) / 2]
    return Gain(float(d_ll.sum()), tuple(map(float, np.quantile(boot_ll, q))),
                float(d_sse.sum() / centred.sum()), tuple(map(float, np.quantile(boot_r2, q))), len(y))


def score(
    surprisal: xr.DataArray,
    rts: xr.DataArray,
    *,
    counts: Mapping[str, int],
    ceiling_value: float | None,
    baseline: Sequence[str] = BASELINE,
    n_boot: int = 1000,
) -> list[dict]:
    """The reading-time scores of one model's surprisal, as results-table rows (metric, value, n), on the words with
    a reading time: the held-out gain over ``baseline`` (:func:`heldout_gain`) with its interval, raw Pearson r with
    its interval, and ``brainscore`` = ``|r|`` of the later words over ``ceiling_value`` (no row when None)."""
    s, y = surprisal.values, rts.values
    later = ~rts["first_in_sentence"].values
    r = pearson_r(s, y)
    low, high = bootstrap_ci(s, y, n_boot=n_boot)
    r_later = pearson_r(s[later], y[later])
    gain = heldout_gain(predictors(rts, surprisal, counts), baseline, n_boot=n_boot)
    scored = np.isfinite(s) & np.isfinite(y)
    n_all, n_later = int(scored.sum()), int((scored & later).sum())
    rows = [
        {"metric": "delta_loglik", "value": gain.delta_loglik, "n": gain.n},
        {"metric": "delta_loglik_low", "value": gain.delta_loglik_ci[0], "n": gain.n},
        {"metric": "delta_loglik_high", "value": gain.delta_loglik_ci[1], "n": gain.n},
        {"metric": "delta_r2", "value": gain.delta_r2, "n": gain.n},
        {"metric": "delta_r2_low", "value": gain.delta_r2_ci[0], "n": gain.n},
        {"metric": "delta_r2_high", "value": gain.delta_r2_ci[1], "n": gain.n},
        {"metric": "pearson_r", "value": r, "n": n_all},
        {"metric": "pearson_r_low", "value": low, "n": n_all},
        {"metric": "pearson_r_high", "value": high, "n": n_all},
        {"metric": "pearson_r_later_words", "value": r_later, "n": n_later},
        {"metric": "mean_surprisal", "value": float(np.nanmean(s[np.isfinite(y)])), "n": n_all},
    ]
    if ceiling_value is not None:
        rows.append({"metric": "brainscore", "value": abs(r_later) / ceiling_value, "n": n_later})
    return rows


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
