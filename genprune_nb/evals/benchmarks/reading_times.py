"""Reading times as benchmarks: word surprisal against human reading times (DESIGN.md §5 "Reading times").

The headline is ``delta_loglik``: what surprisal adds, on held-out words, to a regression of reading time on
baseline predictors that include the word's token count and attached punctuation (``alignment.behavior``), so a
model that only counts tokens scores about 0; the authors' raw Pearson r is kept as ``pearson_r``.

``reading_times`` is Natural Stories (Futrell et al. 2018); :func:`reading_time_table` registers one more benchmark
from any table of words and reading times (through ``alignment.reading_times.from_table``). Options read from
``Settings.options``: ``stride`` (tokens between sliding windows), ``n_boot`` (bootstrap resamples), ``counts``
(word counts for the frequency predictor; default the ``english_prose`` training corpus).
"""
from __future__ import annotations

from typing import Any, Callable, Literal, Sequence

import pandas as pd
import xarray as xr

from ...alignment import behavior
from ...alignment.reading_times import from_table, natural_stories
from ..registry import Benchmark, Evaluator, Settings, register

HEADLINE = "delta_loglik"
METRICS = ("delta_loglik", "delta_loglik_low", "delta_loglik_high", "delta_r2", "delta_r2_low", "delta_r2_high",
           "pearson_r", "pearson_r_low", "pearson_r_high", "pearson_r_later_words", "mean_surprisal", "brainscore")
BRAINSCORE_CEILING = 0.858  # brainscore_language/benchmarks/futrell2018 (split-half over subjects, Spearman-Brown)


def _prepare(load: Callable[[Settings], xr.DataArray], ceiling: float | Literal["estimate"] | None,
             baseline: Sequence[str]) -> Callable[[Settings], Evaluator]:
    def prepare(s: Settings) -> Evaluator:
        rts = load(s)
        roof = behavior.ceiling(rts) if ceiling == "estimate" else ceiling
        counts = s.options.get("counts") or behavior.corpus_word_counts()
        stride, n_boot = s.options.get("stride"), s.options.get("n_boot", 1000)

        def evaluate(model):
            surprisal = behavior.surprisal_for(model, rts, stride=stride)
            return behavior.score(surprisal, rts, counts=counts, ceiling_value=roof, baseline=baseline,
                                  n_boot=n_boot)
        return evaluate
    return prepare


def reading_time_table(name: str, table: pd.DataFrame, *, description: str = "",
                       ceiling: float | Literal["estimate"] | None = None,
                       baseline: Sequence[str] = behavior.BASELINE, **columns: Any) -> Benchmark:
    """Register benchmark ``name`` on a reading-time table (``columns`` name its columns, see ``from_table``).

    ``ceiling``: this data set's ceiling, which divides ``brainscore``; ``"estimate"``: the reliability of its mean
    times from its sd and n_readers (``behavior.ceiling``); None (unknown): no ``brainscore`` row. ``baseline``
    names the regression's baseline predictors (``behavior.predictors`` columns, including columns kept with
    ``keep=[...]``).
    """
    rts = from_table(table, **columns)
    known = None if ceiling == "estimate" else ceiling
    return register(Benchmark(name, description or f"reading times of table {name!r}: gain of surprisal over a "
                              "token-count baseline, and raw r", _prepare(lambda s: rts, ceiling, tuple(baseline)),
                              METRICS, HEADLINE, ceiling=known, sizes={}))


register(Benchmark(
    "reading_times", "Natural Stories self-paced reading: held-out gain of surprisal over a baseline with token "
    "count and punctuation (headline), raw Pearson r, Brain-Score's |r|/ceiling",
    _prepare(lambda s: natural_stories(s.sizes.get("stories"), s.sizes.get("max_words")), BRAINSCORE_CEILING,
             behavior.BASELINE),
    METRICS, HEADLINE, ceiling=BRAINSCORE_CEILING, sizes={"stories": "stories", "max_words": "words"},
    revision=2))  # 2: token count and punctuation in the baseline, held-out gains
