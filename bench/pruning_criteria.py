"""Benchmark one generation's pruning step under each criterion, on random weights of a preset's GPT.

    python bench/pruning_criteria.py --preset tiny
    python bench/pruning_criteria.py --preset gpt2-124m --criteria magnitude random   # selection only, 162M weights

Attribution (and structured) first sum |w * dL/dw| over ``outer.attribution_batches`` micro-batches; the script
times that pass separately (random tokens, the preset's micro-batch geometry, fp32 on CPU).
"""
from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
from genprune_nb.config import get_preset, override  # noqa: E402
from genprune_nb.connectome.pruning import (  # noqa: E402
    CRITERIA,
    NEEDS_ATTRIBUTION,
    prunable_names,
    prune_by,
    taylor_scores,
)
from genprune_nb.model.gpt import GPT  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--set", action="append", default=[], help="config override, e.g. outer.attribution_batches=2")
    ap.add_argument("--criteria", nargs="+", default=list(CRITERIA), choices=CRITERIA)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    preset = override(get_preset(args.preset), args.set)
    cfg = preset.train
    model = GPT(preset.model, seed=0)
    weights = model.state_dict()
    names = prunable_names(weights, preset.outer.prune_embeddings)
    masks = {n: torch.ones_like(weights[n], dtype=torch.bool) for n in names}
    n_weights = sum(weights[n].numel() for n in names)
    print(f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}")
    print(f"preset {preset.name}: {n_weights:,} prunable weights")

    scores = None
    if any(c in NEEDS_ATTRIBUTION for c in args.criteria):
        gen = torch.Generator().manual_seed(0)
        shape = (cfg.micro_batch_size, cfg.seq_len)
        batches = [(torch.randint(0, 50257, shape, generator=gen), torch.randint(0, 50257, shape, generator=gen))
                   for _ in range(preset.outer.attribution_batches)]
        t = time.perf_counter()
        scores = taylor_scores(model, batches, names)
        dt = time.perf_counter() - t
        tokens = preset.outer.attribution_batches * cfg.micro_batch_size * cfg.seq_len
        print(f"taylor_scores: {preset.outer.attribution_batches} micro-batches of {shape[0]} x {shape[1]} "
              f"({tokens:,} tokens): {dt:.2f} s")
    for criterion in args.criteria:
        t = time.perf_counter()
        new = prune_by(criterion, weights, masks, preset.outer.prune_fraction, preset.outer.scope,
                       seed=0, attribution=scores)
        dt = time.perf_counter() - t
        kept = sum(int(m.sum()) for m in new.values()) / n_weights
        print(f"prune_by({criterion!r}): {dt:.2f} s, density after {kept:.4f}")


if __name__ == "__main__":
    main()
