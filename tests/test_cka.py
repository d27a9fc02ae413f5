"""Linear CKA (genprune_nb.analysis.cka), the model-level helpers (genprune_nb.analysis.representations) and their
figures (genprune_nb.report.representations)."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
import torch
import xarray as xr

from genprune_nb.analysis.cka import (  # the two full-form branches, compared directly
    _feature_cka,
    _gram_cka,
    cka_matrix,
    hsic,
    hsic1,
    linear_cka,
    minibatch_cka,
)
from genprune_nb.analysis.representations import layer_cka, model_cka, sample_token_windows
from genprune_nb.config import ModelConfig
from genprune_nb.data.shards import write_shard
from genprune_nb.model.features import token_features
from genprune_nb.model.gpt import GPT
from genprune_nb.report.representations import plot_cka_heatmaps, plot_cka_lines


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Small matmuls: one thread is faster and steadier than two on a shared 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def correlated(n: int, d1: int, d2: int, *, seed: int = 0, latent: int = 8, noise: float = 1.0):
    """Two views of a shared latent: X = Z A + noise, Y = Z B + noise (float64)."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, latent))
    x = z @ rng.standard_normal((latent, d1)) + noise * rng.standard_normal((n, d1))
    y = z @ rng.standard_normal((latent, d2)) + noise * rng.standard_normal((n, d2))
    return x, y


def orthogonal(d: int, seed: int) -> np.ndarray:
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((d, d)))
    return q


def literal_hsic1(k: np.ndarray, l: np.ndarray) -> float:
    """HSIC_1 written as the formula reads, with explicit ones vectors (no shortcuts)."""
    n = k.shape[0]
    kt, lt = k - np.diag(np.diag(k)), l - np.diag(np.diag(l))
    one = np.ones(n)
    return float((np.trace(kt @ lt) + (one @ kt @ one) * (one @ lt @ one) / ((n - 1) * (n - 2))
                  - 2.0 / (n - 2) * one @ kt @ lt @ one) / (n * (n - 3)))


def literal_minibatch_cka(x: np.ndarray, y: np.ndarray, batches: list[slice]) -> float:
    hxy = hxx = hyy = 0.0
    for rows in batches:
        k, l = x[rows] @ x[rows].T, y[rows] @ y[rows].T
        hxy, hxx, hyy = hxy + literal_hsic1(k, l), hxx + literal_hsic1(k, k), hyy + literal_hsic1(l, l)
    return hxy / np.sqrt(hxx * hyy)


# --- the math -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n,d", [(200, 16), (10, 30)])  # feature-space form, Gram form
def test_self_similarity_is_one(n, d):
    x, _ = correlated(n, d, 1, seed=1)
    assert linear_cka(x, x) == pytest.approx(1.0, abs=1e-12)
    assert minibatch_cka(x, x, batch_size=8, seed=0) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("method", ["full", "minibatch"])
def test_invariant_to_orthogonal_maps_and_isotropic_scaling(method):
    x, y = correlated(600, 24, 16, seed=2)
    base = cka_matrix([x], [y], method=method, batch_size=64, seed=0)[0, 0]
    assert 0.2 < base < 0.95  # a non-trivial value, so invariance means something
    for xt, yt in [(x @ orthogonal(24, 3), y), (x, y @ orthogonal(16, 4)), (3.7 * x, y), (x, 0.01 * y),
                   (-x @ orthogonal(24, 5) * 250.0, y @ orthogonal(16, 6) / 9.0)]:
        assert cka_matrix([xt], [yt], method=method, batch_size=64, seed=0)[0, 0] == pytest.approx(base, abs=1e-10)


