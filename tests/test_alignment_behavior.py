import math
from collections import Counter

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest
import torch

from genprune_nb.alignment.behavior import (
    TASK,
    bootstrap_ci,
    ceiling,
    compare_fits,
    compare_regressions,
    final_scores,
    log_frequency,
    metric_rows,
    normalize_word,
    pearson_r,
    predictors,
    regress,
    reliability,
    score,
    surprisal_for,
    surprisals,
)
from genprune_nb.alignment.reading_times import describe, from_table
from genprune_nb.evals import evaluate
from genprune_nb.evals.benchmarks.reading_times import reading_time_table
from genprune_nb.evals.registry import unregister
from genprune_nb.config import ModelConfig
from genprune_nb.report.behavior import ceilings, plot_surprisal_vs_rt, token_surprisal_table, word_surprisal_table
from genprune_nb.study.model_refs import one_per_condition
from genprune_nb.tokenizer import encode
from genprune_nb.study.results import ResultsTable

X = [1.0, 2.0, 3.0, 4.0, 5.0]
Y = [2.0, 1.0, 4.0, 3.0, 6.0]


def test_pearson_r_by_hand_and_nan_pairs_dropped():
    # mean x = 3, mean y = 3.2; sum dx*dy = 10, sum dx^2 = 10, sum dy^2 = 14.8
    assert pearson_r(X, Y) == pytest.approx(10 / math.sqrt(10 * 14.8))
    assert pearson_r(X + [np.nan, 7.0], Y + [1.0, np.inf]) == pytest.approx(10 / math.sqrt(10 * 14.8))
    with pytest.raises(ValueError, match="at least 3"):
        pearson_r([1.0, 2.0], [1.0, np.nan])


def test_bootstrap_ci_is_the_percentile_interval_of_resampled_r():
    rng = np.random.default_rng(5)
    x = rng.normal(size=40)
    y = x + rng.normal(size=40)
    low, high = bootstrap_ci(x, y, n_boot=200, level=0.9, seed=3)
    draws = np.random.default_rng(3).integers(0, 40, size=(200, 40))
    rs = [np.corrcoef(x[i], y[i])[0, 1] for i in draws]
    assert (low, high) == pytest.approx(tuple(np.quantile(rs, [0.05, 0.95])))
    assert low < pearson_r(x, y) < high


def test_reliability_by_hand():
    mean, sd, n = [300, 340, 420, 460], [100, 120, 90, 110], [25, 36, 9, 121]
    between = (80**2 + 40**2 + 40**2 + 80**2) / 3  # var(mean), ddof=1
    noise = (400 + 400 + 900 + 100) / 4  # mean of sd^2 / n
    assert reliability(mean, sd, n) == pytest.approx((between - noise) / between)
    with pytest.raises(ValueError, match="sd"):
        reliability(mean, [100, np.nan, 1, 1], n)


def test_reliability_matches_a_spearman_brown_split_half_ceiling():
    rng = np.random.default_rng(0)
    words, readers = 400, 60
    true = rng.normal(350, 40, size=words)
    times = true[:, None] + rng.normal(0, 150, size=(words, readers))
    estimate = reliability(times.mean(1), times.std(1, ddof=1), np.full(words, readers))
    halves = []
    for _ in range(20):  # Brain-Score's procedure on the per-reader data
        perm = rng.permutation(readers)
        c = np.corrcoef(times[:, perm[:30]].mean(1), times[:, perm[30:]].mean(1))[0, 1]
        halves.append(2 * c / (1 + c))
    assert estimate == pytest.approx(np.median(halves), abs=0.03)


def test_word_frequency():
    assert normalize_word("'Admiral,'") == "admiral" and normalize_word("don't.") == "don't"
    assert normalize_word("long-bearded") == "long-bearded" and normalize_word("--") == "--"
    counts = Counter({"the": 7, "cat": 1})  # total 8, vocabulary 2
    np.testing.assert_allclose(log_frequency(["The", "cat.", "dog"], counts), np.log([8 / 10, 2 / 10, 1 / 10]))


