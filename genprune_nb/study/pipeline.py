"""The study as numbered notebooks, executed headlessly in order with papermill.

Every notebook takes the same parameters (``preset``, ``overrides``, ``run_root``, ``figures_dir``, ``device``,
``progress``) plus its own; executed copies go to ``<run_root>/notebooks/``, figures to ``figures_dir``.
Each step is resumable, so re-running the pipeline continues where it stopped.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from ..config import Preset, get_preset, override
from ..errors import GenpruneError
from ..launch import DistContext, init_distributed
from ..storage.writable import require_writable
from .layout import StudyLayout

NOTEBOOKS_DIR = Path(__file__).resolve().parents[2] / "notebooks"


class NotebookError(GenpruneError, RuntimeError):
    """A notebook of the pipeline raised; the message names the notebook, its error and the executed copy."""


def available_notebooks(notebooks_dir: str | Path = NOTEBOOKS_DIR) -> list[str]:
    """Names (without .ipynb) of the numbered notebooks, in order."""
    folder = Path(notebooks_dir)
    if not folder.is_dir():
        raise FileNotFoundError(f"notebooks folder {folder} not found (the pipeline runs from a checkout)")
    return sorted(p.stem for p in folder.glob("[0-9][0-9]_*.ipynb"))


def select(names: Sequence[str], only: Sequence[str] | None) -> list[str]:
    """The notebooks whose name or number prefix is in ``only`` (all when None), in order."""
    if not only:
        return list(names)
    chosen = [n for n in names if n in only or n.split("_")[0] in only]
    unknown = [o for o in only if not any(n == o or n.split("_")[0] == o for n in names)]
    if unknown:
        raise ValueError(f"unknown notebook(s) {unknown}; available: {', '.join(names)}")
    return chosen


def runs_by_default(name: str, preset: Preset, parameters: dict[str, Any]) -> bool:
    """Whether a run of every notebook includes ``name``: ``08_scaling`` trains several more outer loops, so only
    where the preset names a sweep (``eval.scaling_sweep``) or the parameters ask for one; ``09_bandwidth`` adds
    conditions x seeds inner runs, so only where the preset names its conditions (``eval.bandwidth``: smoke, cpu)
    or the parameters do (``conditions``). ``--only 08`` / ``--only 09`` runs either."""
    number = name.split("_")[0]
    if number == "08":
        return bool(preset.eval.scaling_sweep or parameters.get("sweep") or parameters.get("budgets"))
    if number == "09":
        return bool(preset.eval.bandwidth or parameters.get("conditions"))
    return True


def figures_folder(preset: str, figures_dir: str | Path | None = None) -> Path:
    """Where a study's figures go: ``figures_dir`` when given, else ``figures/<preset>``."""
    return Path(figures_dir) if figures_dir else Path("figures") / preset


def run_pipeline(
    preset: str = "tiny",
    *,
    overrides: Sequence[str] = (),
    run_root: str | Path | None = None,
    figures_dir: str | Path | None = None,
    only: Sequence[str] | None = None,
    parameters: dict[str, Any] | None = None,
    notebooks_dir: str | Path = NOTEBOOKS_DIR,
    device: str | None = None,
    progress: bool = True,
    kernel: str = "python3",
) -> list[Path]:
    """Execute the selected notebooks in order; return the executed copies' paths.

    Relative paths (``run_root``, the preset's ``data.tokens_dir``) resolve against the current directory, in
    which every notebook runs. ``parameters`` adds notebook-specific ones (e.g. ``{"limit": 50}``); a notebook
    ignores those it does not declare. The preset, the overrides, the selection and the output folders are checked
    before the first kernel starts; a notebook that fails is a NotebookError naming it and its error.
    """
    import papermill as pm

    chosen = override(get_preset(preset), list(overrides))  # a bad name or override fails here, not in notebook 00
    names = select(available_notebooks(notebooks_dir), only)
    if not only:
        names = [n for n in names if runs_by_default(n, chosen, parameters or {})]
    run_root = require_writable(StudyLayout.of(preset, run_root).root.resolve(), "study folder")
    figures_dir = require_writable(figures_folder(preset, figures_dir).resolve(), "figures folder")
    params = {"preset": preset, "overrides": list(overrides), "run_root": str(run_root),
              "figures_dir": str(figures_dir), "device": device, "progress": progress, **(parameters or {})}
    executed = []
    for name in names:
        out = run_root / "notebooks" / f"{name}.ipynb"
        out.parent.mkdir(parents=True, exist_ok=True)
        try:
            pm.execute_notebook(Path(notebooks_dir) / f"{name}.ipynb", out, parameters=params, cwd=os.getcwd(),
                                kernel_name=kernel, progress_bar=progress, report_mode=False)
        except pm.PapermillExecutionError as e:
            raise NotebookError(f"notebook {name} failed: {e.ename}: {e.evalue} (the traceback is in {out})") from e
        executed.append(out)
    return executed


@dataclass(frozen=True)
class NotebookContext:
    """What every notebook works with: the resolved preset, the study's layout, the figures folder, the device."""

    preset: Preset
    study: StudyLayout
    figures_dir: Path
    dist: DistContext


def context(
    preset: str,
    overrides: Sequence[str] = (),
    run_root: str | Path | None = None,
    figures_dir: str | Path | None = None,
    device: str | None = None,
) -> NotebookContext:
    """Resolve a notebook's parameters cell (the pipeline's defaults when run_root / figures_dir are None)."""
    resolved = override(get_preset(preset), list(overrides)) if overrides else get_preset(preset)
    return NotebookContext(
        preset=resolved,
        study=StudyLayout.of(preset, run_root),
        figures_dir=figures_folder(preset, figures_dir),
        dist=init_distributed(device),
    )
