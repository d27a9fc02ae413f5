"""Benchmarks over checkpoints: one checkpoint (the CLI), or every kept checkpoint of a study into its results table."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import pandas as pd
import torch

from ..launch import default_device
from ..study.layout import StudyLayout, inner_run_identity
from ..study.model_refs import sweep
from ..study.results import FINGERPRINT, order_columns, task_label
from ..training.checkpoint import Checkpoint, resolve_checkpoint
from .scorer import BATCH_SIZE
from .tasks import DEFAULT_TASKS, Settings, prepare, run_task


def checkpoint_ids(ckpt: Checkpoint) -> dict[str, Any]:
    """condition, seed, step, tokens of a checkpoint.

    Inside a study (``inner/<condition>/seed_<k>/checkpoints/step_*``) condition and seed come from the path;
    elsewhere the condition is the run directory's name and the seed that of the schedule it trained on.
    """
    run_dir = ckpt.path.parent.parent
    condition, seed = inner_run_identity(run_dir) or (run_dir.name, ckpt.schedule().seed)
    return {"condition": condition, "seed": seed, "step": ckpt.step, "tokens": ckpt.state().get("tokens", 0)}


def evaluate_checkpoint(
    path: str | Path,
    task: str,
    *,
    limit: int | None = None,
    device: str | torch.device | None = None,
    batch_size: int = BATCH_SIZE,
    progress: bool = True,
) -> pd.DataFrame:
    """Evaluate one checkpoint (or a run's latest) on ``task``: results-table rows (``ResultsTable.add`` takes them)."""
    ckpt = resolve_checkpoint(path)
    model = ckpt.load_model(device or default_device()).eval()
    rows = run_task(task, model, limit=limit, batch_size=batch_size, progress=progress, preset=ckpt.preset(),
                    schedule=ckpt.schedule())
    ids = {**checkpoint_ids(ckpt), "task": task_label(task, limit), FINGERPRINT: ckpt.fingerprint()}
    return order_columns(pd.DataFrame([{**ids, **row} for row in rows]))


def evaluate_study(
    study: StudyLayout | str | Path,
    tasks: Sequence[str] = DEFAULT_TASKS,
    *,
    limit: int | None = None,
    device: str | torch.device | None = None,
    batch_size: int = BATCH_SIZE,
    conditions: Sequence[str] | None = None,
    final_only: bool = False,
    progress: bool = True,
) -> pd.DataFrame:
    """Evaluate every kept inner-loop checkpoint of ``study`` on ``tasks`` into ``study.results``; return that table.

    What the table already holds (same checkpoint, same task label) is skipped, so an interrupted sweep resumes.
    A task's data is read only if some checkpoint still needs it. ``val_loss`` uses the first checkpoint's preset.
    """
    study = study if isinstance(study, StudyLayout) else StudyLayout(study)
    refs = study.model_refs(list(conditions) if conditions is not None else None, final_only)
    if not refs:
        raise FileNotFoundError(f"no inner-loop checkpoints under {study.root / 'inner'}")
    device = device or default_device()
    table = study.results
    for name in tasks:
        label = task_label(name, limit)
        todo = [r for r in refs if not table.has(r, label)]
        if todo:
            first = Checkpoint(Path(refs[0].path))
            settings = Settings(limit, batch_size, False, first.preset(), first.schedule())
            sweep(todo, label, prepare(name, settings), table, device=device, progress=progress)
    return table.load()