def _synthetic(n=288, seed=0):
    """Reading times that depend on surprisal (10 ms/bit) and length; 3 stories of 16 six-word sentences."""
    rng = np.random.default_rng(seed)
    words = rng.choice(["a", "the", "cat", "window", "extraordinary"], size=n)
    s = rng.gamma(2.0, 3.0, size=n)
    rt = 250 + 10 * s + 8 * np.char.str_len(words.astype(str)) + rng.normal(0, 20, size=n)
    table = pd.DataFrame({"word": words, "rt": rt, "story": np.repeat([1, 2, 3], n // 3),
                          "sent": np.arange(n) // 6, "sd": 100.0, "n": 50})
    rts = from_table(table, story="story", sentence="sent", sd="sd", n_readers="n")
    return rts, rts.copy(data=s).rename("surprisal")


def test_regression_gain_by_hand():
    rts, s = _synthetic()
    counts = Counter({"the": 50, "a": 40, "cat": 5, "window": 3})
    frame = predictors(rts, s, counts)
    assert np.isnan(frame["previous_surprisal"].to_numpy()[[0, 96, 192]]).all()
    fit = regress(frame)
    assert fit.n == 285 and fit.full.params["surprisal"] == pytest.approx(10, abs=1)
    data = frame.dropna()
    r2 = {}
    for name, cols in (("base", ["length", "log_frequency", "position", "previous_surprisal"]),
                       ("full", ["length", "log_frequency", "position", "previous_surprisal", "surprisal"])):
        design = np.column_stack([np.ones(len(data)), data[cols].to_numpy()])
        resid = data["rt"].to_numpy() - design @ np.linalg.lstsq(design, data["rt"].to_numpy(), rcond=None)[0]
        r2[name] = 1 - (resid**2).sum() / ((data["rt"] - data["rt"].mean()) ** 2).sum()
        rss = (resid**2).sum()
        r2[name + "_llf"] = -len(data) / 2 * (np.log(2 * np.pi * rss / len(data)) + 1)
    assert fit.delta_r2 == pytest.approx(r2["full"] - r2["base"])
    assert fit.delta_loglik == pytest.approx(r2["full_llf"] - r2["base_llf"])
    assert fit.lr_pvalue < 1e-10
    table = fit.table()
    assert set(table["model"]) == {"baseline", "full"} and "surprisal" in set(table["term"])
    both = compare_fits({"x": fit, "y": fit})
    assert list(both.columns) == ["x", "y"] and both.loc["surprisal", "y"] == fit.full.params["surprisal"]
    assert both.loc["delta_loglik", "x"] == fit.delta_loglik and both.loc["n", "x"] == 285


def test_score_rows_and_brainscore():
    rts, s = _synthetic()
    rows = {r["metric"]: r for r in score(s, rts, counts=Counter({"the": 1}), ceiling_value=0.8, n_boot=100)}
    later = ~rts["first_in_sentence"].values
    assert rows["pearson_r"]["value"] == pytest.approx(pearson_r(s.values, rts.values))
    assert rows["pearson_r_low"]["value"] < rows["pearson_r"]["value"] < rows["pearson_r_high"]["value"]
    assert rows["brainscore"]["n"] == later.sum() == 288 - 48
    assert rows["brainscore"]["value"] == pytest.approx(
        abs(pearson_r(s.values[later], rts.values[later])) / 0.8)
    assert rows["delta_loglik"]["value"] > 0
    assert ceiling(rts) == pytest.approx(reliability(rts.values, np.full(288, 100.0), np.full(288, 50)))


def test_metric_rows_and_final_scores_over_seeds():
    rows = [{"condition": c, "seed": seed, "step": step, "tokens": 10 * step, "task": TASK, "metric": "pearson_r",
             "value": v, "n": 1}
            for c, seed, step, v in [("RandomConnectome", 0, 1, 0.1), ("RandomConnectome", 1, 1, 0.3),
                                     ("RandomConnectome", 0, 2, 0.4), ("RandomConnectome", 1, 3, 0.5),
                                     ("Connectome", 0, 1, 0.2)]]
    results = pd.DataFrame(rows + [{**rows[0], "task": "blimp"}])
    assert len(metric_rows(results)) == 5
    with pytest.raises(ValueError, match="no rows"):
        metric_rows(results, metric="brainscore")
    final = final_scores(results, ["pearson_r"])
    assert list(final.index) == ["Connectome", "RandomConnectome"]  # the paper's order
    assert final.loc["RandomConnectome", ("pearson_r", "mean")] == pytest.approx(0.45)  # steps 2 and 3
    assert final.loc["RandomConnectome", ("pearson_r", "se")] == pytest.approx(np.std([0.4, 0.5], ddof=1) / np.sqrt(2))
    assert final.loc["Connectome", ("pearson_r", "se")] == 0  # one seed


def test_a_reading_time_table_becomes_a_benchmark_scored_once_per_checkpoint(fake_study, tmp_path):
    table = pd.DataFrame({"word": "The old man sat by the fire. He was cold. The dog slept.".split(),
                          "rt": [300, 350, 320, 330, 290, 280, 400, 310, 300, 420, 305, 340, 390]})
    rts = from_table(table)
    bench = reading_time_table("old_man_story", table, ceiling=0.8)
    try:
        assert bench.headline == "pearson_r" and bench.ceiling == 0.8
        assert bench.label({"stories": [1]}) == "old_man_story"
        refs = fake_study.model_refs(conditions=["Connectome"], final_only=True)
        options, table = {"counts": Counter({"the": 3}), "n_boot": 50}, ResultsTable(tmp_path / "results.csv")
        evaluate(refs[:1], ["old_man_story"], table=table, options=options, device="cpu", progress=False)
        results = evaluate(refs, ["old_man_story"], table=table, options=options, device="cpu", progress=False)
        got = results[results["task"] == "old_man_story"]
        assert len(got) == 2 * 8 and set(got["seed"]) == {0, 1} and set(got["step"]) == {20}
        s = surprisal_for(refs[0].load_model(), rts)
        assert s.dims == rts.dims and (s.values > 0).all()
        r0 = got[(got["seed"] == refs[0].seed) & (got["metric"] == "pearson_r")]["value"].item()
        assert r0 == pytest.approx(pearson_r(s.values, rts.values))
        fig = plot_surprisal_vs_rt({"Connectome": s}, rts, bins=3)
        assert len(fig.axes) == 1
    finally:
        unregister("old_man_story")  # the registry is process-wide: leave it as the other tests expect it
    with pytest.raises(ValueError, match="unknown benchmark 'old_man_story'"):
        evaluate(refs, ["old_man_story"], table=table, device="cpu", progress=False)


def test_describe_and_ceilings_by_hand():
    rts, _ = _synthetic()
    assert describe(rts) == "288 words in 3 stories, 48 sentences"
    later = ~rts["first_in_sentence"].values
    by_hand = [(np.var(v, ddof=1) - 100.0**2 / 50) / np.var(v, ddof=1) for v in (rts.values, rts.values[later])]
    table = ceilings(rts, published=0.858)["ceiling"]
    np.testing.assert_allclose(table.values, [*by_hand, 0.858])
    assert len(ceilings(rts)) == 2  # no published value, no row


class Uniform(torch.nn.Module):
    """Every next token equally likely: each token carries log2(vocabulary) bits."""

    config = ModelConfig(n_layer=1, n_head=1, n_embd=2, block_size=64)

    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.zeros(()))  # tells the helpers which device the model is on

    def forward(self, idx):
        return self.scale * torch.zeros(*idx.shape, 50257), None


def test_token_and_word_surprisal_tables_by_hand():
    rts = from_table(pd.DataFrame({"word": ["The", "extraordinary", "cat", "sat."], "rt": [1.0, 2.0, 3.0, 4.0]}))
    tokens = token_surprisal_table(Uniform(), rts, n_words=3)
    pieces = {"The": encode("The"), "extraordinary": encode(" extraordinary"), "cat": encode(" cat")}
    assert tokens["word"].tolist() == [w for w, ids in pieces.items() for _ in ids]
    assert tokens["token"].iloc[0] == repr("The")
    np.testing.assert_allclose(tokens["bits"], math.log2(50257), rtol=1e-5)
    words = word_surprisal_table(Uniform(), rts, n_words=3)
    assert words["word"].tolist() == ["The", "extraordinary", "cat"]
    np.testing.assert_allclose(words["surprisal (bits)"], tokens.groupby("word", sort=False)["bits"].sum(), rtol=1e-6)


def test_regressions_compared_per_model():
    rts, s = _synthetic()
    noise = s.copy(data=np.random.default_rng(1).permutation(s.values))
    counts = Counter({"the": 7, "cat": 1})
    table = compare_regressions({"planted": s, "shuffled": noise}, rts, counts)
    assert list(table.columns) == ["planted", "shuffled"]
    assert table.loc["surprisal", "planted"] == pytest.approx(10, abs=1.5)  # 10 ms per bit, as planted
    assert table.loc["delta_loglik", "planted"] > 50 > table.loc["delta_loglik", "shuffled"]


def test_surprisals_of_one_model_per_condition(fake_study):
    rts = from_table(pd.DataFrame({"word": ["A", "cat", "sat", "here."], "rt": [1.0, 2.0, 3.0, 4.0]}))
    finals = one_per_condition(fake_study.model_refs(final_only=True))
    out = surprisals(finals, rts)
    assert list(out) == ["Connectome", "RandomConnectome", "NoConnectome"]
    expected = surprisal_for(finals["NoConnectome"].load_model(), rts)
    np.testing.assert_array_equal(out["NoConnectome"].values, expected.values)
    assert (finals["NoConnectome"].seed, finals["NoConnectome"].step) == (0, 20)

