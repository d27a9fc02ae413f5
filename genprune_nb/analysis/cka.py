"""Linear centered kernel alignment (CKA) between activation matrices: the full form and the minibatch estimator.

Linear CKA compares two representations of the same n inputs, X [n, d1] and Y [n, d2], through their Gram matrices:
CKA = HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L)) with K = X Xᵀ, L = Y Yᵀ (Kornblith et al. 2019); it is invariant to
orthogonal maps and isotropic scaling of either side, not to general invertible linear maps. The *full* form uses
all n rows at once (biased HSIC, tr(K H L H) / (n-1)², H = I - 11ᵀ/n). The *minibatch* form (Nguyen, Raghu &
Kornblith 2021) splits the rows into batches, sums the unbiased HSIC_1 estimator (Song et al. 2012) of every batch
for each of the three HSIC terms and only then takes the ratio: memory is O(batch²) per layer, and the HSIC terms
carry no finite-sample bias, whereas the full form reads high when d is not small against n (two independent
random 2000 x 256 matrices: full 0.11, minibatch 0.00).

Inputs are numpy arrays or torch tensors (computed on the tensor's device); results are float64. A layer whose
activations are constant over the inputs has zero HSIC with itself and gives NaN.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

METHODS = ("minibatch", "full")
MIN_BATCH = 4  # HSIC_1 divides by n (n - 3) and (n - 1)(n - 2)


def _as_matrix(x, name: str) -> torch.Tensor:
    """A 2-D float32/float64 tensor (no copy when possible); integer, bool, float16 and bfloat16 become float32."""
    t = torch.as_tensor(x)
    if t.ndim != 2:
        raise ValueError(f"{name} must be a 2-D activation matrix [n inputs, d units], got shape {tuple(t.shape)}")
    if t.dtype not in (torch.float32, torch.float64):
        t = t.float()
    return t


def _centered(x: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Columns minus their means, in ``dtype`` (default: the input's)."""
    x = x.to(dtype or x.dtype)
    return x - x.mean(0)


def _check_rows(n_a: int, n_b: int, what: str) -> None:
    if n_a != n_b:
        raise ValueError(f"{what} need the same inputs (rows): {n_a} rows vs {n_b} rows")