@pytest.mark.parametrize("method", ["full", "minibatch"])
def test_not_invariant_to_an_ill_conditioned_linear_map(method):
    x, y = correlated(2000, 32, 24, seed=0)
    a = orthogonal(32, 1) @ np.diag(np.logspace(-2, 2, 32)) @ orthogonal(32, 2)  # invertible, condition 1e4
    assert np.linalg.cond(a) == pytest.approx(1e4, rel=1e-6)
    before = cka_matrix([x], [y], method=method, batch_size=256, seed=0)[0, 0]
    after = cka_matrix([x @ a], [y], method=method, batch_size=256, seed=0)[0, 0]
    assert before - after > 0.1  # measured: 0.669 -> 0.462 (full form)
    assert cka_matrix([x], [x @ a], method=method, batch_size=256, seed=0)[0, 0] < 0.8  # measured 0.60


def test_full_form_equals_hsic_definition_and_the_two_forms_agree():
    rng = np.random.default_rng(7)
    for n, d1, d2 in [(9, 20, 12), (15, 4, 6)]:  # Gram branch (d >= n), then feature-space branch (d < n)
        x, y = rng.standard_normal((n, d1)) + 3.0, rng.standard_normal((n, d2)) @ rng.standard_normal((d2, d2))
        k, l = x @ x.T, y @ y.T  # uncentred: the definition's H does the centring
        by_definition = hsic(k, l) / np.sqrt(hsic(k, k) * hsic(l, l))
        assert linear_cka(x, y) == pytest.approx(by_definition, rel=1e-10)
        xc, yc = (torch.as_tensor(m - m.mean(0)) for m in (x, y))
        assert _gram_cka(xc, yc) == pytest.approx(by_definition, rel=1e-10)
        assert _feature_cka(xc, yc) == pytest.approx(by_definition, rel=1e-10)
    # and the HSIC definition itself on a case small enough to do by hand: H K H with n = 2
    assert hsic([[1.0, 0.0], [0.0, 0.0]], [[1.0, 0.0], [0.0, 0.0]]) == pytest.approx(0.25)


def test_hsic1_of_one_batch_equals_the_literal_formula():
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((6, 3)), rng.standard_normal((6, 5))
    k, l = x @ x.T, y @ y.T
    assert hsic1(k, l) == pytest.approx(literal_hsic1(k, l), rel=1e-12)
    assert hsic1(k, k) == pytest.approx(literal_hsic1(k, k), rel=1e-12)
    # one batch through cka_matrix: the same three HSIC_1 terms
    expected = literal_hsic1(k, l) / np.sqrt(literal_hsic1(k, k) * literal_hsic1(l, l))
    assert cka_matrix([x], [y], batch_size=6)[0, 0] == pytest.approx(expected, rel=1e-10)


def test_minibatch_sums_hsic1_over_batches_and_drops_a_remainder_below_four():
    x, y = correlated(14, 5, 4, seed=4)
    # 14 rows in batches of 5: 5 + 5 + 4, the last (4 rows) is used
    assert minibatch_cka(x, y, batch_size=5) == pytest.approx(
        literal_minibatch_cka(x, y, [slice(0, 5), slice(5, 10), slice(10, 14)]), rel=1e-10)
    # 13 rows in batches of 5: 5 + 5 + 3, the 3-row remainder is dropped
    assert minibatch_cka(x[:13], y[:13], batch_size=5) == pytest.approx(
        literal_minibatch_cka(x, y, [slice(0, 5), slice(5, 10)]), rel=1e-10)


def test_minibatch_agrees_with_the_full_form_on_a_large_sample():
    """Tolerance 0.01: over 30 draws like this one (n = 20,000, d = 64 x 48, CKA 0.3-0.85, batches of 256) the
    largest |minibatch - full| measured was 0.003; the full form's own bias at d/n = 0.003 is of that order."""
    x, y = correlated(20_000, 64, 48, seed=5, noise=2.0)
    full = linear_cka(x, y)
    assert 0.3 < full < 0.9
    assert abs(minibatch_cka(x, y, batch_size=256, seed=0) - full) < 0.01
    assert abs(minibatch_cka(x, y, batch_size=256, seed=None) - full) < 0.01


