"""Training curves and generation summaries of a study as tidy DataFrames (read from the run logs)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import pandas as pd

from ..stats import bits_per_byte, mean_se
from ..training.runlog import RunLog
from .layout import PAPER_CRITERION, StudyLayout, inner_run_identity


def run_curve(run_dir, metric: str = "val_loss") -> pd.DataFrame:
    """(step, tokens, value) of one metric from a run's metrics.jsonl."""
    rows = [r for r in RunLog(run_dir / "metrics.jsonl").records() if metric in r]
    return pd.DataFrame({"step": [r["step"] for r in rows], "tokens": [r.get("tokens", 0) for r in rows],
                         metric: [r[metric] for r in rows]})


def outer_curves(study: StudyLayout, metric: str = "val_loss", criterion: str = PAPER_CRITERION) -> pd.DataFrame:
    """One curve per generation of one criterion's outer loop: columns generation, step, tokens, ``metric``."""
    frames = []
    g = 0
    while study.generation(g, criterion).is_dir():
        frames.append(run_curve(study.generation(g, criterion), metric).assign(generation=g))
        g += 1
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["generation", "step", metric])


def read_generation_summary(path: Path) -> dict:
    """One generation's ``generation.json``; a damaged one is an error naming the file (and the line)."""
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: not a readable generation summary ({e})") from None
    if not isinstance(summary, dict) or not isinstance(summary.get("densities"), dict):
        raise ValueError(f"{path}: not a generation summary (no 'densities' mapping)")
    return summary


def generation_summaries(study: StudyLayout, criterion: str = PAPER_CRITERION,
                         bytes_per_token: float | None = None) -> pd.DataFrame:
    """One row per finished generation: val loss, density, entropy and achieved bits per weight, file size; with
    ``bytes_per_token`` of the val tokens also the val loss in bits per byte (``val_bits_per_byte``)."""
    rows = []
    g = 0
    while (path := study.generation(g, criterion) / "generation.json").exists():
        summary = read_generation_summary(path)
        rows.append({k: v for k, v in summary.items() if k != "densities"})
        g += 1
    out = pd.DataFrame(rows)
    if bytes_per_token is not None and not out.empty:
        out.insert(out.columns.get_loc("val_loss") + 1, "val_bits_per_byte", bits_per_byte(out["val_loss"],
                                                                                         bytes_per_token))
    return out


def tensor_densities(study: StudyLayout, criteria: Sequence[str] = (PAPER_CRITERION,)) -> pd.DataFrame:
    """Per-tensor density after every generation of each criterion's outer loop: columns criterion, generation,
    tensor, kind, layer, density."""
    rows = []
    for criterion in criteria:
        g = 0
        while (path := study.generation(g, criterion) / "generation.json").exists():
            for name, density in read_generation_summary(path)["densities"].items():
                rows.append({"criterion": criterion, "generation": g, "tensor": name, "kind": tensor_kind(name),
                             "layer": tensor_layer(name), "density": density})
            g += 1
    return pd.DataFrame(rows)


def unit_survival(study: StudyLayout, criteria: Sequence[str]) -> pd.DataFrame:
    """Fraction of MLP hidden units alive in each criterion's final connectome: columns criterion, layer, alive."""
    from ..connectome.wiring import Connectome

    rows = []
    for criterion in criteria:
        path = study.final_connectome(criterion)
        if not path.exists():
            raise FileNotFoundError(f"{path} not found: run the outer loop with criterion {criterion!r} first")
        for fc, alive in Connectome.load(path).alive_units().items():
            rows.append({"criterion": criterion, "layer": tensor_layer(fc), "alive": alive})
    return pd.DataFrame(rows, columns=["criterion", "layer", "alive"])


def inner_curves(study: StudyLayout, metric: str = "val_loss") -> pd.DataFrame:
    """Inner-loop curves: columns condition, seed, step, tokens, ``metric``."""
    frames = []
    inner = study.root / "inner"
    for run_dir in sorted(inner.glob("*/seed_*")) if inner.is_dir() else []:
        if identity := inner_run_identity(run_dir):
            frames.append(run_curve(run_dir, metric).assign(condition=identity[0], seed=identity[1]))
    columns = ["condition", "seed", "step", "tokens", metric]
    return pd.concat(frames, ignore_index=True)[columns] if frames else pd.DataFrame(columns=columns)


def final_val_loss(study: StudyLayout, bytes_per_token: float | None = None) -> pd.DataFrame:
    """Each condition's val loss at the inner loop's last logged step, mean and SE over seeds (Figure 1B-i's end);
    with ``bytes_per_token`` of the val tokens (``data.manifest.preset_bytes_per_token``) also in bits per byte."""
    val = inner_curves(study, "val_loss")
    out = mean_se(val[val["step"] == val["step"].max()], ["condition"], "val_loss")
    if bytes_per_token is not None:
        out["bits_per_byte"] = bits_per_byte(out["mean"], bytes_per_token)
        out["bits_per_byte_se"] = bits_per_byte(out["se"], bytes_per_token)
    return out


def tensor_kind(name: str) -> str:
    """attention, mlp, embedding or head."""
    if "attn" in name:
        return "attention"
    if "mlp" in name:
        return "mlp"
    return "embedding" if "wte" in name else "head"


def tensor_layer(name: str) -> int:
    """Block index of a parameter; -1 for the embedding, a large number for the head (they sort first / last)."""
    parts = name.split(".")
    if "h" in parts:
        return int(parts[parts.index("h") + 1])
    return -1 if "wte" in name else 10_000


VAL_LOSS_TASK = "val_loss_curve"  # the results-table task of the inner loop's logged val losses (metric "loss")


def val_loss_rows(study: StudyLayout, n: int | None = None) -> pd.DataFrame:
    """The inner loop's logged val losses as tidy results rows: one per (condition, seed, logged step).

    Task :data:`VAL_LOSS_TASK`, metric ``loss``, with ``step`` and ``tokens``; ``n`` is the number of val tokens
    behind each loss (e.g. the preset's ``inner_train.val_tokens``; NaN when not given). Ready for
    ``ResultsTable.add``; a step logged twice (a resumed run) keeps its last value.
    """
    curves = inner_curves(study, "val_loss").drop_duplicates(["condition", "seed", "step"], keep="last")
    return pd.DataFrame({
        "condition": curves["condition"].astype(str), "seed": curves["seed"].astype(int),
        "step": curves["step"].astype(int), "tokens": curves["tokens"].astype(int), "task": VAL_LOSS_TASK,
        "metric": "loss", "value": curves["val_loss"].astype(float), "n": float("nan") if n is None else n,
    }).reset_index(drop=True)