def _gram_pair(k, l, what: str, min_n: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Two square Gram matrices of the same size as float64 tensors, and n; refuses fewer than ``min_n`` inputs."""
    k, l = torch.as_tensor(k, dtype=torch.float64), torch.as_tensor(l, dtype=torch.float64)
    if k.ndim != 2 or k.shape[0] != k.shape[1] or k.shape != l.shape:
        raise ValueError(f"{what} needs two square Gram matrices of the same size, got {tuple(k.shape)} and "
                         f"{tuple(l.shape)}")
    if k.shape[0] < min_n:
        raise ValueError(f"{what} needs n >= {min_n} inputs, got {k.shape[0]}")
    return k, l, k.shape[0]


def hsic(k, l) -> float:
    """Biased HSIC of two [n, n] Gram matrices, by the definition: tr(K H L H) / (n - 1)², H = I - 11ᵀ/n."""
    k, l, n = _gram_pair(k, l, "hsic", 2)
    h = torch.eye(n, dtype=torch.float64, device=k.device) - 1.0 / n
    return float(torch.trace(k @ h @ l @ h)) / (n - 1) ** 2


def hsic1(k, l) -> float:
    """Unbiased HSIC_1 of two [n, n] Gram matrices (n >= 4); the diagonals are ignored (set to zero)."""
    k, l, n = _gram_pair(k, l, "the unbiased HSIC_1", MIN_BATCH)
    k, l = k.clone().fill_diagonal_(0.0), l.clone().fill_diagonal_(0.0)
    return float(_hsic1_terms((k * l.T).sum(), k.sum() * l.sum(), k.sum(0) @ l.sum(1), n))


def _hsic1_terms(trace, sum_product, rows, n: int):
    """HSIC_1 from its parts (elementwise, so it serves every layer pair at once): tr(K̃L̃), (1ᵀK̃1)(1ᵀL̃1), 1ᵀK̃L̃1."""
    return (trace + sum_product / ((n - 1) * (n - 2)) - rows * (2.0 / (n - 2))) / (n * (n - 3))


def linear_cka(x, y) -> float:
    """Full-form linear CKA of X [n, d1] and Y [n, d2] (float64).

    With d1, d2 < n it uses the feature-space form ||Ycᵀ Xc||_F² / (||Xcᵀ Xc||_F ||Ycᵀ Yc||_F) (column-centred X, Y),
    otherwise the Gram form with centred Gram matrices; both equal HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L)).
    """
    x, y = _as_matrix(x, "x"), _as_matrix(y, "y")
    _check_rows(x.shape[0], y.shape[0], "linear_cka: x and y")
    if x.shape[0] < 2:
        raise ValueError(f"linear_cka needs n >= 2 inputs, got {x.shape[0]}")
    xc, yc = _centered(x, torch.float64), _centered(y, torch.float64)
    if max(x.shape[1], y.shape[1]) < x.shape[0]:
        return _feature_cka(xc, yc)
    return _gram_cka(xc, yc)


def _feature_cka(xc: torch.Tensor, yc: torch.Tensor) -> float:
    cross = torch.linalg.matrix_norm(yc.T @ xc) ** 2
    return float(cross / (torch.linalg.matrix_norm(xc.T @ xc) * torch.linalg.matrix_norm(yc.T @ yc)))


def _gram_cka(xc: torch.Tensor, yc: torch.Tensor) -> float:
    """CKA from the Gram matrices of centred features (already centred: H K H = K), so HSIC ∝ sum(K * L)."""
    k, l = xc @ xc.T, yc @ yc.T
    return float((k * l).sum() / torch.sqrt((k * k).sum() * (l * l).sum()))


def minibatch_cka(x, y, *, batch_size: int = 256, seed: int | None = None) -> float:
    """The unbiased minibatch estimate of linear CKA between X [n, d1] and Y [n, d2] (see :func:`cka_matrix`)."""
    return float(cka_matrix([x], [y], method="minibatch", batch_size=batch_size, seed=seed)[0, 0])


def _as_layers(layers, name: str) -> list[torch.Tensor]:
    """A sequence of [n, d] matrices (or an [L, n, d] stack) as a list of 2-D tensors with the same n."""
    if isinstance(layers, (np.ndarray, torch.Tensor)):
        if layers.ndim != 3:
            raise ValueError(f"{name} as one array must be an [L layers, n inputs, d units] stack, got shape "
                             f"{tuple(layers.shape)}")
        layers = list(layers)
    out = [_as_matrix(x, f"{name}[{i}]") for i, x in enumerate(layers)]
    if not out:
        raise ValueError(f"{name} holds no layers")
    for i, x in enumerate(out):
        _check_rows(out[0].shape[0], x.shape[0], f"all layers of {name} ({name}[0] and {name}[{i}])")
    return out


def cka_matrix(
    a_layers: Sequence | np.ndarray | torch.Tensor,
    b_layers: Sequence | np.ndarray | torch.Tensor,
    *,
    method: str = "minibatch",
    batch_size: int = 256,
    seed: int | None = None,
) -> np.ndarray:
    """[La, Lb] linear CKA between every layer of A and every layer of B, computed over the same n inputs.

    ``a_layers``/``b_layers``: sequences of [n, d_i] matrices or [L, n, d] stacks (rows = the same inputs, in the
    same order). ``method="minibatch"``: the unbiased estimator over batches of ``batch_size`` rows; a trailing
    batch of 4 or more rows is used as it is, a remainder of fewer than 4 rows (too few for HSIC_1) is dropped.
    ``seed=None`` (the default) batches the rows in their given order; an integer first shuffles them with
    ``numpy.random.default_rng(seed).permutation(n)`` — do so when neighbouring rows are correlated (consecutive
    tokens of a sequence), since the estimator assumes exchangeable rows. ``method="full"``: :func:`linear_cka` for
    every pair (``batch_size`` and ``seed`` are unused). Passing the same object as A and B reuses its work.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    same = a_layers is b_layers
    a = _as_layers(a_layers, "a_layers")
    b = a if same else _as_layers(b_layers, "b_layers")
    _check_rows(a[0].shape[0], b[0].shape[0], "cka_matrix: a_layers and b_layers")
    n = a[0].shape[0]
    if method == "full":
        return _full_matrix(a, b, same)
    if batch_size < MIN_BATCH:
        raise ValueError(f"batch_size must be >= {MIN_BATCH} for the unbiased HSIC_1, got {batch_size}")
    if n < MIN_BATCH:
        raise ValueError(f"the minibatch estimator needs n >= {MIN_BATCH} inputs, got {n}")
    return _minibatch_matrix(a, b, same, batch_size, seed)