def test_minibatch_is_unbiased_where_the_full_form_is_not():
    """Independent X and Y: population CKA 0; the biased full form reads ~d/n high, HSIC_1 does not."""
    rng = np.random.default_rng(6)
    x, y = rng.standard_normal((2000, 256)), rng.standard_normal((2000, 256))
    assert linear_cka(x, y) > 0.08  # measured 0.114
    assert abs(minibatch_cka(x, y, batch_size=256, seed=0)) < 0.02  # measured -0.001


def test_cka_matrix_equals_pairwise_cka():
    a = [correlated(300, d, 1, seed=10 + d)[0] for d in (8, 16, 12)]  # layers of different widths
    b = np.stack([correlated(300, 10, 10, seed=20 + i)[1] for i in range(2)])  # an [L, n, d] stack
    b[1, :, :8] += 2.0 * a[0]  # one layer of B shares a lot with one layer of A
    full = cka_matrix(a, b, method="full")
    assert full.shape == (3, 2)
    np.testing.assert_allclose(full, [[linear_cka(x, y) for y in b] for x in a], rtol=1e-10)
    mini = cka_matrix(a, b, method="minibatch", batch_size=64, seed=3)
    np.testing.assert_allclose(mini, [[minibatch_cka(x, y, batch_size=64, seed=3) for y in b] for x in a],
                               rtol=1e-10)
    assert np.abs(mini - full).max() < 0.15 and not np.allclose(mini, full)
    # the same object on both sides: symmetric, ones on the diagonal, equal to passing a copy
    for method in ("full", "minibatch"):
        own = cka_matrix(a, a, method=method, batch_size=64, seed=3)
        np.testing.assert_allclose(own, own.T, rtol=1e-12)
        np.testing.assert_allclose(np.diag(own), 1.0, rtol=1e-12)
        np.testing.assert_allclose(own, cka_matrix(a, [x.copy() for x in a], method=method, batch_size=64, seed=3),
                                   rtol=1e-10)
    # float32 tensors give the float64 answer to float32 precision
    a32 = [torch.as_tensor(x, dtype=torch.float32) for x in a]
    np.testing.assert_allclose(cka_matrix(a32, b.astype(np.float32), method="full"), full, atol=1e-5)
    np.testing.assert_allclose(cka_matrix(a32, b.astype(np.float32), batch_size=64, seed=3), mini, atol=1e-5)


def test_seed_shuffles_rows_before_batching():
    x, y = correlated(400, 6, 5, seed=8)
    order = np.random.default_rng(11).permutation(400)
    shuffled = minibatch_cka(x, y, batch_size=32, seed=11)
    assert shuffled == pytest.approx(minibatch_cka(x[order], y[order], batch_size=32, seed=None), rel=1e-12)
    assert shuffled != pytest.approx(minibatch_cka(x, y, batch_size=32, seed=None), rel=1e-6)


def test_a_constant_layer_gives_nan_not_an_error():
    x, y = correlated(40, 4, 3)
    for method in ("full", "minibatch"):
        out = cka_matrix([x, np.full((40, 5), 2.5)], [y], method=method, batch_size=8)
        assert np.isfinite(out[0, 0]) and np.isnan(out[1, 0])


