"""Benchmark a layer x layer linear CKA heatmap: the unbiased minibatch estimator and the full form.

Synthetic features with the study's shape (10,000 tokens x 13 layers x 768 units, float32) for two "models": a
residual-stream-like random walk over layers driven by a shared latent, so neighbouring layers and the two models
are correlated. Times ``genprune_nb.analysis.cka.cka_matrix`` alone (features already in memory); optionally also the
feature extraction of a small random GPT (``--model-tokens``).

    python bench/cka.py --tokens 10000 --layers 13 --width 768 --batch-size 256
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
from genprune_nb.analysis.cka import cka_matrix  # noqa: E402


def synthetic(n: int, layers: int, width: int, seed: int) -> list[torch.Tensor]:
    """[n, width] float32 per layer: h_0 = Z W_0 + 2 noise, h_l = 0.8 h_(l-1) + 0.6 (Z_l W_l + 2 noise), where the
    latent Z (64 dims) and its drift Z_l over layers are the same for both models, the weights and noise are not."""
    g = torch.Generator().manual_seed(seed)
    shared = torch.Generator().manual_seed(12345)  # the same latent inputs for both models
    z = torch.randn(n, 64, generator=shared)
    h = z @ torch.randn(64, width, generator=g) + 2.0 * torch.randn(n, width, generator=g)
    out = [h]
    for _ in range(layers - 1):
        z = 0.7 * z + 0.7 * torch.randn(n, 64, generator=shared)
        h = 0.8 * h + 0.6 * (z @ torch.randn(64, width, generator=g) + 2.0 * torch.randn(n, width, generator=g))
        out.append(h)
    return out


def timed(fn, repeats: int = 1):
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return out, times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=10_000)
    ap.add_argument("--layers", type=int, default=13)
    ap.add_argument("--width", type=int, default=768)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3, help="runs of the minibatch heatmap (the full form runs once)")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--skip-full", action="store_true", help="time only the minibatch estimator")
    ap.add_argument("--model-tokens", type=int, default=0,
                    help="also time token_features of a random GPT on this many tokens (0: skip)")
    ap.add_argument("--model-preset", default="tiny", help="preset whose model shape token_features runs")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    a = synthetic(args.tokens, args.layers, args.width, args.seed)
    b = synthetic(args.tokens, args.layers, args.width, args.seed + 1)
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
          f"{args.threads} threads, load average {os.getloadavg()[0]:.1f}")
    print(f"data: 2 x {args.layers} layers x {args.tokens:,} tokens x {args.width} units, float32; "
          f"heatmap {args.layers} x {args.layers}")

    mini, t_mini = timed(lambda: cka_matrix(a, b, method="minibatch", batch_size=args.batch_size, seed=0),
                         args.repeats)
    print(f"minibatch (unbiased HSIC_1, batches of {args.batch_size}, shuffled): "
          f"{min(t_mini):7.2f} s  (runs: {' '.join(f'{t:.2f}' for t in t_mini)})")
    _, t_self = timed(lambda: cka_matrix(a, a, method="minibatch", batch_size=args.batch_size, seed=0))
    print(f"minibatch, a model with itself (Grams computed once):          {t_self[0]:7.2f} s")
    if not args.skip_full:
        full, t_full = timed(lambda: cka_matrix(a, b, method="full"))
        print(f"full form (feature space, float32 cross-covariances):          {t_full[0]:7.2f} s")
        print(f"max |minibatch - full| {np.abs(mini - full).max():.4f}; CKA range {full.min():.3f}..{full.max():.3f}")

    if args.model_tokens:
        from genprune_nb.model.features import token_features
        from genprune_nb.config import get_preset
        from genprune_nb.model.gpt import GPT

        model = GPT(get_preset(args.model_preset).model, seed=0)
        cfg = model.config
        seq_len = min(256, cfg.block_size)
        tokens = torch.randint(0, 50257, (-(-args.model_tokens // seq_len), seq_len), generator=torch.Generator()
                               .manual_seed(0))
        feats, t_feat = timed(lambda: token_features(model, tokens, batch_size=8))
        print(f"token_features, preset {args.model_preset} (L={cfg.n_layer} C={cfg.n_embd}), {tokens.numel():,} "
              f"tokens: {t_feat[0]:7.2f} s -> {feats.shape[0]:,} x {feats.shape[1]:,}")


if __name__ == "__main__":
    main()
