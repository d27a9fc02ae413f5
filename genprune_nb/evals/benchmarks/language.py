"""Language-model benchmarks scored from next-token log-probabilities: HellaSwag, MMLU, BLiMP (DESIGN.md §5)."""
from __future__ import annotations

from typing import Callable

from .. import blimp, hellaswag, mmlu
from ..registry import Benchmark, Evaluator, Settings, register

CHOICE_OF_FOUR = 0.25  # HellaSwag endings, MMLU answers


def _hellaswag(style: hellaswag.Style) -> Callable[[Settings], Evaluator]:
    def prepare(s: Settings) -> Evaluator:
        qs = [hellaswag.question(item, style) for item in hellaswag.load(limit=s.limit)]
        return lambda model: hellaswag.evaluate(model, qs, style, batch_size=s.batch_size, progress=s.progress)
    return prepare


def _mmlu(fmt: mmlu.Format, shots: int) -> Callable[[Settings], Evaluator]:
    def prepare(s: Settings) -> Evaluator:
        qs = mmlu.questions(fmt, shots, limit=s.limit)
        return lambda model: mmlu.evaluate(model, qs, fmt, batch_size=s.batch_size, progress=s.progress)
    return prepare


def _blimp(s: Settings) -> Evaluator:
    ps = blimp.pairs(limit=s.limit)
    return lambda model: blimp.evaluate(model, ps, batch_size=s.batch_size, progress=s.progress)


for benchmark in [
    Benchmark("hellaswag", "HellaSwag val, authors'/llm.c: acc, acc_norm per token", _hellaswag("authors"),
              ("acc", "acc_norm"), "acc_norm", CHOICE_OF_FOUR),
    Benchmark("hellaswag_lmeval", "HellaSwag val, lm-eval preprocessing: acc, acc_norm per character",
              _hellaswag("lm-eval"), ("acc", "acc_norm"), "acc_norm", CHOICE_OF_FOUR),
    Benchmark("mmlu", "MMLU test, authors' 0-shot cloze: acc, acc_norm per token; overall and per subject",
              _mmlu("cloze", 0), ("acc", "acc_norm"), "acc", CHOICE_OF_FOUR),
    Benchmark("mmlu_lmeval_0shot", "MMLU test, lm-eval letters A-D, 0-shot: acc", _mmlu("letters", 0), ("acc",),
              "acc", CHOICE_OF_FOUR),
    Benchmark("mmlu_lmeval_5shot", "MMLU test, lm-eval letters A-D, 5-shot from dev: acc", _mmlu("letters", 5),
              ("acc",), "acc", CHOICE_OF_FOUR),
    Benchmark("blimp", "BLiMP: acc overall (mean over paradigms), per phenomenon, per paradigm", _blimp, ("acc",),
              "acc", 0.5),
]:
    register(benchmark)