def test_errors_name_the_problem():
    x, y = correlated(50, 4, 3)
    with pytest.raises(ValueError, match="same inputs.*50 rows vs 49 rows"):
        linear_cka(x, y[:49])
    with pytest.raises(ValueError, match="a_layers and b_layers.*50 rows vs 40 rows"):
        cka_matrix([x], [y[:40]])
    with pytest.raises(ValueError, match=r"a_layers\[0\] and a_layers\[1\]"):
        cka_matrix([x, x[:10]], [y])
    with pytest.raises(ValueError, match="x must be a 2-D activation matrix.*\\(50,\\)"):
        linear_cka(x[:, 0], y)
    with pytest.raises(ValueError, match=r"b_layers\[1\] must be a 2-D"):
        cka_matrix([x], [y, y[None]])
    with pytest.raises(ValueError, match="stack"):
        cka_matrix(x, [y])
    with pytest.raises(ValueError, match="needs n >= 4 inputs, got 3"):
        cka_matrix([x[:3]], [y[:3]])
    with pytest.raises(ValueError, match="batch_size must be >= 4"):
        cka_matrix([x], [y], batch_size=3)
    with pytest.raises(ValueError, match="n >= 4"):
        hsic1(np.eye(3), np.eye(3))
    with pytest.raises(ValueError, match="method must be one of"):
        cka_matrix([x], [y], method="rbf")
    with pytest.raises(ValueError, match="holds no layers"):
        cka_matrix([], [y])


# --- models and features -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_gpts():
    cfg = ModelConfig(n_layer=2, n_head=2, n_embd=32, block_size=64)
    return GPT(cfg, seed=1), GPT(cfg, seed=2)


@pytest.fixture(scope="module")
def tokens():
    return torch.from_numpy(np.random.default_rng(0).integers(0, 50257, size=(6, 48)))


def test_token_features_are_the_hidden_states(small_gpts, tokens):
    model = small_gpts[0]
    feats = token_features(model, tokens, batch_size=4)
    assert feats.dims == ("presentation", "neuroid") and feats.shape == (6 * 48, 3 * 32)
    assert feats.dtype == np.float32
    np.testing.assert_array_equal(np.unique(feats["layer"]), [0, 1, 2])
    np.testing.assert_array_equal(feats["sequence"].values[47:49], [0, 1])
    np.testing.assert_array_equal(feats["position"].values[47:49], [47, 0])
    with torch.no_grad():
        hidden = model.hidden_states(tokens)
    for layer in range(3):
        got = feats.values[:, feats["layer"].values == layer]
        np.testing.assert_allclose(got, hidden[layer].reshape(-1, 32).numpy(), rtol=1e-5, atol=1e-6)
    only = token_features(model, tokens[:2], layers=[2])
    np.testing.assert_allclose(only.values, hidden[2][:2].reshape(-1, 32).numpy(), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match=r"layers \[3\] out of range 0..2"):
        token_features(model, tokens, layers=[0, 3])
    with pytest.raises(ValueError, match="block_size 64"):
        token_features(model, torch.zeros(1, 65, dtype=torch.long))
    with pytest.raises(ValueError, match=r"integer tensor \[n_seq, T\]"):
        token_features(model, tokens[0])


def test_layer_and_model_cka(small_gpts, tokens):
    a, b = small_gpts
    own = model_cka(a, a, tokens, batch_size=64)
    assert own.dims == ("layer_a", "layer_b") and own.shape == (3, 3)
    np.testing.assert_array_equal(own["layer_a"], [0, 1, 2])
    np.testing.assert_allclose(np.diag(own.values), 1.0, rtol=1e-9)
    feats_a, feats_b = token_features(a, tokens), token_features(b, tokens)
    np.testing.assert_allclose(layer_cka(feats_a, feats_a.copy(), batch_size=64).values, own.values, rtol=1e-9)
    cross = model_cka(a, b, tokens, batch_size=64)
    np.testing.assert_allclose(cross.values, layer_cka(feats_a, feats_b, batch_size=64).values, rtol=1e-9)
    assert np.all(np.abs(cross.values) < 1.0) and np.all(np.diag(cross.values) < 0.99)
    full = layer_cka(feats_a, feats_b, method="full")
    np.testing.assert_allclose(full.values, [[linear_cka(feats_a.values[:, feats_a["layer"].values == i],
                                                         feats_b.values[:, feats_b["layer"].values == j])
                                              for j in range(3)] for i in range(3)], rtol=1e-5)
    assert full.attrs["method"] == "full" and cross.attrs["seed"] == 0


