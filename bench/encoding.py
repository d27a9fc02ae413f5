"""Benchmark the ``standardized`` encoding protocol against a plain scikit-learn loop on the same data and folds.

Synthetic features with the study's shape (1,000 sentences x 13 layers x 768 units, correlated within a layer)
and a response that a few directions of each layer predict. Both sides standardise within the training fold and
choose the penalty by RidgeCV's efficient leave-one-out CV, so their r must agree to rounding.

    python bench/encoding.py --sentences 1000 --layers 13 --width 768 --alphas 20
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
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
from genprune_nb.alignment.encoding import encode, outer_splits, pearson_columns  # noqa: E402


def synthetic(n: int, layers: int, width: int, seed: int) -> tuple[xr.DataArray, xr.DataArray]:
    rng = np.random.default_rng(seed)
    latent = rng.standard_normal((n, 32))
    blocks = [latent @ rng.standard_normal((32, width)) + rng.standard_normal((n, width)) for _ in range(layers)]
    y = latent[:, :4].sum(1) + 2.0 * rng.standard_normal(n)
    stimuli = np.array([f"s{i}" for i in range(n)], dtype=object)
    X = xr.DataArray(np.hstack(blocks).astype(np.float32), dims=("presentation", "neuroid"),
                     coords={"stimulus": ("presentation", stimuli), "layer": ("neuroid", np.repeat(range(layers), width)),
                             "unit": ("neuroid", np.tile(range(width), layers))})
    Y = xr.DataArray(y[:, None], dims=("presentation", "neuroid"),
                     coords={"stimulus": ("presentation", stimuli), "neuroid_id": ("neuroid", ["y"])})
    return X, Y


def per_layer_r(X: xr.DataArray, Y: xr.DataArray, make_model, splits, nan_as_zero: bool = False) -> np.ndarray:
    """r [layer, fold]: a scikit-learn model from ``make_model()`` refit per layer and (train, test) split."""
    y = Y.values
    out = []
    for layer in np.unique(X["layer"].values):
        x = X.values[:, X["layer"].values == layer].astype(np.float64)
        row = []
        for train, test in splits:
            model = make_model().fit(x[train], y[train])
            r = pearson_columns(model.predict(x[test]).reshape(y[test].shape), y[test])[0]
            row.append(np.nan_to_num(r) if nan_as_zero else r)
        out.append(row)
    return np.array(out)


def sklearn_loop(X: xr.DataArray, Y: xr.DataArray, alphas: np.ndarray, seed: int) -> np.ndarray:
    """r [layer, fold] from StandardScaler + RidgeCV (efficient LOO) refit per layer and fold."""
    splits = outer_splits(Y.sizes["presentation"], "kfold", None, seed)
    return per_layer_r(X, Y, lambda: make_pipeline(StandardScaler(), RidgeCV(alphas=alphas)), splits)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sentences", type=int, default=1000)
    ap.add_argument("--layers", type=int, default=13)
    ap.add_argument("--width", type=int, default=768)
    ap.add_argument("--alphas", type=int, default=20, help="penalties on a log grid 1e-3..1e7")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    X, Y = synthetic(args.sentences, args.layers, args.width, args.seed)
    alphas = np.logspace(-3, 7, args.alphas)

    def timed(fn):
        t0 = time.perf_counter()
        out = fn()
        return out, time.perf_counter() - t0

    ours, t_ours = timed(lambda: encode(X, Y, protocol="standardized", alphas=alphas, seed=args.seed))
    _, t_ours_1 = timed(lambda: encode(X, Y, protocol="standardized", alphas=alphas, seed=args.seed, n_jobs=1))
    ref, t_ref = timed(lambda: sklearn_loop(X, Y, alphas, args.seed))
    with threadpool_limits(limits=1, user_api="blas"):
        _, t_ref_1 = timed(lambda: sklearn_loop(X, Y, alphas, args.seed))

    diff = np.abs(ours.values[..., 0] - ref).max()
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, numpy {np.__version__}, "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"data: {args.sentences} sentences x {args.layers} layers x {args.width} units, 5-fold KFold, "
          f"{args.alphas} penalties, LOO penalty choice")
    print(f"genprune_nb encode (eigh per fold, all penalties at once), {os.cpu_count()} threads: {t_ours:7.2f} s")
    print(f"genprune_nb encode, 1 thread:                                    {t_ours_1:7.2f} s")
    print(f"sklearn StandardScaler + RidgeCV loop, default BLAS threads:     {t_ref:7.2f} s")
    print(f"sklearn StandardScaler + RidgeCV loop, 1 BLAS thread:            {t_ref_1:7.2f} s")
    print(f"max |r difference| {diff:.2e}; mean r over layers and folds {ours.mean().item():.3f}")

if __name__ == "__main__":
    main()
