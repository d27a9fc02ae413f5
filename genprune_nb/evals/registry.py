"""The benchmark registry: every evaluation by name, with what the rest of the package needs to know about it.

A :class:`Benchmark` is data + metric + ceiling (Brain-Score's sense; lm-eval's task owns its metrics likewise):
``prepare(settings)`` reads its data once into an evaluator ``model -> rows`` (each row ``metric``, ``value``, ``n``
and any extra keys such as ``subject`` or ``layer``); ``metrics`` lists what it writes, ``headline`` the one metric
that stands for it, ``chance`` and ``ceiling`` the floor and roof of that metric where they exist.

Adding a benchmark is one file: a module in :mod:`genprune_nb.evals.benchmarks` that calls :func:`register` at
import. The registry imports every module of that package the first time it is asked for a benchmark
(``pkgutil``), so nothing else has to list it. Code elsewhere may also register one (e.g. a reading-time table
through :func:`genprune_nb.evals.benchmarks.reading_times.reading_time_table`).
"""
from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

from torch import nn

from ..config import Preset, TrainConfig
from ..study.results import task_label
from .datafile import LIMIT_RULES, LimitRule
from .scorer import BATCH_SIZE

Rows = list[dict[str, Any]]
Evaluator = Callable[[nn.Module], Rows]


@dataclass(frozen=True)
class Settings:
    """What a benchmark is prepared with: its quick-run ``sizes`` (``limit`` items, ``stories``, ``max_words``,
    ``n_sentences``...; None = everything), sequences per forward, progress bars, the checkpoints' preset (``val_loss``
    needs its shards and sequence length) and free ``options`` a benchmark may read (``stride``, ``n_boot``...)."""

    sizes: Mapping[str, Any] = field(default_factory=dict)
    batch_size: int = BATCH_SIZE
    progress: bool = False
    preset: Preset | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    schedule: TrainConfig | None = None  # the schedule the checkpoints trained on (val_loss); default preset.train

    @property
    def limit(self) -> int | None:
        return self.sizes.get("limit")


@dataclass(frozen=True)
class Benchmark:
    """One registered evaluation. ``sizes`` maps each quick-run size it reads (a field of the preset's ``eval``
    section) to its key in the stored task label (None: written bare, as ``hellaswag@50``; at most one such).
    ``limit_rule`` says how a ``limit`` picks items of a benchmark split in subsets (``datafile``: ``round_robin``
    for the authors' and DESIGN.md tasks, ``per_subset`` for lm-eval's); None where ``limit`` is no item count.
    ``labelled_options`` maps each ``Settings.options`` entry that changes its numbers to its default: any other
    value is written into the label (``brain_encoding@protocol=standardized``), so rows of two settings never mix.
    ``revision`` is raised by every change that alters its numbers; stored rows of an older revision are rescored
    (``ResultsTable.has``), never mixed with new ones."""

    name: str
    description: str
    prepare: Callable[[Settings], Evaluator]
    metrics: tuple[str, ...]
    headline: str
    chance: float | None = None
    ceiling: float | None = None
    sizes: Mapping[str, str | None] = field(default_factory=lambda: {"limit": None})
    limit_rule: LimitRule | None = None
    labelled_options: Mapping[str, Any] = field(default_factory=dict)
    revision: int = 1

    def __post_init__(self) -> None:
        if self.limit_rule is not None and self.limit_rule not in LIMIT_RULES:
            raise ValueError(f"benchmark {self.name!r}: unknown limit_rule {self.limit_rule!r}; use one of "
                             f"{', '.join(LIMIT_RULES)} or None")

    def label(self, sizes: Mapping[str, Any] | None = None, options: Mapping[str, Any] | None = None) -> str:
        """The task label its rows are stored under for these quick-run sizes and options (only the sizes it reads
        and the options in ``labelled_options`` that differ from their default count)."""
        sizes, options = sizes or {}, options or {}
        bare = next((sizes.get(s) for s, key in self.sizes.items() if key is None), None)
        keyed = {key: sizes.get(s) for s, key in self.sizes.items() if key is not None}
        keyed.update({name: options[name] for name, default in self.labelled_options.items()
                      if options.get(name, default) != default})
        return task_label(self.name, bare, **keyed)


_REGISTRY: dict[str, Benchmark] = {}
_discovered = False


def register(benchmark: Benchmark) -> Benchmark:
    """Add ``benchmark`` to the registry (a second one of the same name is refused)."""
    if benchmark.name in _REGISTRY and _REGISTRY[benchmark.name] is not benchmark:
        raise ValueError(f"a benchmark named {benchmark.name!r} is already registered")
    if benchmark.headline not in benchmark.metrics:
        raise ValueError(f"benchmark {benchmark.name!r}: headline {benchmark.headline!r} is not one of its metrics "
                         f"{list(benchmark.metrics)}")
    _REGISTRY[benchmark.name] = benchmark
    return benchmark


def unregister(name: str) -> Benchmark:
    """Remove benchmark ``name`` (e.g. a table registered in a notebook, before registering it again)."""
    _discover()
    try:
        return _REGISTRY.pop(name)
    except KeyError:
        raise ValueError(f"unknown benchmark {name!r}; choose from {', '.join(_REGISTRY)}") from None


def _discover() -> None:
    """Import every module of the ``benchmarks`` package once; each registers what it defines."""
    global _discovered
    if not _discovered:
        _discovered = True
        from . import benchmarks as package

        for module in pkgutil.iter_modules(package.__path__):
            importlib.import_module(f"{package.__name__}.{module.name}")


def all_benchmarks() -> dict[str, Benchmark]:
    """Every registered benchmark by name, in registration order."""
    _discover()
    return dict(_REGISTRY)


def get_benchmark(name: str) -> Benchmark:
    _discover()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown benchmark {name!r}; choose from {', '.join(_REGISTRY)}") from None


def size_names() -> list[str]:
    """Every quick-run size some benchmark reads (each a field of the preset's ``eval`` section)."""
    return list(dict.fromkeys(s for b in all_benchmarks().values() for s in b.sizes))


def preset_sizes(preset: Preset, **given: Any) -> dict[str, Any]:
    """The quick-run sizes the notebooks use: each given value, else the preset's ``eval`` budget (None: all)."""
    return {name: preset.eval.pick(name, given.get(name)) for name in size_names()}


def labels(names: Iterable[str], sizes: Mapping[str, Any] | None = None,
           options: Mapping[str, Any] | None = None) -> list[str]:
    """The stored task label of each benchmark in ``names`` for these sizes and options."""
    return [get_benchmark(n).label(sizes, options) for n in names]


def prepare(name: str, settings: Settings = Settings()) -> Evaluator:
    """Read benchmark ``name``'s data once; the evaluator then scores any number of models."""
    return get_benchmark(name).prepare(settings)


def run_task(
    name: str,
    model: nn.Module,
    *,
    limit: int | None = None,
    batch_size: int = BATCH_SIZE,
    progress: bool = False,
    preset: Preset | None = None,
    schedule: TrainConfig | None = None,
    **sizes: Any,
) -> Rows:
    """Evaluate one model on benchmark ``name``; rows of metric, value, n (+ subject / paradigm / layer ...)."""
    return prepare(name, Settings({"limit": limit, **sizes}, batch_size, progress, preset, schedule=schedule))(model)