def test_layer_cka_errors(small_gpts, tokens):
    feats = token_features(small_gpts[0], tokens)
    with pytest.raises(ValueError, match="same presentations: 288 vs 240"):
        layer_cka(feats, feats.isel(presentation=slice(0, 240)))
    with pytest.raises(ValueError, match="presentation coordinate 'position'"):
        layer_cka(feats, feats.assign_coords(position=("presentation", feats["position"].values[::-1].copy())))
    with pytest.raises(ValueError, match="no 'layer' coordinate"):
        layer_cka(feats, feats.drop_vars("layer"))
    with pytest.raises(ValueError, match=r"dims \(presentation, neuroid\)"):
        layer_cka(feats, xr.DataArray(np.zeros((288, 3)), dims=("x", "y")))


def test_sample_token_windows(tmp_path):
    first, second = tmp_path / "v_val_000000.bin", tmp_path / "v_val_000001.bin"
    write_shard(first, np.arange(1000) % 50000)
    write_shard(second, 5000 + np.arange(530))
    windows = sample_token_windows([first, second], n_tokens=700, seq_len=64, seed=0, vocab_size=50304)
    assert windows.dtype == torch.long and windows.shape == (11, 64)  # ceil(700 / 64)
    # every window is an aligned, contiguous run of one shard, and no window repeats
    starts = windows[:, 0].numpy()
    assert np.all(np.diff(windows.numpy(), axis=1) == 1)
    assert np.all(((starts < 1000) & (starts % 64 == 0)) | ((starts >= 5000) & ((starts - 5000) % 64 == 0)))
    assert len(set(starts.tolist())) == 11
    assert torch.equal(windows, sample_token_windows([first, second], 700, 64, seed=0, vocab_size=50304))
    assert not torch.equal(windows, sample_token_windows([first, second], 700, 64, seed=1, vocab_size=50304))
    head = sample_token_windows([first, second], 64 * 3, 64, seed=None, vocab_size=50304)
    np.testing.assert_array_equal(head.numpy().ravel(), np.arange(192))
    # 15 windows of 64 in the first shard (960 tokens) + 8 in the second: 23 at most
    assert sample_token_windows([first, second], 23 * 64, 64, vocab_size=50304).shape == (23, 64)
    with pytest.raises(ValueError, match="hold only 23 such windows.*v_val_000000.bin, .*v_val_000001.bin"):
        sample_token_windows([first, second], 23 * 64 + 1, 64, vocab_size=50304)


def test_sample_token_windows_refuses_ids_the_model_cannot_embed(tmp_path):
    """A shard made with another tokenizer (ids >= vocab_size) is named at sampling, not an index error later."""
    fine, foreign = tmp_path / "v_val_000000.bin", tmp_path / "v_val_000001.bin"
    write_shard(fine, np.arange(640) % 1000)
    write_shard(foreign, np.full(640, 60000))
    with pytest.raises(ValueError, match=r"v_val_000001.bin: token id 60000 is outside .*vocab_size 50304"):
        sample_token_windows([fine, foreign], 640 * 2, 64, vocab_size=50304)
    assert sample_token_windows([fine, foreign], 640, 64, seed=None, vocab_size=50304).max() < 640  # the foreign shard is not read
    with pytest.raises(ValueError, match="v_val_000000.bin: token id 639 .*vocab_size 600"):
        sample_token_windows([fine], 640, 64, vocab_size=600)


