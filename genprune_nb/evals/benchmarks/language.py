"""Language-model benchmarks scored from next-token log-probabilities: HellaSwag, MMLU, BLiMP (DESIGN.md §5).

Each task follows one convention: the authors' code / llm.c (``hellaswag``, ``mmlu``), lm-eval 0.4 (``*_lmeval*``)
or DESIGN.md / BabyLM (``blimp``). Its ``limit_rule`` follows the same source: lm-eval's tasks take the first N items
of each subject / paradigm, the others N items in all, round-robin (``datafile``). The data are read once when a task
is prepared; its requests are encoded by the tokenizer of the model being scored, once per tokenizer
(``scorer.per_tokenizer``).
"""
from __future__ import annotations

from typing import Callable

from .. import blimp, hellaswag, mmlu
from ..datafile import LimitRule, describe_limit
from ..registry import Benchmark, Evaluator, Settings, register
from ..scorer import per_tokenizer

CHOICE_OF_FOUR = 0.25  # HellaSwag endings, MMLU answers
Prepare = Callable[[Settings, LimitRule], Evaluator]


def _hellaswag(style: hellaswag.Style) -> Prepare:
    def prepare(s: Settings, rule: LimitRule) -> Evaluator:  # one set: every rule takes its first N items
        items = hellaswag.load(limit=s.limit)
        qs = per_tokenizer(lambda tokenizer: [hellaswag.question(item, style, tokenizer) for item in items])
        return lambda model: hellaswag.evaluate(model, qs(model), style, batch_size=s.batch_size,
                                                progress=s.progress)
    return prepare


def _mmlu(fmt: mmlu.Format, shots: int) -> Prepare:
    def prepare(s: Settings, rule: LimitRule) -> Evaluator:
        selected = mmlu.select(shots, limit=s.limit, rule=rule)
        qs = per_tokenizer(lambda tokenizer: mmlu.questions_of(selected, fmt, tokenizer))
        return lambda model: mmlu.evaluate(model, qs(model), fmt, batch_size=s.batch_size, progress=s.progress)
    return prepare


def _blimp(convention: blimp.Convention) -> Prepare:
    def prepare(s: Settings, rule: LimitRule) -> Evaluator:
        ps = blimp.pairs(limit=s.limit, rule=rule)
        encoded = per_tokenizer(lambda tokenizer: blimp.requests(ps, convention, tokenizer))
        return lambda model: blimp.evaluate(model, ps, convention, batch_size=s.batch_size, progress=s.progress,
                                            encoded=encoded(model))
    return prepare


def _benchmark(name: str, description: str, prepare: Prepare, metrics: tuple[str, ...], headline: str,
               chance: float, rule: LimitRule, subset: str | None, revision: int = 1) -> Benchmark:
    """A benchmark whose limit rule is declared once: in its field, its description and its data loader."""
    return Benchmark(name, f"{description}; {describe_limit(rule, subset)}", lambda s: prepare(s, rule), metrics,
                     headline, chance, limit_rule=rule, revision=revision)


# revision 2: lm-eval's truncation (a scored token sees block_size tokens, not block_size - 1); MMLU lm-eval: the
# first N per subject. BLiMP's sentences never reach the block size, so its scores did not change.


for benchmark in [
    _benchmark("hellaswag", "HellaSwag val, authors'/llm.c: acc, acc_norm per token", _hellaswag("authors"),
               ("acc", "acc_norm"), "acc_norm", CHOICE_OF_FOUR, "round_robin", None, 2),
    _benchmark("hellaswag_lmeval", "HellaSwag val, lm-eval preprocessing: acc, acc_norm per character",
               _hellaswag("lm-eval"), ("acc", "acc_norm"), "acc_norm", CHOICE_OF_FOUR, "per_subset", None, 2),
    _benchmark("mmlu", "MMLU test, authors' 0-shot cloze: acc, acc_norm per token; overall and per subject",
               _mmlu("cloze", 0), ("acc", "acc_norm"), "acc", CHOICE_OF_FOUR, "round_robin", "subject", 2),
    _benchmark("mmlu_lmeval_0shot", "MMLU test, lm-eval letters A-D, 0-shot: acc", _mmlu("letters", 0), ("acc",),
               "acc", CHOICE_OF_FOUR, "per_subset", "subject", 2),
    _benchmark("mmlu_lmeval_5shot", "MMLU test, lm-eval letters A-D, 5-shot from dev: acc", _mmlu("letters", 5),
               ("acc",), "acc", CHOICE_OF_FOUR, "per_subset", "subject", 2),
    _benchmark("blimp", "BLiMP, DESIGN.md/BabyLM: sentence after EOT, right iff good > bad; acc overall (mean over "
               "paradigms), per phenomenon, per paradigm", _blimp(blimp.BABYLM), ("acc",), "acc", 0.5,
               "round_robin", "paradigm"),
    _benchmark("blimp_lmeval", "BLiMP, lm-eval: ' ' + sentence after EOT, a tie is right (good >= bad); rows as "
               "blimp", _blimp(blimp.LMEVAL), ("acc",), "acc", 0.5, "per_subset", "paradigm"),
]:
    register(benchmark)
