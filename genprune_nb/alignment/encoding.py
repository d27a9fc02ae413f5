"""Encoding models: cross-validated ridge regression from model features to neural responses (DESIGN.md §5).

Protocol, per layer: outer splits (5-fold shuffled KFold, the authors'; or 10 shuffle splits 90/10, Brain-Score's);
in each, features are standardised with the training fold's mean and SD, the penalty is chosen on the training
fold by efficient leave-one-out CV (the scheme of scikit-learn's ``RidgeCV`` with its default ``cv=None``: the
mean squared LOO error, from the hat matrix), the ridge is refit there, and the score is Pearson r between the
held-out predictions and responses. Spread over folds comes with it.

Speed: :class:`RidgePath` eigendecomposes the smaller of X^T X and X X^T once per fold; coefficients, fitted
values, hat-matrix diagonals and so LOO errors then follow for every penalty by cheap products. The (layer, fold)
fits run in parallel threads with single-threaded BLAS.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Sequence

import numpy as np
import pandas as pd
import xarray as xr
from sklearn.model_selection import KFold, ShuffleSplit
from threadpoolctl import threadpool_limits
from torch import nn

from ..model.features import sentence_features
from ..study.results import final_rows, select

TASK = "brain_encoding"
DEFAULT_ALPHAS = np.logspace(-3, 7, 20)  # a wide log grid (features are standardised, so penalties are large)
SCHEMES = {"kfold": 5, "shuffle": 10}  # scheme -> default number of splits


def _as_2d(y: np.ndarray) -> np.ndarray:
    y = np.asarray(y, dtype=np.float64)
    return y[:, None] if y.ndim == 1 else y


class RidgePath:
    """Ridge regression with an unpenalised intercept, for many penalties from one eigendecomposition.

    With the centred design Xc = U S V^T (thin, rank r): coef(a) = V diag(s / (s^2 + a)) U^T Yc, and the hat
    matrix is U diag(s^2 / (s^2 + a)) U^T + 11^T / n (the intercept is the 1/n term). The eigendecomposition is of
    Xc^T Xc when n > p, else of Xc Xc^T; directions with numerically zero variance are dropped.
    """

    def __init__(self, X: np.ndarray, Y: np.ndarray):
        X, Y = np.asarray(X, dtype=np.float64), _as_2d(Y)
        if X.ndim != 2 or len(X) != len(Y):
            raise ValueError(f"X must be [n, p] and Y [n] or [n, t] with the same n; got {X.shape} and {Y.shape}")
        n, p = X.shape
        self.x_mean, self.y_mean = X.mean(0), Y.mean(0)
        Xc, self.Yc = X - self.x_mean, Y - self.y_mean
        ev, vecs = np.linalg.eigh(Xc.T @ Xc if n > p else Xc @ Xc.T)  # LAPACK syevd; releases the GIL
        keep = ev > ev[-1] * max(n, p) * np.finfo(np.float64).eps
        self.s2 = ev[keep]
        s = np.sqrt(self.s2)
        if n > p:
            self.V = vecs[:, keep]
            self.U = Xc @ self.V / s
        else:
            self.U = vecs[:, keep]
            self.V = Xc.T @ self.U / s
        self.UtY = self.U.T @ self.Yc  # [r, t]

    def _shrink(self, alphas: Sequence[float]) -> np.ndarray:
        """s^2 / (s^2 + a), [A, r]."""
        a = np.asarray(alphas, dtype=np.float64)[:, None]
        return self.s2 / (self.s2 + a)

    def coefs(self, alphas: Sequence[float]) -> np.ndarray:
        """Coefficients [A, t, p] (scikit-learn's ``coef_`` layout per penalty)."""
        scaled = self._shrink(alphas) / np.sqrt(self.s2)  # s / (s^2 + a)
        return (self.V @ (scaled[:, :, None] * self.UtY)).transpose(0, 2, 1)

    def intercepts(self, alphas: Sequence[float]) -> np.ndarray:
        """Intercepts [A, t]."""
        return self.y_mean - self.coefs(alphas) @ self.x_mean

    def loo_mse(self, alphas: Sequence[float]) -> np.ndarray:
        """Mean (over samples and targets) squared leave-one-out error for each penalty, [A]."""
        shrink = self._shrink(alphas)  # [A, r]
        n, t = self.Yc.shape
        A = len(shrink)
        fitted = (self.U @ (shrink.T[:, :, None] * self.UtY[:, None, :]).reshape(len(self.s2), A * t))
        fitted = fitted.reshape(n, A, t)
        leverage = (self.U ** 2) @ shrink.T + 1.0 / n  # [n, A]
        loo = (self.Yc[:, None, :] - fitted) / (1.0 - leverage)[:, :, None]
        return (loo ** 2).mean(axis=(0, 2))

    def best_alpha(self, alphas: Sequence[float]) -> float:
        """The penalty with the smallest LOO error (the first on ties, as ``RidgeCV``)."""
        return float(np.asarray(alphas)[np.argmin(self.loo_mse(alphas))])

    def predict(self, X: np.ndarray, alpha: float) -> np.ndarray:
        """Predictions [m, t] for new rows under penalty ``alpha``."""
        return (np.asarray(X, dtype=np.float64) - self.x_mean) @ self.coefs([alpha])[0].T + self.y_mean


def outer_splits(n: int, scheme: str = "kfold", n_splits: int | None = None, seed: int = 0
                 ) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train, test) index pairs: ``kfold`` = shuffled KFold (default 5), ``shuffle`` = 90/10 splits (default 10)."""
    if scheme not in SCHEMES:
        raise ValueError(f"scheme must be one of {list(SCHEMES)}, got {scheme!r}")
    k = n_splits or SCHEMES[scheme]
    cv = (KFold(k, shuffle=True, random_state=seed) if scheme == "kfold"
          else ShuffleSplit(k, test_size=0.1, random_state=seed))
    return list(cv.split(np.arange(n)))


def pearson_columns(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson r between matching columns of two [n, t] arrays (NaN where a column is constant)."""
    a, b = a - a.mean(0), b - b.mean(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (a * b).sum(0) / np.sqrt((a ** 2).sum(0) * (b ** 2).sum(0))


def standardise(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both sets scaled by the training set's mean and SD (constant columns: SD 1, as ``StandardScaler``)."""
    mean, sd = train.mean(0), train.std(0)
    sd[sd == 0] = 1.0
    return (train - mean) / sd, (test - mean) / sd


def fold_r(X: np.ndarray, Y: np.ndarray, train: np.ndarray, test: np.ndarray, alphas: Sequence[float]
           ) -> tuple[np.ndarray, float]:
    """Held-out Pearson r [t] and the chosen penalty of one outer split (the protocol in the module docstring).

    Predictions that are constant (e.g. every test sentence ends in the same token, for layer 0) score 0.
    """
    X_train, X_test = standardise(np.asarray(X[train], dtype=np.float64), np.asarray(X[test], dtype=np.float64))
    path = RidgePath(X_train, Y[train])
    alpha = path.best_alpha(alphas)
    r = pearson_columns(path.predict(X_test, alpha), Y[test])
    return np.nan_to_num(r, nan=0.0), alpha


def cross_validated_r(
    feature_sets: Sequence[np.ndarray],
    Y: np.ndarray,
    splits: Sequence[tuple[np.ndarray, np.ndarray]],
    alphas: Sequence[float],
    *,
    n_jobs: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`fold_r` for every feature set (e.g. layer) and split: r [set, fold, t] and penalties [set, fold].

    The (set, split) fits run on ``n_jobs`` threads (default: one per CPU), each with single-threaded BLAS: this
    scales better than multi-threaded BLAS on one fit, and does not collapse when the CPU is shared.
    """
    Y = _as_2d(Y)
    tasks = [(X, train, test) for X in feature_sets for train, test in splits]
    with threadpool_limits(limits=1, user_api="blas"), ThreadPoolExecutor(n_jobs or os.cpu_count()) as pool:
        results = list(pool.map(lambda task: fold_r(task[0], Y, task[1], task[2], alphas), tasks))
    shape = (len(feature_sets), len(splits))
    return (np.array([r for r, _ in results]).reshape(*shape, Y.shape[1]),
            np.array([a for _, a in results]).reshape(shape))


def encode(
    features: xr.DataArray,
    neural: xr.DataArray,
    *,
    by_layer: bool = True,
    scheme: str = "kfold",
    n_splits: int | None = None,
    alphas: Sequence[float] = DEFAULT_ALPHAS,
    seed: int = 0,
    ceiled: bool = False,
    n_jobs: int | None = None,
) -> xr.DataArray:
    """Cross-validated encoding r of ``neural`` from ``features``, [layer, fold, neuroid] (without layer if not
    ``by_layer``: all given units form one feature set, as for localized units).

    Both arrays are [presentation, neuroid] on the same stimuli in the same order (checked on ``stimulus``).
    Every layer sees the same folds. ``ceiled`` divides r by the neural data's ``noise_ceiling``. ``n_jobs``: see
    :func:`cross_validated_r`. The chosen penalties come as the ``alpha`` coordinate.
    """
    if features.sizes["presentation"] != neural.sizes["presentation"] or (
            "stimulus" in features.coords and "stimulus" in neural.coords
            and not np.array_equal(features["stimulus"].values, neural["stimulus"].values)):
        raise ValueError("features and neural responses are not on the same stimuli in the same order")
    if by_layer and "layer" not in features.coords:
        raise ValueError("by_layer=True needs a 'layer' coordinate on the features' neuroids")
    ceilings = neural["noise_ceiling"].values if ceiled else 1.0
    if ceiled and not (np.isfinite(ceilings) & (ceilings > 0)).all():
        raise ValueError("ceiled=True needs a positive noise_ceiling for every neuroid")
    splits = outer_splits(neural.sizes["presentation"], scheme, n_splits, seed)
    Y = neural.values
    neuroids = neural["neuroid_id"].values if "neuroid_id" in neural.coords else np.arange(Y.shape[1])
    layers = np.unique(features["layer"].values) if by_layer else [None]
    sets = ([features.values[:, features["layer"].values == l] for l in layers] if by_layer
            else [features.values])
    r, alpha = cross_validated_r(sets, Y, splits, alphas, n_jobs=n_jobs)
    out = xr.DataArray(
        r / ceilings, dims=("layer", "fold", "neuroid"),
        coords={"layer": list(layers), "fold": np.arange(len(splits)), "neuroid": neuroids,
                "alpha": (("layer", "fold"), alpha)},
        attrs={"scheme": scheme, "ceiled": int(ceiled)},
    )
    return out if by_layer else out.squeeze("layer", drop=True)


def fold_summary(r: xr.DataArray) -> pd.DataFrame:
    """Mean, SD and SE over folds of an :func:`encode` result (averaged over neuroids); one row per layer if any."""
    per_fold = np.atleast_2d(r.mean("neuroid").transpose(..., "fold").values)  # [layer or 1, fold]
    out = pd.DataFrame({"r": per_fold.mean(1), "r_sd": per_fold.std(1, ddof=1)})
    out["r_se"] = out["r_sd"] / np.sqrt(per_fold.shape[1])
    if "layer" in r.dims:
        out.insert(0, "layer", r["layer"].values)
    return out


def summary_rows(r: xr.DataArray, n: int, **keys: Any) -> list[dict[str, Any]]:
    """Results-table rows of an :func:`encode` result: metrics ``r`` (mean over folds) and ``r_fold_se``, per
    layer if it has one (key ``layer``), with ``keys`` added and ``n`` (the number of sentences)."""
    rows = []
    for row in fold_summary(r).to_dict("records"):
        layer = {"layer": int(row["layer"])} if "layer" in row else {}
        rows += [{**keys, **layer, "metric": metric, "value": float(row[col]), "n": n}
                 for metric, col in (("r", "r"), ("r_fold_se", "r_se"))]
    return rows


def encoding_rows(model: nn.Module, neural: xr.DataArray, *, pooling: str = "last", batch_size: int = 64,
                  **encode_kw: Any) -> list[dict[str, Any]]:
    """Results-table rows of per-layer encoding (task :data:`TASK`), see :func:`summary_rows`.
    ``encode_kw`` go to :func:`encode`."""
    X = sentence_features(model, list(neural["stimulus"].values), pooling=pooling, batch_size=batch_size)
    return summary_rows(encode(X, neural, **encode_kw), neural.sizes["presentation"])


def final_by_layer(results: pd.DataFrame, task: str = TASK, metric: str = "r") -> pd.DataFrame:
    """Each seed's final ``metric`` per layer from the results table: layers as rows, (condition, seed) columns."""
    rows = final_rows(select(results, task, metric, breakdown="layer")).astype({"layer": int})
    return rows.pivot_table(index="layer", columns=["condition", "seed"], values="value")
