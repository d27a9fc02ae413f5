"""Benchmark the ``authors`` encoding protocol against the authors' scikit-learn loop on the same features.

The loop: per layer, ``KFold(5, shuffle=True, random_state=0)``; in each fold ``RidgeCV(alphas=[10**x for x in
range(-30, 30)], alpha_per_target=True)`` on the raw features, Pearson r on the held-out fold (NaN -> 0); mean
over folds. The package's ``encode(protocol="authors")`` must give the same r; this prints both, per layer, the
largest difference, and the time each takes. Features are synthetic with the study's shape (``bench/encoding.py``:
correlated within a layer, a response a few directions predict), on raw scales with offsets.

    python bench/encoding_protocols.py --sentences 1000 --layers 13 --width 768
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import xarray as xr
from sklearn.linear_model import RidgeCV
from sklearn.model_selection import KFold
from threadpoolctl import threadpool_info

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
from bench.encoding import per_layer_r, synthetic  # noqa: E402
from genprune_nb.alignment.encoding import AUTHORS_ALPHAS, encode  # noqa: E402


def authors_loop(X: xr.DataArray, Y: xr.DataArray) -> np.ndarray:
    """r [layer, fold] from the authors' RidgeCV loop, refit per layer and fold."""
    splits = list(KFold(5, shuffle=True, random_state=0).split(X.values))
    return per_layer_r(X, Y, lambda: RidgeCV(alphas=[10 ** e for e in range(-30, 30)], alpha_per_target=True), splits,
                       nan_as_zero=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sentences", type=int, default=1000)
    ap.add_argument("--layers", type=int, default=13)
    ap.add_argument("--width", type=int, default=768)
    ap.add_argument("--scale", type=float, default=5.0, help="spread of the features' raw scales (log10 range)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    X, Y = synthetic(args.sentences, args.layers, args.width, args.seed)
    rng = np.random.default_rng(args.seed + 1)  # raw features: uneven scales and offsets per unit
    X = X.copy(data=X.values * 10 ** rng.uniform(-args.scale / 2, args.scale / 2, X.sizes["neuroid"]).astype(np.float32)
               + rng.standard_normal(X.sizes["neuroid"]).astype(np.float32))

    def timed(fn):
        t0 = time.perf_counter()
        out = fn()
        return out, time.perf_counter() - t0

    ours, t_ours = timed(lambda: encode(X, Y, protocol="authors"))
    ref, t_ref = timed(lambda: authors_loop(X, Y))
    ours_layer, ref_layer = ours.mean("fold").values[:, 0], ref.mean(1)
    blas = ", ".join(f"{i['internal_api']} {i['num_threads']} threads" for i in threadpool_info())
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs ({blas}), numpy {np.__version__}, "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"data: {args.sentences} sentences x {args.layers} layers x {args.width} units (raw scales over "
          f"1e{args.scale:g}), KFold(5, shuffle, 0), {len(AUTHORS_ALPHAS)} penalties 1e-30..1e29, one per target")
    print("layer  r (genprune_nb authors)  r (sklearn RidgeCV loop)")
    for layer, a, b in zip(ours["layer"].values, ours_layer, ref_layer):
        print(f"{layer:5d}  {a:22.6f}  {b:24.6f}")
    print(f"genprune_nb encode(protocol='authors'), {os.cpu_count()} threads x 1 BLAS thread: {t_ours:8.2f} s")
    print(f"sklearn RidgeCV + KFold loop, default BLAS threads:                 {t_ref:8.2f} s")
    print(f"max |r difference| per fold {np.abs(ours.values[..., 0] - ref).max():.2e}, per layer "
          f"{np.abs(ours_layer - ref_layer).max():.2e}; chosen penalties (genprune_nb) "
          f"{sorted({f'{a:.0e}' for a in np.ravel(ours['alpha'].values)})}")


if __name__ == "__main__":
    main()
