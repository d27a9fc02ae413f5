"""Ablations of the outer loop: which choice makes later generations' val loss jump? One outer loop per variant x
seed through the package (``run_outer_loop``), then one table of the per-generation val loss over seeds.

    python scripts/outer_ablations.py --preset tiny --seeds 0 1 2 \\
        --variants baseline no_prune_embeddings ties_authors stream_continue more_steps --out runs/ablations

``baseline`` is the recipe the jump was found with (exact tie rule, every generation restarting L, embeddings
pruned); every other variant changes one thing (``VARIANTS``); ``defaults`` is the package's defaults as they are.
The seed is ``train.seed`` (the model's init). Each run is a study folder ``<out>/<variant>/seed_<k>/``: finished
generations are skipped, an unfinished one resumes, a run made under another recipe is refused (provenance). The
table (mean and 95% t-interval over seeds of each generation's final val loss) goes to
``<out>/outer_ablations.csv``, ``.md`` and ``.png`` (``report.plots.variant_val_loss``); ``<out>/timings.json`` keeps
each run's wall time.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from genprune_nb.config import Preset, get_preset, override  # noqa: E402
from genprune_nb.report import plots  # noqa: E402
from genprune_nb.stats import mean_ci  # noqa: E402
from genprune_nb.study.curves import generation_summaries  # noqa: E402
from genprune_nb.study.generations import run_outer_loop  # noqa: E402
from genprune_nb.study.layout import StudyLayout  # noqa: E402

BASELINE = {"outer.ties": "exact", "data.outer_stream": "restart", "outer.prune_embeddings": True}


def _more_steps(preset: Preset) -> dict:
    """Twice the steps per generation, the decay stretched with them (same warmup and peak lr)."""
    return {"train.steps": 2 * preset.train.steps, "train.decay_steps": 2 * preset.train.decay_steps}


VARIANTS: dict[str, Callable[[Preset], dict]] = {
    "baseline": lambda preset: dict(BASELINE),
    "no_prune_embeddings": lambda preset: {**BASELINE, "outer.prune_embeddings": False},
    "ties_authors": lambda preset: {**BASELINE, "outer.ties": "authors"},
    "stream_continue": lambda preset: {**BASELINE, "data.outer_stream": "continue"},
    "more_steps": lambda preset: {**BASELINE, **_more_steps(preset)},
    "defaults": lambda preset: {},
}


def variant_preset(base: Preset, variant: str, seed: int) -> Preset:
    """``base`` with the variant's overrides and ``train.seed``; an unknown variant names the known ones."""
    if variant not in VARIANTS:
        raise SystemExit(f"unknown variant {variant!r}; choose from {', '.join(VARIANTS)}")
    return override(base, {**VARIANTS[variant](base), "train.seed": seed})


def summarize(per_seed: pd.DataFrame) -> pd.DataFrame:
    """Mean and 95% t-interval over seeds (``stats.mean_ci``) of each (variant, generation)'s val loss, variants in
    the order they ran (a single seed: no interval)."""
    table = mean_ci(per_seed, ["variant", "generation"], "val_loss")
    order = {variant: i for i, variant in enumerate(per_seed["variant"].unique())}
    table = table.sort_values(["variant", "generation"], key=lambda c: c.map(order) if c.name == "variant" else c)
    table = table.rename(columns={"n": "n_seeds", "mean": "val_loss_mean", "low": "ci95_low", "high": "ci95_high"})
    return table[["variant", "generation", "n_seeds", "val_loss_mean", "ci95_low", "ci95_high"]].reset_index(drop=True)


def markdown(table: pd.DataFrame) -> str:
    """The summary as a markdown table: one row per variant, one column per generation (mean [95% CI])."""
    generations = sorted(table["generation"].unique())
    lines = ["| variant | seeds | " + " | ".join(f"gen {g}" for g in generations) + " |",
             "| --- | --- | " + " | ".join("---" for _ in generations) + " |"]
    for variant, group in table.groupby("variant", sort=False):
        cells = {int(r.generation): (f"{r.val_loss_mean:.3f}" + ("" if np.isnan(r.ci95_low) else
                                     f" [{r.ci95_low:.3f}, {r.ci95_high:.3f}]")) for r in group.itertuples()}
        lines.append(f"| {variant} | {int(group['n_seeds'].max())} | "
                     + " | ".join(cells.get(int(g), "") for g in generations) + " |")
    return "\n".join(lines) + "\n"


def add_timing(path: Path, key: str, seconds: float) -> None:
    """Add ``seconds`` to ``key`` in the timings file, read afresh and replaced atomically after every run, so that a
    resumed run adds its share and processes running other variants into the same folder keep each other's times."""
    timings = json.loads(path.read_text()) if path.exists() else {}
    timings[key] = timings.get(key, 0.0) + seconds
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(timings, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS)[:5], choices=list(VARIANTS))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                        help="an override applied to every variant first (e.g. data.tokens_dir=...)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    base = override(get_preset(args.preset), args.overrides)
    rows = []
    for variant in args.variants:
        for seed in args.seeds:
            study = StudyLayout(args.out / variant / f"seed_{seed}")
            t0 = time.perf_counter()
            run_outer_loop(variant_preset(base, variant, seed), study, progress=not args.no_progress)
            key = f"{variant}/seed_{seed}"
            add_timing(args.out / "timings.json", key, time.perf_counter() - t0)
            summaries = generation_summaries(study)
            rows += [{"variant": variant, "seed": seed, "generation": int(r.generation), "val_loss": r.val_loss}
                     for r in summaries.itertuples()]
            print(f"{key}: " + ", ".join(f"{v:.3f}" for v in summaries["val_loss"]), flush=True)
    per_seed = pd.DataFrame(rows)
    per_seed.to_csv(args.out / "outer_ablations_per_seed.csv", index=False)
    table = summarize(per_seed)
    table.to_csv(args.out / "outer_ablations.csv", index=False)
    (args.out / "outer_ablations.md").write_text(markdown(table))
    plots.save(plots.variant_val_loss(table), args.out, "outer_ablations")
    print(markdown(table))
    return 0


if __name__ == "__main__":
    sys.exit(main())
