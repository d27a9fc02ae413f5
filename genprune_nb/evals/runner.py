"""One way to score checkpoints into the results table: :func:`evaluate` (a checkpoint, ModelRefs or a whole study)
on any registered benchmarks, through :func:`sweep` (the loop over checkpoints, resumable)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import pandas as pd
import torch

from ..launch import default_device
from ..model.gpt import GPT
from ..progress import tqdm
from ..study.layout import StudyLayout, inner_run_identity
from ..study.model_refs import ModelRef
from ..study.results import FINGERPRINT, REVISION, ResultsTable, order_columns
from ..training.checkpoint import Checkpoint, resolve_checkpoint
from .registry import Settings, get_benchmark
from .scorer import BATCH_SIZE

Target = str | Path | StudyLayout | Sequence[ModelRef]


def checkpoint_ref(path: str | Path) -> ModelRef:
    """A checkpoint (or a run's latest) as a ModelRef.

    Inside a study (``inner/<condition>/seed_<k>/checkpoints/step_*``) condition and seed come from the path;
    elsewhere the condition is the run directory's name and the seed that of the schedule it trained on.
    """
    ckpt = resolve_checkpoint(path)
    run_dir = ckpt.path.parent.parent
    condition, seed = inner_run_identity(run_dir) or (run_dir.name, ckpt.schedule().seed)
    return ModelRef(condition, seed, ckpt.step, ckpt.state().get("tokens", 0), ckpt.path, ckpt.fingerprint())


def sweep(
    refs: Iterable[ModelRef],
    task: str,
    evaluate: Callable[[GPT], Iterable[dict[str, Any]]],
    table: ResultsTable | None,
    *,
    device: str | torch.device = "cpu",
    progress: bool = True,
    revision: int = 1,
) -> pd.DataFrame:
    """Score every checkpoint in ``refs`` not yet in ``table`` for ``task`` at benchmark ``revision``; return the
    whole table (no table: the new rows only).

    ``evaluate(model)`` returns rows with at least ``metric``, ``value`` and ``n`` (and any extra keys);
    the checkpoint's ids and ``task`` are added here. Results are saved after every checkpoint.
    """
    todo = [r for r in refs if table is None or not table.has(r, task, revision)]
    new = []
    for ref in tqdm(todo, desc=task, disable=not progress):
        model = ref.load_model(device)
        scored = {**ref.ids(), "task": task, FINGERPRINT: ref.checkpoint_fingerprint(), REVISION: revision}
        rows = [{**scored, **row} for row in evaluate(model)]
        if table is not None:
            table.add(rows)
        new += rows
        del model
    return table.load() if table is not None else order_columns(pd.DataFrame(new))


def _refs_and_table(target: Target, table: ResultsTable | None, conditions: Sequence[str] | None,
                    final_only: bool) -> tuple[list[ModelRef], ResultsTable | None, bool]:
    """The checkpoints of ``target``, the table their rows go to, and whether ``target`` is a lone checkpoint."""
    if isinstance(target, (str, Path)) and (Path(target) / "inner").is_dir():
        target = StudyLayout(target)
    if isinstance(target, StudyLayout):
        refs = target.model_refs(list(conditions) if conditions is not None else None, final_only)
        if not refs:
            raise FileNotFoundError(f"no inner-loop checkpoints under {target.root / 'inner'}: run the inner loop "
                                    "first (genprune inner, or notebook 02)")
        return refs, target.results if table is None else table, False
    if isinstance(target, (str, Path)):
        return [checkpoint_ref(target)], table, True
    return list(target), table, False


def evaluate(
    target: Target,
    benchmarks: str | Sequence[str],
    *,
    limit: int | None = None,
    sizes: Mapping[str, Any] | None = None,
    table: ResultsTable | str | Path | None = None,
    device: str | torch.device | None = None,
    batch_size: int = BATCH_SIZE,
    conditions: Sequence[str] | None = None,
    final_only: bool = False,
    options: Mapping[str, Any] | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Score ``target`` on ``benchmarks`` (registered names) into a results table.

    ``target``: a study (``StudyLayout`` or its root: every kept inner-loop checkpoint, or the ``final_only`` ones of
    ``conditions``; rows go to its ``results.csv``), a list of ``ModelRef`` (rows go to ``table``), or one checkpoint
    / run directory (its rows are returned, and added to ``table`` if one is given). Otherwise returns the whole table.

    ``limit`` and ``sizes`` (e.g. ``stories``, ``max_words``, ``n_sentences``; see ``registry.preset_sizes``) make a
    quick run, stored under its own task label; a ``limit`` given here overrides the one in ``sizes``. ``options``
    go to every benchmark (``stride``, ``n_boot``, ``protocol``...); those that change a benchmark's numbers away
    from their default also go into its label (``Benchmark.labelled_options``).
    What the table already holds for the same checkpoint fingerprint, label and benchmark revision is skipped, so an
    interrupted run resumes, and a benchmark's data is read only if some checkpoint still needs it. ``val_loss`` uses the first
    checkpoint's preset and schedule.
    """
    table = ResultsTable(table) if isinstance(table, (str, Path)) else table
    refs, table, lone = _refs_and_table(target, table, conditions, final_only)
    if table is None and not lone:
        raise ValueError("evaluating a list of ModelRefs needs a results table to write to (table=...)")
    names = [benchmarks] if isinstance(benchmarks, str) else list(benchmarks)
    chosen = [get_benchmark(name) for name in names]  # unknown names fail before any work
    sizes = {**(sizes or {}), **({"limit": limit} if limit is not None else {})}  # a given limit wins
    device = device or default_device()
    new = []
    for benchmark in chosen:
        label = benchmark.label(sizes, options)
        # a lone checkpoint is always scored
        todo = refs if lone else [r for r in refs if not table.has(r, label, benchmark.revision)]
        if todo:
            first = Checkpoint(Path(refs[0].path))
            settings = Settings(sizes, batch_size, False, first.preset(), options or {}, first.schedule())
            new.append(sweep(todo, label, benchmark.prepare(settings), None if lone else table, device=device,
                             progress=progress, revision=benchmark.revision))
    if not lone:
        return table.load()
    rows = order_columns(pd.concat(new, ignore_index=True)) if new else pd.DataFrame()
    if table is not None and not rows.empty:
        table.add(rows)
    return rows
