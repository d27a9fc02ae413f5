"""Benchmark the ternary connectome codec on a random connectome with the shapes of a preset's GPT.

    python bench/connectome_codec.py --scale gpt2-124m --density 0.262 --repeats 3
"""
from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
from genprune_nb.config import ModelConfig, get_preset  # noqa: E402
from genprune_nb.connectome.wiring import ternary_codec  # noqa: E402


def weight_shapes(m: ModelConfig) -> dict[str, tuple[int, int]]:
    """Every 2-D weight of the GPT (DESIGN.md §2), the ones the connectome covers."""
    c = m.n_embd
    shapes = {"transformer.wte.weight": (m.vocab_size, c)}
    for i in range(m.n_layer):
        p = f"transformer.h.{i}."
        shapes[p + "attn.c_attn.weight"] = (3 * c, c)
        shapes[p + "attn.c_proj.weight"] = (c, c)
        shapes[p + "mlp.c_fc.weight"] = (4 * c, c)
        shapes[p + "mlp.c_proj.weight"] = (c, 4 * c)
    if not m.tie_embeddings:
        shapes["lm_head.weight"] = (m.vocab_size, c)
    return shapes


def random_connectome(shapes: dict[str, tuple[int, int]], density: float, seed: int) -> dict[str, np.ndarray]:
    """Ternary tensors: each weight nonzero with probability ``density``, signs uniformly random."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, shape in shapes.items():
        keep = rng.random(shape, dtype=np.float32) < density
        sign = rng.integers(0, 2, shape, dtype=np.int8) * 2 - 1
        out[name] = np.where(keep, sign, 0).astype(np.int8)
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", default="gpt2-124m", help="preset whose model shapes to use (genprune_nb.config)")
    ap.add_argument("--density", type=float, default=0.262, help="fraction of nonzero weights (0.8^6 = 0.262)")
    ap.add_argument("--repeats", type=int, default=3, help="timing repeats; the median is reported")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    tensors = random_connectome(weight_shapes(get_preset(args.scale).model), args.density, args.seed)
    n = sum(t.size for t in tensors.values())
    enc_s, dec_s = [], []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        blob = ternary_codec.encode(tensors, {"c": 0.02})
        t1 = time.perf_counter()
        decoded, _ = ternary_codec.decode(blob)
        dec_s.append(time.perf_counter() - t1)
        enc_s.append(t1 - t0)
    assert all(np.array_equal(decoded[k], v) for k, v in tensors.items()), "round trip failed"

    print(f"scale {args.scale}: {len(tensors)} tensors, {n:,} weights, density {args.density}, "
          f"{platform.processor() or platform.machine()}")
    print(f"entropy   {ternary_codec.entropy_bits_per_weight(tensors):.5f} bits/weight")
    print(f"achieved  {8 * len(blob) / n:.5f} bits/weight")
    print(f"file size {len(blob) / 1e6:.2f} MB ({len(blob):,} bytes)")
    print(f"encode    {statistics.median(enc_s):.2f} s   decode {statistics.median(dec_s):.2f} s   "
          f"(median of {args.repeats})")


if __name__ == "__main__":
    main()
