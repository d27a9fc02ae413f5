"""Benchmarks (DESIGN.md §5): every evaluation is a registered benchmark, scored by one ``evaluate``.

    evaluate("runs/tiny", ["hellaswag", "reading_times"])          every kept checkpoint -> runs/tiny/results.csv
    evaluate("runs/tiny/inner/Connectome/seed_0", "mmlu", limit=50) one checkpoint (its latest) -> rows
    evaluate(refs, ["brain_encoding"], sizes={"n_sentences": 40}, table=study.results)
    run_task("hellaswag", model, limit=100)                         one model -> rows of metric / value / n

Modules: ``registry`` (the benchmarks: data, metrics, headline, chance, ceiling, quick-run label), ``benchmarks/``
(one module per family, each registers itself: a new benchmark is one file there), ``runner`` (``evaluate`` and
``sweep``: the loop over checkpoints into the results table), ``scorer`` (the log-likelihood engine),
``multiple_choice`` (acc / acc_norm), ``hellaswag``, ``mmlu``, ``blimp``, ``loss``, ``datafile``.
"""
from ..study.results import base_task, task_label
from .datafile import DataFormatError
from .runner import checkpoint_ref, evaluate, sweep
from .registry import (Benchmark, Settings, all_benchmarks, get_benchmark, labels, prepare, preset_sizes, register,
                       run_task)
from .scorer import Request, Score, score

DEFAULT_TASKS = ("hellaswag", "mmlu", "blimp")

__all__ = ["Benchmark", "DEFAULT_TASKS", "DataFormatError", "Request", "Score", "Settings", "all_benchmarks",
           "base_task", "checkpoint_ref", "evaluate", "get_benchmark", "labels", "prepare", "preset_sizes",
           "register", "run_task", "score", "sweep", "task_label"]
