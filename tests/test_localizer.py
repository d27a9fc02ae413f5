import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr

from genprune_nb.alignment.localizer import (
    final_scores,
    langloc_stimuli,
    layer_fractions,
    language_mask,
    localized_encoding_rows,
    localizer_t,
    welch_t,
)
from genprune_nb.alignment.neural import sentence_dataset
from genprune_nb.config import get_preset
from genprune_nb.model.gpt import GPT


def _features(values: np.ndarray, layers: int) -> xr.DataArray:
    width = values.shape[1] // layers
    return xr.DataArray(values, dims=("presentation", "neuroid"),
                        coords={"layer": ("neuroid", np.repeat(np.arange(1, layers + 1), width)),
                                "unit": ("neuroid", np.tile(np.arange(width), layers))})


def test_localizer_stimuli(external_data_dir):
    stimuli = langloc_stimuli(external_data_dir / "langloc_fedorenko2010")
    assert dict(stimuli["condition"].value_counts()) == {"sentence": 240, "nonwords": 240}
    assert stimuli["stimulus"].is_unique
    assert stimuli["stimulus"].iloc[0] == "just the barest suggestion of a heel is found on teenage pumps"
    assert all(len(s.split()) == 12 for s in stimuli["stimulus"])


@pytest.mark.filterwarnings("ignore:Precision loss:RuntimeWarning")  # the constant unit
def test_localizer_recovers_planted_units():
    rng = np.random.default_rng(0)
    layers, width = 4, 50
    planted = rng.choice(layers * width, size=10, replace=False)  # 5% of the units, spread over layers
    sentences = rng.standard_normal((240, layers * width))
    sentences[:, planted] += 1.0  # respond more to sentences
    nonwords = rng.standard_normal((240, layers * width))
    constant = min(set(range(layers * width)) - set(planted))
    nonwords[:, constant] = sentences[:, constant] = 3.0  # a constant unit never qualifies
    t = welch_t(_features(sentences, layers), _features(nonwords, layers))
    assert t.sizes["neuroid"] == layers * width and t[constant].item() == -np.inf
    mask = language_mask(t, 5)
    assert set(np.flatnonzero(mask.values)) == set(planted)
    np.testing.assert_array_equal(mask["layer"].values, t["layer"].values)
    assert language_mask(t, 0.01).values.sum() == 1  # at least one unit
    assert language_mask(t, 100).values.all()
    with pytest.raises(ValueError, match="percent"):
        language_mask(t, 0)


def test_localized_encoding_rows_from_a_model(external_data_dir):
    torch.manual_seed(0)
    model = GPT(get_preset("smoke").model).eval()
    stimuli = langloc_stimuli(external_data_dir / "langloc_fedorenko2010")
    t = localizer_t(model, stimuli)
    C, L = model.config.n_embd, model.config.n_layer
    assert t.shape == (L * C,) and sorted(set(t["layer"].values)) == list(range(1, L + 1))
    assert np.isfinite(t.values).all()
    rng = np.random.default_rng(0)
    sentences = [f"The {w} ran to the shop number {i}." for i, w in enumerate(["cat", "dog", "bird"] * 10)]
    neural = sentence_dataset(pd.DataFrame({"sentence": sentences, "y": rng.standard_normal(30)}), responses=["y"])
    rows = localized_encoding_rows(model, neural, stimuli=stimuli)
    assert [(row["units"], row["metric"]) for row in rows] == [
        ("top 1%", "r"), ("top 1%", "r_fold_se"), ("top 10%", "r"), ("top 10%", "r_fold_se")]
    assert all(row["n"] == 30 and np.isfinite(row["value"]) for row in rows)


def test_layer_fractions_and_final_localized_scores():
    t = xr.DataArray([5.0, 1.0, 4.0, 3.0, 0.0, 2.0], dims="neuroid",
                     coords={"layer": ("neuroid", [1, 1, 1, 2, 2, 2])})
    fractions = layer_fractions(language_mask(t, 50))  # the top 3 units: two in layer 1, one in layer 2
    assert fractions.to_dict() == pytest.approx({1: 2 / 3, 2: 1 / 3})
    assert fractions.name == "fraction of units in the top 50%"
    rows = [{"condition": c, "seed": seed, "step": step, "tokens": step, "task": "brain_encoding_localized",
             "units": "top 1%", "metric": metric, "value": value, "n": 40}
            for c, seed, step, value in [("NoConnectome", 0, 10, 0.9), ("NoConnectome", 0, 20, 0.2),
                                         ("NoConnectome", 1, 20, 0.4), ("Connectome", 0, 20, 0.3)]
            for metric in ("r", "r_fold_se")]
    table = final_scores(pd.DataFrame(rows)).set_index("condition")
    assert table.loc["NoConnectome", "mean"] == pytest.approx(0.3)  # the final steps only: (0.2 + 0.4) / 2
    assert table.loc["NoConnectome", "se"] == pytest.approx(np.std([0.2, 0.4], ddof=1) / np.sqrt(2))
    assert table.loc["Connectome", "n"] == 1
