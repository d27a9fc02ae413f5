"""Where a study's outputs live: one root directory per preset (``runs/<preset>/``).

    runs/<preset>/
      outer/gen_0/ .. gen_G-1/          one training run per generation (checkpoints/, metrics.jsonl)
      outer/gen_g/connectome.gpc        the connectome after generation g (ternary_codec file)
      outer/gen_g/generation.json       its summary: val loss, densities, entropy, file bits per weight
      outer/connectome.gpc              the final connectome: the inner loop's input
      outer_<criterion>/                the same for another pruning criterion (random, attribution, structured)
      inner/<condition>/seed_<k>/       one inner-loop run per condition and seed
      results.csv                       the tidy results table of every evaluation
      notebooks/                        executed copies of the numbered notebooks
      train/                            a plain training run (``genprune train``)

``StudyLayout.of`` is the one place that default root is built.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ..config import Preset
from ..training.checkpoint import list_checkpoints
from .model_refs import ModelRef
from .results import ResultsTable

_SEED = re.compile(r"^seed_(\d+)$")
PAPER_CRITERION = "magnitude"
RUNS_DIR = Path("runs")  # studies live in runs/<preset>/, relative to the working directory


def inner_run_identity(run_dir: Path) -> tuple[str, int] | None:
    """(condition, seed) of an inner-loop run directory ``.../<condition>/seed_<k>``; None for other runs."""
    match = _SEED.match(Path(run_dir).name)
    return (Path(run_dir).parent.name, int(match.group(1))) if match else None


@dataclass(frozen=True)
class StudyLayout:
    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @classmethod
    def of(cls, preset: Preset | str, run_root: str | Path | None = None) -> StudyLayout:
        """The study of ``preset`` (a Preset or its name): in ``run_root`` when given, else in ``runs/<preset>``."""
        name = preset.name if isinstance(preset, Preset) else preset
        return cls(Path(run_root) if run_root else RUNS_DIR / name)

    @property
    def plain_run(self) -> Path:
        """Where ``genprune train`` trains by default: one plain run beside the study's loops."""
        return self.root / "train"

    def outer(self, criterion: str = PAPER_CRITERION) -> Path:
        """The outer loop of one pruning criterion: ``outer/`` for magnitude (the paper), else ``outer_<c>/``."""
        return self.root / ("outer" if criterion == PAPER_CRITERION else f"outer_{criterion}")

    def generation(self, g: int, criterion: str = PAPER_CRITERION) -> Path:
        return self.outer(criterion) / f"gen_{g}"

    def connectome(self, g: int, criterion: str = PAPER_CRITERION) -> Path:
        return self.generation(g, criterion) / "connectome.gpc"

    def final_connectome(self, criterion: str = PAPER_CRITERION) -> Path:
        return self.outer(criterion) / "connectome.gpc"

    @property
    def connectome_file(self) -> Path:
        return self.final_connectome()

    def inner_run(self, condition: str, seed: int) -> Path:
        return self.root / "inner" / condition / f"seed_{seed}"

    @property
    def results(self) -> ResultsTable:
        return ResultsTable(self.root / "results.csv")

    @property
    def notebooks(self) -> Path:
        return self.root / "notebooks"

    def model_refs(self, conditions: list[str] | None = None, final_only: bool = False) -> list[ModelRef]:
        """Every kept checkpoint of the inner loop as a ModelRef, ordered by condition, seed, step."""
        inner = self.root / "inner"
        refs: list[ModelRef] = []
        if not inner.is_dir():
            return refs
        for cond_dir in sorted(p for p in inner.iterdir() if p.is_dir()):
            if conditions is not None and cond_dir.name not in conditions:
                continue
            runs = sorted((inner_run_identity(p)[1], p) for p in cond_dir.iterdir() if inner_run_identity(p))
            for seed, seed_dir in runs:
                ckpts = list_checkpoints(seed_dir)
                if final_only:
                    ckpts = ckpts[-1:]
                for c in ckpts:
                    refs.append(ModelRef(cond_dir.name, seed, c.step, c.state().get("tokens", 0), c.path,
                                         c.fingerprint()))
        return refs
