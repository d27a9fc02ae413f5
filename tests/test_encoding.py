from pathlib import Path

import numpy as np
import pandas as pd
import papermill
import pytest
import torch
import xarray as xr
from sklearn.linear_model import Ridge, RidgeCV
from sklearn.model_selection import KFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from genprune_nb.alignment.encoding import (
    AUTHORS_ALPHAS,
    PROTOCOLS,
    RidgePath,
    cross_validated_r,
    encode,
    encoding_rows,
    final_by_layer,
    fold_summary,
    outer_splits,
    pearson_columns,
)
from genprune_nb.alignment.neural import sentence_dataset, tuckute2024
from genprune_nb.config import get_preset
from genprune_nb.model.features import sentence_features
from genprune_nb.model.gpt import GPT
from genprune_nb.study.layout import StudyLayout

ALPHAS = np.logspace(-3, 4, 15)


def _data(n, p, t, seed=0, noise=1.0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, p)) * rng.uniform(0.2, 3.0, p) + rng.standard_normal(p)  # uneven scales, offsets
    Y = X @ rng.standard_normal((p, t)) + noise * rng.standard_normal((n, t)) + 5.0
    return X, Y


def _arrays(X, y, layers=1):
    """features [n, layers * p] with a layer coordinate, responses [n, t] on the same stimuli."""
    stim = np.array([f"s{i}" for i in range(len(X))], dtype=object)
    feats = xr.DataArray(np.tile(X, layers), dims=("presentation", "neuroid"),
                         coords={"stimulus": ("presentation", stim),
                                 "layer": ("neuroid", np.repeat(np.arange(layers), X.shape[1]))})
    y = y[:, None] if y.ndim == 1 else y
    table = {"sentence": stim, **{f"y{j}": y[:, j] for j in range(y.shape[1])}}
    return feats, sentence_dataset(pd.DataFrame(table), responses=[f"y{j}" for j in range(y.shape[1])],
                                   noise_ceiling=0.5)


