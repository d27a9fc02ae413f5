"""The benchmark registry: every evaluation by name, so the CLI, sweeps and notebooks call them alike.

A task is prepared once (data read, prompts tokenized) into an evaluator ``model -> rows``; each row holds
``metric``, ``value``, ``n`` and any extra keys (``subject``, ``paradigm``, ``phenomenon``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from torch import nn

from ..config import Preset, TrainConfig
from . import blimp, hellaswag, mmlu
from .loss import preset_val_loss
from .scorer import BATCH_SIZE

Rows = list[dict[str, Any]]
Evaluator = Callable[[nn.Module], Rows]


@dataclass(frozen=True)
class Settings:
    """What a task is prepared with: ``limit`` items (None = all), sequences per forward, progress bars, and the
    preset of the checkpoints (needed by ``val_loss`` for its shards and sequence length)."""

    limit: int | None = None
    batch_size: int = BATCH_SIZE
    progress: bool = False
    preset: Preset | None = None
    schedule: TrainConfig | None = None  # the schedule the checkpoints trained on (val_loss); default preset.train


@dataclass(frozen=True)
class Task:
    name: str
    description: str
    prepare: Callable[[Settings], Evaluator]


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


def _val_loss(s: Settings) -> Evaluator:
    if s.preset is None:
        raise ValueError("task 'val_loss' needs the checkpoints' preset (its val shards and sequence length)")
    preset = s.preset
    return lambda model: [preset_val_loss(model, preset, schedule=s.schedule, limit=s.limit)]


TASKS: dict[str, Task] = {t.name: t for t in [
    Task("hellaswag", "HellaSwag val, authors'/llm.c: acc, acc_norm per token", _hellaswag("authors")),
    Task("hellaswag_lmeval", "HellaSwag val, lm-eval preprocessing: acc, acc_norm per character",
         _hellaswag("lm-eval")),
    Task("mmlu", "MMLU test, authors' 0-shot cloze: acc, acc_norm per token; overall and per subject",
         _mmlu("cloze", 0)),
    Task("mmlu_lmeval_0shot", "MMLU test, lm-eval letters A-D, 0-shot: acc", _mmlu("letters", 0)),
    Task("mmlu_lmeval_5shot", "MMLU test, lm-eval letters A-D, 5-shot from dev: acc", _mmlu("letters", 5)),
    Task("blimp", "BLiMP: acc overall (mean over paradigms), per phenomenon, per paradigm", _blimp),
    Task("val_loss", "loss on the preset's val shards (train.val_tokens tokens; limit = sequences)", _val_loss),
]}
DEFAULT_TASKS = ("hellaswag", "mmlu", "blimp")


def get_task(name: str) -> Task:
    try:
        return TASKS[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; choose from {', '.join(TASKS)}") from None


def prepare(name: str, settings: Settings = Settings()) -> Evaluator:
    """Read and tokenize task ``name``'s data once; the evaluator then scores any number of models."""
    return get_task(name).prepare(settings)


def run_task(
    name: str,
    model: nn.Module,
    *,
    limit: int | None = None,
    batch_size: int = BATCH_SIZE,
    progress: bool = False,
    preset: Preset | None = None,
    schedule: TrainConfig | None = None,
) -> Rows:
    """Evaluate one model on task ``name``; rows of metric, value, n (+ subject / paradigm / phenomenon)."""
    return prepare(name, Settings(limit, batch_size, progress, preset, schedule))(model)

