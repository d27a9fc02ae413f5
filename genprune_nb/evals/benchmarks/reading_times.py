"""Reading times as benchmarks: word surprisal against human reading times (DESIGN.md §5 "Reading times").

``reading_times`` is Natural Stories (Futrell et al. 2018); :func:`reading_time_table` registers one more benchmark
from any table of words and reading times (through ``alignment.reading_times.from_table``). Options read from
``Settings.options``: ``stride`` (tokens between sliding windows), ``n_boot`` (bootstrap resamples), ``counts``
(word counts for the frequency predictor; default the ``english_prose`` training corpus).
"""
from __future__ import annotations

from typing import Any, Callable

import pandas as pd
import xarray as xr

from ...alignment import behavior
from ...alignment.reading_times import from_table, natural_stories
from ..registry import Benchmark, Evaluator, Settings, register

METRICS = ("pearson_r", "pearson_r_low", "pearson_r_high", "pearson_r_later_words", "brainscore", "delta_loglik",
           "delta_r2", "mean_surprisal")
BRAINSCORE_CEILING = 0.858  # brainscore_language/benchmarks/futrell2018 (split-half over subjects, Spearman-Brown)


def _prepare(load: Callable[[Settings], xr.DataArray], ceiling: float | None) -> Callable[[Settings], Evaluator]:
    def prepare(s: Settings) -> Evaluator:
        rts = load(s)
        roof = behavior.ceiling(rts) if ceiling is None else ceiling
        counts = s.options.get("counts") or behavior.corpus_word_counts()
        stride, n_boot = s.options.get("stride"), s.options.get("n_boot", 1000)

        def evaluate(model):
            surprisal = behavior.surprisal_for(model, rts, stride=stride)
            return behavior.score(surprisal, rts, counts=counts, ceiling_value=roof, n_boot=n_boot)
        return evaluate
    return prepare


def reading_time_table(name: str, table: pd.DataFrame, *, description: str = "", ceiling: float | None = None,
                       **columns: Any) -> Benchmark:
    """Register benchmark ``name`` on a reading-time table (``columns`` name its columns, see ``from_table``).

    ``ceiling`` divides ``brainscore``; None estimates it from the table's sd and n_readers (``behavior.ceiling``).
    """
    rts = from_table(table, **columns)
    return register(Benchmark(name, description or f"reading times of table {name!r}: surprisal vs mean time",
                              _prepare(lambda s: rts, ceiling), METRICS, "pearson_r", ceiling=ceiling, sizes={}))


register(Benchmark(
    "reading_times", "Natural Stories self-paced reading: Pearson r, Brain-Score's |r|/ceiling, regression gains",
    _prepare(lambda s: natural_stories(s.sizes.get("stories"), s.sizes.get("max_words")), BRAINSCORE_CEILING),
    METRICS, "pearson_r", ceiling=BRAINSCORE_CEILING, sizes={"stories": "stories", "max_words": "words"}))
