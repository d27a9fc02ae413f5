import math
from collections import Counter

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest
import torch

from genprune_nb.alignment.behavior import (
    BASELINE,
    TASK,
    bootstrap_ci,
    ceiling,
    compare_fits,
    compare_regressions,
    distinct,
    final_scores,
    heldout_gain,
    log_frequency,
    metric_rows,
    normalize_word,
    pearson_r,
    predictors,
    punctuation,
    regress,
    reliability,
    score,
    story_text,
    surprisal_for,
    surprisal_from_tokens,
    surprisals,
)
from genprune_nb.alignment.reading_times import describe, from_table, story_words
from genprune_nb.config import ModelConfig
from genprune_nb.evals import evaluate
from genprune_nb.evals.benchmarks.reading_times import reading_time_table
from genprune_nb.evals.registry import unregister
from genprune_nb.report.behavior import ceilings, plot_surprisal_vs_rt, token_surprisal_table, word_surprisal_table
from genprune_nb.study.model_refs import one_per_condition
from genprune_nb.study.results import ResultsTable
from genprune_nb.tokenizer import encode

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


TOKENS = {"a": 1, "the": 1, "cat.": 2, "window,": 2, "extraordinary": 3}  # a made-up tokenizer's counts


def _synthetic(n=288, seed=0):
    """Reading times that depend on surprisal (10 ms/bit) and length; 3 stories of 16 six-word sentences."""
    rng = np.random.default_rng(seed)
    words = rng.choice(list(TOKENS), size=n)
    s = rng.gamma(2.0, 3.0, size=n)
    rt = 250 + 10 * s + 8 * np.char.str_len(words.astype(str)) + rng.normal(0, 20, size=n)
    table = pd.DataFrame({"word": words, "rt": rt, "story": np.repeat([1, 2, 3], n // 3),
                          "sent": np.arange(n) // 6, "sd": 100.0, "n": 50})
    rts = from_table(table, story="story", sentence="sent", sd="sd", n_readers="n")
    surprisal = rts.copy(data=s).rename("surprisal")
    return rts, surprisal.assign_coords(n_tokens=("presentation", [TOKENS[w] for w in words]))


def test_regression_gain_by_hand():
    rts, s = _synthetic()
    counts = Counter({"the": 50, "a": 40, "cat": 5, "window": 3})
    frame = predictors(rts, s, counts)
    assert np.isnan(frame["previous_surprisal"].to_numpy()[[0, 96, 192]]).all()
    fit = regress(frame)
    assert fit.n == 285 and fit.full.params["surprisal"] == pytest.approx(10, abs=1)
    data = frame.dropna(subset=["previous_surprisal"])
    assert data["punctuation"].tolist() == [int(w in ("cat.", "window,")) for w in data["word"]]
    r2 = {}
    base = ["length", "log_frequency", "position", "previous_surprisal", "n_tokens", "punctuation"]
    for name, cols in (("base", base), ("full", [*base, "surprisal"])):
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


def test_a_predictor_that_copies_another_is_left_out(recwarn):
    # the bytes tokenizer: a word's n_tokens is its length, so the two columns are one predictor
    rts, s = _synthetic()
    frame = predictors(rts, s, Counter({"the": 50, "a": 40, "cat": 5, "window": 3}))
    frame["n_tokens"] = frame["length"]
    assert distinct(frame, ["length", "n_tokens", "position"]) == ["length", "position"]
    fit = regress(frame)
    assert "n_tokens" not in set(fit.table()["term"]) and "length" in set(fit.table()["term"])
    assert not [w for w in recwarn if "rank" in str(w.message).lower()]  # statsmodels' rank-deficiency warning
    reduced = regress(frame, [c for c in BASELINE if c != "n_tokens"])
    assert fit.delta_loglik == pytest.approx(reduced.delta_loglik)


def test_score_rows_and_brainscore():
    rts, s = _synthetic()
    rows = {r["metric"]: r for r in score(s, rts, counts=Counter({"the": 1}), ceiling_value=0.8, n_boot=100)}
    assert rows["delta_loglik_low"]["value"] < rows["delta_loglik"]["value"] < rows["delta_loglik_high"]["value"]
    assert rows["delta_r2_low"]["value"] < rows["delta_r2"]["value"] < rows["delta_r2_high"]["value"]
    assert rows["delta_loglik"]["n"] == 285  # each story's first word has no previous surprisal
    unknown = {r["metric"] for r in score(s, rts, counts=Counter({"a": 1}), ceiling_value=None, n_boot=10)}
    assert "brainscore" not in unknown and "pearson_r" in unknown  # no ceiling known: no normalised score
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
        assert bench.headline == "delta_loglik" and bench.ceiling == 0.8
        assert bench.label({"stories": [1]}) == "old_man_story"
        refs = fake_study.model_refs(conditions=["Connectome"], final_only=True)
        options, table = {"counts": Counter({"the": 3}), "n_boot": 50}, ResultsTable(tmp_path / "results.csv")
        evaluate(refs[:1], ["old_man_story"], table=table, options=options, device="cpu", progress=False)
        results = evaluate(refs, ["old_man_story"], table=table, options=options, device="cpu", progress=False)
        got = results[results["task"] == "old_man_story"]
        assert len(got) == 2 * 12 and set(got["seed"]) == {0, 1} and set(got["step"]) == {20}
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



def test_heldout_gain_equals_an_sklearn_cross_validation():
    from sklearn.linear_model import LinearRegression
    from sklearn.model_selection import KFold

    rts, s = _synthetic()
    frame = predictors(rts, s, Counter({"the": 50, "a": 40, "cat": 5}))
    base = ["length", "log_frequency", "position", "previous_surprisal", "n_tokens", "punctuation"]
    gain = heldout_gain(frame, base, folds=5, n_boot=200)
    data = frame.dropna(subset=["previous_surprisal"])
    y, loglik, sse = data["rt"].to_numpy(), {}, {}
    for name, cols in (("base", base), ("full", [*base, "surprisal"])):
        x, ll, err = data[cols].to_numpy(), np.empty(len(y)), np.empty(len(y))
        for train, test in KFold(5).split(x):  # contiguous folds, no shuffling
            fit = LinearRegression().fit(x[train], y[train])
            var = np.mean((y[train] - fit.predict(x[train])) ** 2)
            err[test] = (y[test] - fit.predict(x[test])) ** 2
            ll[test] = -0.5 * np.log(2 * np.pi * var) - err[test] / (2 * var)
        loglik[name], sse[name] = ll.sum(), err.sum()
    assert gain.n == 285
    assert gain.delta_loglik == pytest.approx(loglik["full"] - loglik["base"])
    assert gain.delta_r2 == pytest.approx((sse["base"] - sse["full"]) / ((y - y.mean()) ** 2).sum())
    assert gain.delta_loglik_ci[0] < gain.delta_loglik < gain.delta_loglik_ci[1]
    with pytest.raises(ValueError, match=r"baseline predictor\(s\) \['zipf'\]"):
        heldout_gain(frame, ["length", "zipf"])


def _token_counted_story(n=3000, seed=0):
    """Reading times driven by token count (25 ms/token), punctuation (40 ms/char) and a hidden signal (12 ms/unit)
    the token count does not carry; the token counts and punctuation sit in the words themselves."""
    rng = np.random.default_rng(seed)
    n_tokens = rng.integers(1, 5, size=n)
    marks = rng.choice(["", "", "", ",", "."], size=n)
    words = np.array([f"w{'x' * int(rng.integers(0, 9))}{m}" for m in marks])
    signal = rng.gamma(2.0, 2.0, size=n)
    rt = 250 + 25 * n_tokens + 40 * (np.char.str_len(marks.astype(str)) > 0) + 12 * signal + rng.normal(0, 40, n)
    rts = from_table(pd.DataFrame({"word": words, "rt": rt}))
    return rts, n_tokens, signal, rng


def test_a_token_counter_gains_nothing_over_the_baseline_while_real_signal_does():
    rts, n_tokens, signal, rng = _token_counted_story()
    counts = Counter({"w": 10, "wx": 5})

    def as_surprisal(values):
        return rts.copy(data=values).rename("surprisal").assign_coords(n_tokens=("presentation", n_tokens))

    counter = as_surprisal(6.0 * n_tokens + rng.normal(0, 1.0, size=len(n_tokens)))
    model = as_surprisal(6.0 * n_tokens + signal + rng.normal(0, 1.0, size=len(n_tokens)))
    rows = {label: {r["metric"]: r["value"] for r in score(s, rts, counts=counts, ceiling_value=None, n_boot=300)}
            for label, s in (("counter", counter), ("model", model))}
    assert rows["counter"]["pearson_r"] > 0.3  # the raw r rewards counting tokens ...
    assert abs(rows["counter"]["delta_loglik"]) < 5  # ... the gain over the baseline does not: held out, a
    assert -5 < rows["counter"]["delta_loglik_low"] < rows["counter"]["delta_loglik_high"] < 1  # useless extra
    assert -0.005 < rows["counter"]["delta_r2_low"] < rows["counter"]["delta_r2_high"] < 0.001  # predictor costs a bit
    assert rows["model"]["delta_loglik_low"] > 50 and rows["model"]["delta_r2_low"] > 0.02


def test_baselines_are_chosen_by_column_name_including_kept_columns():
    rts, s = _synthetic()
    table = rts.to_dataframe().reset_index(drop=True).assign(zipf=-np.asarray(s.values))
    kept = from_table(table, word="word", rt="reading_time", story="story", keep=["zipf"])
    frame = predictors(kept, s, Counter({"the": 1}))
    np.testing.assert_array_equal(frame["zipf"], -s.values)
    fit = regress(frame, ["zipf"])
    assert list(fit.baseline.params.index) == ["const", "zipf"]
    assert fit.delta_r2 == pytest.approx(0, abs=1e-9)  # the kept column already is the surprisal


def test_context_words_are_read_but_not_scored():
    rts, s = _synthetic()
    context = rts.copy(data=np.where(rts["word_in_sentence"].values == 1, np.nan, rts.values))
    frame = predictors(context, s, Counter({"the": 1}))
    assert frame["previous_surprisal"].iloc[1] == s.values[0]  # the context word's surprisal spills over
    rows = {r["metric"]: r for r in score(s, context, counts=Counter({"the": 1}), ceiling_value=None, n_boot=10)}
    assert rows["pearson_r"]["n"] == 288 - 48 and rows["delta_loglik"]["n"] == 288 - 48
    later = ~np.isnan(context.values)
    assert rows["pearson_r"]["value"] == pytest.approx(pearson_r(s.values[later], rts.values[later]))


def test_surprisal_from_another_models_token_logprobs_matches_our_own():
    from genprune_nb.alignment.surprisal import token_logprobs, tokenize_words
    from genprune_nb.tokenizer import EOT, decode

    rts = from_table(pd.DataFrame({"word": ["The", "extraordinary", "cat", "sat.", "Then", "it", "left."],
                                   "rt": [1.0, 2, 3, 4, 5, 6, 7], "story": [1, 1, 1, 1, 2, 2, 2]}), story="story")
    tokens = {}
    for story, words, seps in story_words(rts):
        ids, _ = tokenize_words(words, seps)
        ends = np.cumsum([len(decode([t])) for t in ids])  # character offsets, as a tokenizer's offset mapping
        assert ends[-1] == len(story_text(rts, story))
        tokens[story] = (token_logprobs(Uniform(), [EOT, *ids]), list(zip(np.r_[0, ends[:-1]], ends)))
    theirs, ours = surprisal_from_tokens(rts, tokens), surprisal_for(Uniform(), rts)
    np.testing.assert_allclose(theirs.values, ours.values)
    np.testing.assert_array_equal(theirs["n_tokens"].values, ours["n_tokens"].values)
    assert ours["n_tokens"].values.tolist() == [len(encode("The")), len(encode(" extraordinary")), 1, 2, 1, 1, 2]
    with pytest.raises(ValueError, match=r"story\(ies\) \[2\]"):
        surprisal_from_tokens(rts, {1: tokens[1]})


def test_punctuation_counts_the_characters_around_a_word():
    assert [punctuation(w) for w in ["'Stop!'", "don't.", "--", "cat", "long-bearded,"]] == [3, 1, 2, 0, 1]