def test_plot_cka_heatmaps(small_gpts, tokens):
    a, b = small_gpts
    matrices = {"A vs A": model_cka(a, a, tokens, batch_size=64), "A vs B": model_cka(a, b, tokens, batch_size=64)}
    fig = plot_cka_heatmaps(matrices)
    axes = fig.axes
    assert [ax.get_title() for ax in axes[:2]] == ["A vs A", "A vs B"]
    assert [t.get_text() for t in axes[0].get_xticklabels()] == ["emb", "1", "2"]
    assert axes[0].images[0].get_clim() == (0.0, 1.0)
    assert len(axes[0].texts) == 9  # annotated: 3 layers <= 8
    bar = plot_cka_heatmaps(matrices, annotate=False)
    assert len(bar.axes) == 3 and not bar.axes[0].texts  # two panels and a colourbar
    with pytest.raises(ValueError, match="dims"):
        plot_cka_heatmaps({"bad": matrices["A vs B"].T})
    import matplotlib.pyplot as plt
    plt.close("all")


def test_the_study_comparisons(small_gpts, tokens):
    from genprune_nb.analysis.representations import (
        cka_over_training,
        condition_cka,
        consecutive_cka,
        diagonal_cka,
        features_of,
        pairwise_cka,
    )

    a, b = small_gpts
    feats = features_of({"A": a, "B": b, "A again": a}, tokens)
    pairs = consecutive_cka(feats, batch_size=64)
    assert list(pairs) == ["A → B", "B → A again"]
    np.testing.assert_allclose(pairs["A → B"].values, pairs["B → A again"].values.T, rtol=1e-9)
    diagonal = diagonal_cka(feats, "A", batch_size=64)
    assert list(diagonal.columns) == ["model", "layer", "cka"] and len(diagonal) == 9
    np.testing.assert_allclose(diagonal.loc[diagonal["model"] != "B", "cka"], 1.0, rtol=1e-9)
    cross = layer_cka(feats["B"], feats["A"], batch_size=64)
    np.testing.assert_allclose(diagonal.loc[diagonal["model"] == "B", "cka"], np.diag(cross.values), rtol=1e-12)
    assert diagonal_cka(feats, batch_size=64).equals(diagonal_cka(feats, "A again", batch_size=64))  # the last
    with pytest.raises(KeyError, match="reference 'C'"):
        diagonal_cka(feats, "C")
    pairs = pairwise_cka(feats, ", step 9", batch_size=64)
    assert list(pairs) == ["A vs B, step 9", "A vs A again, step 9", "B vs A again, step 9"]
    np.testing.assert_allclose(np.diag(pairs["A vs A again, step 9"].values), 1.0, rtol=1e-9)
    over = cka_over_training({"run": {0: b, 5: a}}, tokens, batch_size=64)
    assert list(over.columns) == ["run", "step", "layer", "cka"] and len(over) == 6
    named = cka_over_training({"X": {0: b, 5: a}}, tokens, column="condition", batch_size=64)
    assert list(named.columns) == ["condition", "step", "layer", "cka"] and set(named["condition"]) == {"X"}
    runs = {"A": {0: a, 5: a, 9: a}, "B": {0: b, 5: b}}  # B did not keep step 9
    at_last = condition_cka(runs, tokens, batch_size=64)
    assert list(at_last) == ["A vs B, step 5"]
    np.testing.assert_allclose(at_last["A vs B, step 5"].values, layer_cka(feats["A"], feats["B"], batch_size=64)
                               .values, rtol=1e-12)
    assert list(condition_cka(runs, tokens, [0, 5], batch_size=64)) == ["A vs B, step 0", "A vs B, step 5"]
    with pytest.raises(ValueError, match=r"step 9 is not a kept checkpoint of \['B'\]; steps kept by every run: "
                                         r"\[0, 5\]"):
        condition_cka(runs, tokens, [9])
    np.testing.assert_allclose(over.loc[over["step"] == 5, "cka"], 1.0, rtol=1e-9)  # the final vs itself
    np.testing.assert_allclose(over.loc[over["step"] == 0, "cka"], np.diag(cross.values), rtol=1e-12)
    fig = plot_cka_lines(diagonal, title="t")
    assert len(fig.axes[0].lines) >= 3
