"""Encoding models: cross-validated ridge regression from model features to neural responses (DESIGN.md §5).

Two protocols (:data:`PROTOCOLS`); both use outer splits (5-fold shuffled KFold, the authors'; or 10 shuffle splits
90/10, Brain-Score's), choose the penalty on the training fold by efficient leave-one-out CV (the scheme of
scikit-learn's ``RidgeCV`` with its default ``cv=None``: mean squared LOO error from the hat matrix), and score
Pearson r between held-out predictions and responses (NaN, from constant predictions, counts as 0):

* ``authors`` (Kotar & Tuckute's NeuralAlignment code, the default): raw features, penalties 10**-30 .. 10**29,
  one penalty per target (``RidgeCV(alphas=..., alpha_per_target=True)``), :class:`LooRidge`;
* ``standardized``: features standardised with the training fold's mean and SD, penalties logspace(-3, 7, 20),
  one penalty for all targets, :class:`RidgePath`.

Speed: both eigendecompose the smaller of Xc^T Xc and Xc Xc^T (Xc: the centred training features) once per fold;
LOO errors then follow for every penalty by cheap products. The (layer, fold) fits run in parallel threads with
single-threaded BLAS.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
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
AUTHORS_ALPHAS = np.array([10.0 ** x for x in range(-30, 30)])  # the authors' RidgeCV grid
SCHEMES = {"kfold": 5, "shuffle": 10}  # scheme -> default number of splits


@dataclass(frozen=True)
class Protocol:
    """How one outer fold is fitted: the penalty grid, whether features are standardised on the training fold, and
    whether each target gets its own penalty."""

    alphas: np.ndarray
    standardize: bool
    per_target: bool


PROTOCOLS = {
    "authors": Protocol(AUTHORS_ALPHAS, standardize=False, per_target=True),
    "standardized": Protocol(DEFAULT_ALPHAS, standardize=True, per_target=False),
}
DEFAULT_PROTOCOL = "authors"  # Figure 1D comes from the authors' code


def get_protocol(name: str) -> Protocol:
    """The :data:`PROTOCOLS` entry ``name``; a ValueError names the choices."""
    try:
        return PROTOCOLS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown encoding protocol {name!r}; choose from {list(PROTOCOLS)}") from None


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


class LooRidge:
    """``RidgeCV(alphas, alpha_per_target=True)`` (intercept, ``cv=None``) in closed form: per target, the first
    penalty with the smallest mean squared efficient-LOO error, then the ridge at that penalty.

    Like scikit-learn it centres X and Y, eigendecomposes Xc Xc^T when n <= p and Xc^T Xc otherwise, keeps every
    eigenvalue, and writes the LOO errors in the form that stays finite as the penalty goes to 0 (for n <= p, the
    dual: e = c / diag(G^-1) with G = Xc Xc^T + a I and the intercept's direction taken out of diag(G^-1)). So
    penalties down to 1e-30 on raw, wide features give the same choice as ``RidgeCV``; all penalties come from one
    decomposition, a chunk of penalties at a time.
    """

    def __init__(self, X: np.ndarray, Y: np.ndarray, alphas: Sequence[float]):
        X, Y = np.asarray(X, dtype=np.float64), _as_2d(Y)
        if X.ndim != 2 or len(X) != len(Y):
            raise ValueError(f"X must be [n, p] and Y [n] or [n, t] with the same n; got {X.shape} and {Y.shape}")
        self.alphas = np.asarray(alphas, dtype=np.float64)
        self.x_mean, self.y_mean = X.mean(0), Y.mean(0)
        self._Xc, self._Yc = X - self.x_mean, Y - self.y_mean
        n, p = X.shape
        self._dual = n <= p
        ones = np.ones(n)
        if self._dual:  # G^-1 = Q diag(1 / (ev + a)) Q^T
            self._ev, self._Q = np.linalg.eigh(self._Xc @ self._Xc.T)
            self._QtY, self._Qt1 = self._Q.T @ self._Yc, self._Q.T @ ones
        else:  # H^-1 = V diag(1 / (ev + a)) V^T, H = Xc^T Xc + a I
            self._ev, V = np.linalg.eigh(self._Xc.T @ self._Xc)
            self._V, self._XV = V, self._Xc @ V
            self._VtXtY, self._VtXt1 = V.T @ (self._Xc.T @ self._Yc), V.T @ (self._Xc.T @ ones)
        self.loo_mse = np.concatenate([self._loo_mse(chunk) for chunk in self._chunks()])  # [A, t]
        self.alpha_index = self._first_minimum(self.loo_mse)  # [t]
        self.alpha_ = self.alphas[self.alpha_index]
        self.coef_ = np.stack([self._coef(self.alpha_[j])[:, j] for j in range(Y.shape[1])])  # [t, p]
        self.intercept_ = self.y_mean - self.coef_ @ self.x_mean

    def _chunks(self, budget: int = 2 ** 22) -> list[np.ndarray]:
        """The penalties in chunks whose [n, chunk, t] intermediates hold about ``budget`` numbers."""
        size = max(1, budget // self._Yc.size)
        return [self.alphas[i:i + size] for i in range(0, len(self.alphas), size)]

    def _loo_mse(self, alphas: np.ndarray) -> np.ndarray:
        """Mean squared LOO error per penalty and target, [A, t]."""
        n, t = self._Yc.shape
        D = 1.0 / (self._ev[None, :] + alphas[:, None])  # [A, r]
        A, r = D.shape
        if self._dual:  # e = c / d, c = G^-1 y, d = diag(G^-1) - (G^-1 1) / n
            c = (self._Q @ (D.T[:, :, None] * self._QtY[:, None, :]).reshape(r, A * t)).reshape(n, A, t)
            d = (self._Q ** 2) @ D.T - (self._Q @ (D.T * self._Qt1[:, None])) / n  # [n, A]
        else:  # a e = a c / a d, a c = y - Xc H^-1 Xc^T y, a d = 1 - diag(Xc H^-1 Xc^T) - (1 - Xc H^-1 Xc^T 1) / n
            c = self._Yc[:, None, :] - (self._XV @ (D.T[:, :, None] * self._VtXtY[:, None, :]).reshape(r, A * t)
                                        ).reshape(n, A, t)
            d = 1.0 - (self._XV ** 2) @ D.T - (1.0 - self._XV @ (D.T * self._VtXt1[:, None])) / n
        with np.errstate(divide="ignore", invalid="ignore"):
            return ((c / d[:, :, None]) ** 2).mean(0)

    @staticmethod
    def _first_minimum(mse: np.ndarray) -> np.ndarray:
        """Per target, the first penalty that no later one beats (``RidgeCV``'s strict-improvement scan: NaN errors
        never win, and a NaN at the first penalty is never replaced)."""
        best = np.argmin(np.where(np.isnan(mse), np.inf, mse), axis=0)
        return np.where(np.isnan(mse[0]), 0, best)

    def _coef(self, alpha: float) -> np.ndarray:
        """Coefficients [p, t] at one penalty (Xc^T c in the dual, H^-1 Xc^T y otherwise)."""
        if self._dual:
            return self._Xc.T @ (self._Q @ (self._QtY / (self._ev + alpha)[:, None]))
        return self._V @ (self._VtXtY / (self._ev + alpha)[:, None])

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Predictions [m, t] (X @ coef + intercept, as scikit-learn's ``predict``)."""
        return np.asarray(X, dtype=np.float64) @ self.coef_.T + self.intercept_


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


def fold_r(X: np.ndarray, Y: np.ndarray, train: np.ndarray, test: np.ndarray, alphas: Sequence[float] | None = None,
           protocol: str = DEFAULT_PROTOCOL) -> tuple[np.ndarray, np.ndarray]:
    """Held-out Pearson r [t] and the chosen penalties [t] of one outer split under ``protocol`` (see the module
    docstring; ``alphas`` None: the protocol's grid).

    Predictions that are constant (e.g. every test sentence ends in the same token, for layer 0) score 0.
    """
    spec = get_protocol(protocol)
    alphas = spec.alphas if alphas is None else alphas
    Y = _as_2d(Y)
    X_train, X_test = np.asarray(X[train], dtype=np.float64), np.asarray(X[test], dtype=np.float64)
    if spec.standardize:
        X_train, X_test = standardise(X_train, X_test)
    if spec.per_target:
        ridge = LooRidge(X_train, Y[train], alphas)
        predictions, alpha = ridge.predict(X_test), ridge.alpha_
    else:
        path = RidgePath(X_train, Y[train])
        best = path.best_alpha(alphas)
        predictions, alpha = path.predict(X_test, best), np.full(Y.shape[1], best)
    return np.nan_to_num(pearson_columns(predictions, Y[test]), nan=0.0), alpha


def cross_validated_r(
    feature_sets: Sequence[np.ndarray],
    Y: np.ndarray,
    splits: Sequence[tuple[np.ndarray, np.ndarray]],
    alphas: Sequence[float] | None = None,
    *,
    protocol: str = DEFAULT_PROTOCOL,
    n_jobs: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`fold_r` for every feature set (e.g. layer) and split: r and penalties, both [set, fold, t].

    The (set, split) fits run on ``n_jobs`` threads (default: one per CPU), each with single-threaded BLAS: this
    scales better than multi-threaded BLAS on one fit, and does not collapse when the CPU is shared.
    """
    get_protocol(protocol)  # an unknown name fails before any work
    Y = _as_2d(Y)
    tasks = [(X, train, test) for X in feature_sets for train, test in splits]
    with threadpool_limits(limits=1, user_api="blas"), ThreadPoolExecutor(n_jobs or os.cpu_count()) as pool:
        results = list(pool.map(lambda task: fold_r(task[0], Y, task[1], task[2], alphas, protocol), tasks))
    shape = (len(feature_sets), len(splits), Y.shape[1])
    return np.array([r for r, _ in results]).reshape(shape), np.array([a for _, a in results]).reshape(shape)


def encode(
    features: xr.DataArray,
    neural: xr.DataArray,
    *,
    by_layer: bool = True,
    protocol: str = DEFAULT_PROTOCOL,
    scheme: str = "kfold",
    n_splits: int | None = None,
    alphas: Sequence[float] | None = None,
    seed: int = 0,
    ceiled: bool = False,
    n_jobs: int | None = None,
) -> xr.DataArray:
    """Cross-validated encoding r of ``neural`` from ``features``, [layer, fold, neuroid] (without layer if not
    ``by_layer``: all given units form one feature set, as for localized units).

    Both arrays are [presentation, neuroid] on the same stimuli in the same order (checked on ``stimulus``).
    ``protocol``: ``authors`` (default) or ``standardized`` (:data:`PROTOCOLS`, module docstring); ``alphas`` None
    is the protocol's grid. The defaults ``scheme="kfold"``, ``seed=0`` are the authors' ``KFold(5, shuffle=True,
    random_state=0)``. Every layer sees the same folds. ``ceiled`` divides r by the neural data's
    ``noise_ceiling``. ``n_jobs``: see :func:`cross_validated_r`. The chosen penalties come as the ``alpha``
    coordinate [layer, fold, neuroid].
    """
    get_protocol(protocol)
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
    r, alpha = cross_validated_r(sets, Y, splits, alphas, protocol=protocol, n_jobs=n_jobs)
    out = xr.DataArray(
        r / ceilings, dims=("layer", "fold", "neuroid"),
        coords={"layer": list(layers), "fold": np.arange(len(splits)), "neuroid": neuroids,
                "alpha": (("layer", "fold", "neuroid"), alpha)},
        attrs={"protocol": protocol, "scheme": scheme, "ceiled": int(ceiled)},
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