def _full_matrix(a: list[torch.Tensor], b: list[torch.Tensor], same: bool) -> np.ndarray:
    """Feature-space form for every pair; cross-covariances in the input precision, norms in float64."""
    n = a[0].shape[0]
    if n < 2:
        raise ValueError(f"linear CKA needs n >= 2 inputs, got {n}")
    if max(x.shape[1] for x in a + b) >= n:  # wide layers: Gram form pair by pair
        out = np.array([[linear_cka(x, y) for y in b] for x in a])
        return out
    bc = [_centered(y) for y in b]
    b_norm = torch.stack([torch.linalg.matrix_norm((y.T @ y).double()) for y in bc]).cpu()
    out = np.empty((len(a), len(b)))
    for i, x in enumerate(a):
        xc = bc[i] if same else _centered(x)
        x_norm = b_norm[i] if same else torch.linalg.matrix_norm((xc.T @ xc).double()).cpu()
        for j, yc in enumerate(bc):
            if same and j < i:
                out[i, j] = out[j, i]
                continue
            cross = torch.linalg.matrix_norm((yc.T @ xc.to(yc.dtype)).double()).cpu() ** 2
            out[i, j] = float(cross / (x_norm * b_norm[j]))
    return out


def _minibatch_matrix(a: list[torch.Tensor], b: list[torch.Tensor], same: bool, batch_size: int,
                      seed: int | None) -> np.ndarray:
    n, device = a[0].shape[0], a[0].device
    order = None if seed is None else torch.from_numpy(np.random.default_rng(seed).permutation(n)).to(device)
    # HSIC_1 is invariant to a constant shift of the features: removing the means (in the input precision; any
    # approximate mean will do) only keeps large offsets, such as a residual stream's, from costing precision
    means_a = [x.mean(0) for x in a]
    means_b = means_a if same else [y.mean(0) for y in b]
    f64 = dict(dtype=torch.float64, device=device)
    cross = torch.zeros(len(a), len(b), **f64)
    self_a, self_b = torch.zeros(len(a), **f64), torch.zeros(len(b), **f64)
    n_used = n - (n % batch_size if n % batch_size < MIN_BATCH else 0)  # drop a remainder of < 4 rows
    for start in range(0, n_used, batch_size):
        stop = min(start + batch_size, n_used)
        # sorted within the batch: HSIC_1 ignores the order of a batch's rows, and sorted gathers are faster
        idx = slice(start, stop) if order is None else order[start:stop].sort().values
        m = stop - start
        ga, ra = _batch_grams(a, means_a, idx)
        gb, rb = (ga, ra) if same else _batch_grams(b, means_b, idx)
        sa, sb = ra.sum(1), rb.sum(1)
        cross += _hsic1_terms(ga @ gb.T, torch.outer(sa, sb), ra @ rb.T, m)
        self_a += _hsic1_terms((ga * ga).sum(1), sa * sa, (ra * ra).sum(1), m)
        if not same:
            self_b += _hsic1_terms((gb * gb).sum(1), sb * sb, (rb * rb).sum(1), m)
    if same:
        self_b = self_a
    return (cross / torch.sqrt(torch.outer(self_a, self_b))).cpu().numpy()


def _batch_grams(layers: list[torch.Tensor], means: list[torch.Tensor], idx) -> tuple[torch.Tensor, torch.Tensor]:
    """The batch's Gram matrices with zeroed diagonal, flattened to G [L, m²], and their row sums R [L, m] (float64).

    Then tr(K̃L̃) = G_a G_bᵀ (the Grams are symmetric) and 1ᵀK̃L̃1 = R_a R_bᵀ for all layer pairs at once. The Grams
    are computed in the features' precision from mean-removed rows and accumulated in float64.
    """
    m = idx.stop - idx.start if isinstance(idx, slice) else len(idx)
    grams = torch.empty(len(layers), m * m, dtype=torch.float64, device=layers[0].device)
    for g, x, mu in zip(grams, layers, means):
        xb = (x[idx] - mu) if isinstance(idx, slice) else x.index_select(0, idx).sub_(mu)
        g.view(m, m).copy_(xb @ xb.T).fill_diagonal_(0.0)
    return grams, grams.view(len(layers), m, m).sum(2)
