"""Benchmarks (DESIGN.md §5): validation loss, HellaSwag, MMLU and BLiMP, over checkpoints and conditions.

    run_task("hellaswag", model, limit=100)                            one model -> rows of metric / value / n
    evaluate_checkpoint("runs/tiny/inner/Connectome/seed_0", "mmlu")   one checkpoint -> DataFrame
    evaluate_study("runs/tiny", ["hellaswag", "mmlu", "blimp"])        every checkpoint -> runs/tiny/results.csv

Modules: ``scorer`` (the log-likelihood engine), ``multiple_choice`` (acc / acc_norm), ``hellaswag``, ``mmlu``,
``blimp``, ``loss``, ``tasks`` (the registry), ``sweep``, ``report`` (tables, curves, tests; for notebook 03).
"""
from ..study.results import base_task, task_label
from .datafile import DataFormatError
from .scorer import Request, Score, score
from .sweep import evaluate_checkpoint, evaluate_study
from .tasks import DEFAULT_TASKS, TASKS, prepare, run_task

__all__ = ["DEFAULT_TASKS", "TASKS", "DataFormatError", "Request", "Score", "base_task", "evaluate_checkpoint",
           "evaluate_study", "prepare", "run_task", "score", "task_label"]