@pytest.mark.parametrize("n,p,t", [(120, 30, 1), (40, 90, 3)])  # eigendecomposition of X^T X, then of X X^T
def test_ridge_path_equals_sklearn_ridge_for_every_penalty(n, p, t):
    X, Y = _data(n, p, t)
    path = RidgePath(X, Y)
    coefs, intercepts = path.coefs(ALPHAS), path.intercepts(ALPHAS)
    X_new = _data(7, p, t, seed=1)[0]
    for i, alpha in enumerate(ALPHAS):
        ref = Ridge(alpha=alpha).fit(X, Y)
        np.testing.assert_allclose(coefs[i], ref.coef_.reshape(t, p), rtol=1e-7, atol=1e-9)
        np.testing.assert_allclose(intercepts[i], np.reshape(ref.intercept_, t), rtol=1e-7, atol=1e-9)
        np.testing.assert_allclose(path.predict(X_new, alpha), ref.predict(X_new).reshape(7, t), rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("n,p,t,noise", [(120, 30, 1, 1.0), (60, 80, 2, 3.0), (200, 10, 1, 20.0)])
def test_loo_errors_and_chosen_penalty_equal_ridgecv(n, p, t, noise):
    X, Y = _data(n, p, t, noise=noise)
    Y = Y[:, 0] if t == 1 else Y
    path = RidgePath(X, Y)
    ref = RidgeCV(alphas=ALPHAS, store_cv_results=True).fit(X, Y)  # efficient LOO, the default cv=None
    ref_mse = ref.cv_results_.reshape(n, -1, len(ALPHAS)).mean(axis=(0, 1))
    np.testing.assert_allclose(path.loo_mse(ALPHAS), ref_mse, rtol=1e-8)
    assert path.best_alpha(ALPHAS) == ref.alpha_
    # brute force for one penalty: refit without each sample
    alpha = ALPHAS[7]
    loo = [Ridge(alpha=alpha).fit(np.delete(X, i, 0), np.delete(Y, i, 0)).predict(X[i:i + 1]) for i in range(n)]
    brute = np.mean((np.reshape(loo, np.shape(Y)) - Y) ** 2)
    assert path.loo_mse([alpha])[0] == pytest.approx(brute, rel=1e-8)


@pytest.mark.parametrize("scheme", ["kfold", "shuffle"])
def test_cross_validation_equals_a_standardised_ridgecv_pipeline_on_the_same_folds(scheme):
    X, Y = _data(150, 20, 1, noise=4.0)
    splits = outer_splits(150, scheme, seed=3)
    assert len(splits) == {"kfold": 5, "shuffle": 10}[scheme]
    assert all(len(test) == {"kfold": 30, "shuffle": 15}[scheme] for _, test in splits)
    r, alphas = (a[0] for a in cross_validated_r([X], Y, splits, ALPHAS, protocol="standardized"))
    for k, (train, test) in enumerate(splits):
        ref = make_pipeline(StandardScaler(), RidgeCV(alphas=ALPHAS)).fit(X[train], Y[train])
        assert alphas[k, 0] == ref[-1].alpha_
        assert r[k, 0] == pytest.approx(pearson_columns(ref.predict(X[test]).reshape(-1, 1), Y[test])[0], abs=1e-9)


@pytest.mark.parametrize("noise_var", [0.25, 1.0, 4.0])
def test_planted_signal_gives_the_expected_r(noise_var):
    rng = np.random.default_rng(1)
    n, p = 4000, 10
    X = rng.standard_normal((n, p))
    w = rng.standard_normal(p)
    signal = X @ w / np.linalg.norm(w)  # variance 1
    y = signal + np.sqrt(noise_var) * rng.standard_normal(n)
    feats, neural = _arrays(X, y)
    r = encode(feats, neural).mean().item()
    # the true weights on the same folds, and in expectation: corr(signal + noise, signal)
    oracle = np.mean([np.corrcoef(signal[test], y[test])[0, 1] for _, test in outer_splits(n)])
    assert r == pytest.approx(oracle, abs=0.01)
    assert r == pytest.approx(np.sqrt(1.0 / (1.0 + noise_var)), abs=0.03)
    ceiled = encode(feats, neural, ceiled=True)
    np.testing.assert_allclose(ceiled.mean().item(), r / 0.5)
    assert ceiled.attrs["ceiled"] == 1


def test_pure_noise_gives_r_near_zero():
    rng = np.random.default_rng(2)
    X, y = rng.standard_normal((2000, 50)), rng.standard_normal(2000)
    feats, neural = _arrays(X, y)
    for scheme in ("kfold", "shuffle"):
        assert abs(encode(feats, neural, scheme=scheme).mean().item()) < 0.08


def test_encode_per_layer_uses_the_same_folds_and_reports_the_spread():
    X, Y = _data(100, 8, 2, noise=2.0)
    feats, neural = _arrays(X, Y, layers=3)  # three identical layers must score identically
    r = encode(feats, neural, seed=4)
    assert r.dims == ("layer", "fold", "neuroid") and r.shape == (3, 5, 2)
    np.testing.assert_array_equal(r.values[0], r.values[2])
    assert r["alpha"].shape == (3, 5, 2) and r.attrs["protocol"] == "authors"
    summary = fold_summary(r)
    assert list(summary.columns) == ["layer", "r", "r_sd", "r_se"] and len(summary) == 3
    per_fold = r.sel(layer=1).mean("neuroid").values
    assert summary["r"][1] == pytest.approx(per_fold.mean())
    assert summary["r_se"][1] == pytest.approx(per_fold.std(ddof=1) / np.sqrt(5))
    pooled = encode(feats.isel(neuroid=slice(0, 8)), neural, by_layer=False, seed=4)
    assert pooled.dims == ("fold", "neuroid")
    np.testing.assert_allclose(pooled.values, r.values[0])


def test_encode_refuses_mismatched_stimuli_and_missing_ceiling():
    X, Y = _data(30, 4, 1)
    feats, neural = _arrays(X, Y)
    with pytest.raises(ValueError, match="same stimuli"):
        encode(feats.isel(presentation=slice(None, None, -1)), neural)
    with pytest.raises(ValueError, match="'layer' coordinate"):
        encode(feats.drop_vars("layer"), neural)
    with pytest.raises(ValueError, match="noise_ceiling"):
        encode(feats, neural.assign_coords(noise_ceiling=("neuroid", [np.nan])), ceiled=True)
    with pytest.raises(ValueError, match="scheme"):
        encode(feats, neural, scheme="loo")
    with pytest.raises(ValueError, match=r"protocol 'brainscore'; choose from \['authors', 'standardized'\]"):
        encode(feats, neural, protocol="brainscore")


def test_constant_predictions_score_zero():
    X = np.ones((50, 3))
    for protocol in PROTOCOLS:
        r, _ = cross_validated_r([X], np.random.default_rng(0).standard_normal(50), outer_splits(50), ALPHAS,
                                 protocol=protocol)
        np.testing.assert_array_equal(r, 0.0)


def test_encoding_rows_from_a_model():
    torch.manual_seed(0)
    model = GPT(get_preset("smoke").model).eval()
    rng = np.random.default_rng(0)
    sentences = [f"The {w} sat on the mat number {i}." for i, w in enumerate(["cat", "dog", "bird"] * 10)]
    neural = sentence_dataset(pd.DataFrame({"sentence": sentences, "y": rng.standard_normal(30)}), responses=["y"])
    rows = encoding_rows(model, neural)
    assert {(row["layer"], row["metric"]) for row in rows} == {(l, m) for l in range(3) for m in ("r", "r_fold_se")}
    assert all(row["n"] == 30 and np.isfinite(row["value"]) for row in rows)


def _authors_sklearn(X, Y):
    """The authors' loop, written with scikit-learn: raw features, RidgeCV over 10**-30..10**29 with one penalty per
    target, KFold(5, shuffle=True, random_state=0), Pearson r per fold with NaN set to 0. r and penalties [fold, t]."""
    r, alphas = [], []
    for train, test in KFold(5, shuffle=True, random_state=0).split(X):
        model = RidgeCV(alphas=[10 ** x for x in range(-30, 30)], alpha_per_target=True).fit(X[train], Y[train])
        pred = model.predict(X[test]).reshape(len(test), -1)
        r.append([np.nan_to_num(np.corrcoef(pred[:, j], Y[test, j])[0, 1]) for j in range(Y.shape[1])])
        alphas.append(np.broadcast_to(model.alpha_, Y.shape[1]))
    return np.array(r), np.array(alphas)


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # corrcoef of constant predictions
@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning")  # RidgeCV's LOO at 1e-30 on a wide X
@pytest.mark.parametrize("n,p,t", [(60, 20, 3), (40, 90, 2), (50, 49, 1)])  # Xc^T Xc, Xc Xc^T, n just above p
def test_authors_protocol_equals_the_sklearn_ridgecv_loop(n, p, t):
    rng = np.random.default_rng(n + p)
    X = rng.standard_normal((n, p)) * rng.uniform(0.2, 3.0, p) + 5.0 * rng.standard_normal(p)  # raw: offsets, scales
    Y = 0.3 * X @ rng.standard_normal((p, t)) + 3.0 * rng.standard_normal((n, t))
    feats, neural = _arrays(X, Y)
    r = encode(feats, neural)  # the default protocol
    ref_r, ref_alpha = _authors_sklearn(X, Y)
    np.testing.assert_allclose(r.values[0], ref_r, atol=1e-6)
    np.testing.assert_array_equal(r["alpha"].values[0], ref_alpha)
    assert len(set(ref_alpha.ravel())) > 1  # the penalties are data-driven, not the grid's end
    np.testing.assert_array_equal(r["fold"], np.arange(5))


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
def test_authors_protocol_equals_sklearn_on_a_tiny_models_features(external_data_dir):
    """Real features (a tiny random model on 48 Tuckute sentences, layers 1..4: raw, wide, n_features > n_samples).
    The random model cannot predict the fMRI response, so its LOO errors are flat to rounding over penalties 1e12..
    1e29 and any implementation's choice there is rounding noise; a planted readout of the last layer added to the
    response makes the choice data-driven. (Layer 0 is left out: its few distinct last tokens make Xc Xc^T singular,
    and at tiny penalties scikit-learn's choice rests on eigenvalues that are rounding errors.)"""
    torch.manual_seed(0)
    model = GPT(get_preset("tiny").model).eval()
    neural = tuckute2024(path=external_data_dir / "tuckute2024_devarda" / "tuckute_averaged.csv",
                         ceiling_path=external_data_dir / "tuckute2024_devarda" / "NC-allroi-data_lang_extract.csv",
                         limit=48)
    feats = sentence_features(model, list(neural["stimulus"].values), layers=range(1, 5))
    response = neural.values[:, 0]
    last = feats.values[:, feats["layer"].values == 4].astype(np.float64)
    readout = last @ np.random.default_rng(0).standard_normal(last.shape[1])
    readout = (readout - readout.mean()) / readout.std() * response.std()
    Y = np.c_[response + readout, response + 2.0 * readout]
    targets = sentence_dataset(pd.DataFrame({"sentence": neural["stimulus"].values, "a": Y[:, 0], "b": Y[:, 1]}),
                               responses=["a", "b"])
    r = encode(feats, targets, protocol="authors")
    for i, layer in enumerate(r["layer"].values):
        X = feats.values[:, feats["layer"].values == layer]
        assert X.shape[1] > 38  # wider than a training fold
        ref_r, ref_alpha = _authors_sklearn(X, Y)
        np.testing.assert_array_equal(r["alpha"].values[i], ref_alpha)
        np.testing.assert_allclose(r.values[i], ref_r, atol=1e-6)
        assert ref_alpha.max() < 1e3


def test_protocols_differ_in_standardising_and_the_penalty_grid():
    X, Y = _data(80, 12, 1, noise=3.0)
    X[:, 0] *= 1000.0  # one feature on a large scale: standardising changes the fit
    feats, neural = _arrays(X, Y)
    authors, standardized = encode(feats, neural), encode(feats, neural, protocol="standardized")
    assert set(np.ravel(authors["alpha"])) <= set(AUTHORS_ALPHAS)
    assert set(np.ravel(standardized["alpha"])) <= set(PROTOCOLS["standardized"].alphas)
    assert not np.allclose(authors.values, standardized.values)
    splits = outer_splits(80)
    ref = [pearson_columns(make_pipeline(StandardScaler(), RidgeCV(alphas=PROTOCOLS["standardized"].alphas))
                           .fit(X[tr], Y[tr]).predict(X[te]).reshape(-1, 1), Y[te])[0] for tr, te in splits]
    np.testing.assert_allclose(standardized.values[0, :, 0], ref, atol=1e-9)


NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "05_brain.ipynb"


@pytest.mark.slow
def test_notebook_05_brain_runs_on_the_fake_study(fake_study, external_data_dir, tmp_path, monkeypatch):
    study = StudyLayout(tmp_path / "study")
    study.root.mkdir()
    (study.root / "inner").symlink_to(fake_study.root / "inner")  # results.csv stays out of the shared fixture
    monkeypatch.setenv("GENPRUNE_DATA_DIR", str(external_data_dir))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # smoke models: more threads only contend
    papermill.execute_notebook(
        str(NOTEBOOK), str(tmp_path / "05_brain.ipynb"), kernel_name="python3", cwd=str(tmp_path), progress_bar=False,
        parameters={"run_root": str(study.root), "figures_dir": "figs", "device": "cpu", "n_sentences": 40,
                    "progress": False})
    df = study.results.load()
    assert set(df["step"]) == {20} and len(df.groupby(["condition", "seed"])) == 6  # final checkpoints only
    enc = df[df["task"] == "brain_encoding@sentences=40"]
    assert len(enc) == 6 * 3 * 2 and set(enc["layer"]) == {0, 1, 2} and set(enc["metric"]) == {"r", "r_fold_se"}
    loc = df[df["task"] == "brain_encoding_localized@sentences=40"]
    assert len(loc) == 6 * 2 * 2 and set(loc["units"]) == {"top 1%", "top 10%"}
    assert len(df) == len(enc) + len(loc) and df["value"].notna().all() and (df["n"] == 40).all()
    for name in ("05_brain_encoding_layers.png", "05_brain_encoding_localized.png"):
        assert (tmp_path / "figs" / name).read_bytes()[:4] == b"\x89PNG"


def test_final_by_layer_takes_each_seeds_last_step():
    rows = [{"condition": c, "seed": seed, "step": step, "tokens": step, "task": "brain_encoding", "layer": layer,
             "metric": metric, "value": value + layer / 10, "n": 40}
            for c, seed, step, value in [("Connectome", 0, 10, 0.5), ("Connectome", 0, 20, 0.1),
                                         ("Connectome", 1, 20, 0.2)]
            for layer in (0, 1) for metric in ("r", "r_fold_se")]
    table = final_by_layer(pd.DataFrame(rows))
    assert list(table.index) == [0, 1] and list(table.columns) == [("Connectome", 0), ("Connectome", 1)]
    assert table.loc[1, ("Connectome", 0)] == pytest.approx(0.2) and table.loc[0, ("Connectome", 1)] == 0.2
