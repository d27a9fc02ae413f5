"""Data efficiency: milestones, curve look-ups, the effective data multiplier (with lower bounds) and its figures."""
from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from genprune_nb.analysis.efficiency import (
    PAPER_MILESTONES,
    curve_at,
    effective_data_multiplier,
    effective_data_multipliers,
    final_summary,
    inner_curves_of,
    metric_vs_tokens,
    milestones,
    tokens_to_reach,
)
from genprune_nb.config import get_preset  # noqa: E402
from genprune_nb.report.efficiency import (  # noqa: E402
    plot_benchmark_vs_tokens,
    plot_data_efficiency,
    plot_multiplier,
    save_benchmark_vs_tokens,
)
from genprune_nb.study.layout import StudyLayout  # noqa: E402
from genprune_nb.training.runlog import RunLog  # noqa: E402

TOKENS = [0, 100, 200, 400]


def curves_frame(runs: dict[tuple[str, int], list[float]]) -> pd.DataFrame:
    """Piecewise-linear val-loss curves logged at TOKENS, like curves.inner_curves' output."""
    rows = [{"condition": c, "seed": s, "step": i, "tokens": t, "val_loss": v}
            for (c, s), losses in runs.items() for i, (t, v) in enumerate(zip(TOKENS, losses))]
    return pd.DataFrame(rows)


# Connectome: loss 10, 6, 4, 3 at 0, 100, 200, 400 tokens.  NoConnectome seed 0: 10, 7, 5, 4;  seed 1: 10, 9, 7, 5.
CONNECTOME = [10.0, 6.0, 4.0, 3.0]
NO_0 = [10.0, 7.0, 5.0, 4.0]
NO_1 = [10.0, 9.0, 7.0, 5.0]


def test_milestones_of_presets():
    assert milestones(get_preset("gpt2-124m")) == (25_000_000, 50_000_000, 75_000_000, 100_000_000, 250_000_000,
                                                   500_000_000, 750_000_000, 1_000_000_000)
    # tiny: 48 steps x 8 x 128 = 49,152 tokens; scale 49,152 / 1,048,576,000 = 3 / 64,000
    # 25M -> 1171.875, 50M -> 2343.75, 75M -> 3515.625, 100M -> 4687.5, 250M -> 11718.75, 500M -> 23437.5,
    # 750M -> 35156.25, 1000M -> 46875 (rounded half to even)
    assert milestones(get_preset("tiny")) == (1172, 2344, 3516, 4688, 11719, 23438, 35156, 46875)
    assert len(PAPER_MILESTONES) == 8


def test_curve_at_interpolates_and_does_not_extrapolate():
    assert curve_at(TOKENS, CONNECTOME, 150) == pytest.approx(5.0)
    assert curve_at(TOKENS, CONNECTOME, 300) == pytest.approx(3.5)
    np.testing.assert_allclose(curve_at(TOKENS, CONNECTOME, [0, 400]), [10.0, 3.0])
    assert math.isnan(curve_at(TOKENS, CONNECTOME, 500))
    # unsorted input is sorted by tokens first
    assert curve_at([200, 0, 100], [4.0, 10.0, 6.0], 50) == pytest.approx(8.0)


def test_tokens_to_reach_takes_the_first_crossing():
    tokens, losses = [0, 10, 20, 30, 40], [5.0, 3.0, 4.0, 2.0, 1.0]
    assert tokens_to_reach(tokens, losses, 3.5) == pytest.approx(7.5)  # not 25 (the later crossing)
    assert tokens_to_reach(tokens, losses, 2.5) == pytest.approx(27.5)
    assert tokens_to_reach(tokens, losses, 3.0) == pytest.approx(10.0)
    assert tokens_to_reach(tokens, losses, 6.0) == 0.0
    assert math.isnan(tokens_to_reach(tokens, losses, 0.5))


def test_multiplier_equals_hand_computation_and_flags_lower_bounds():
    curves = curves_frame({("Connectome", 0): CONNECTOME, ("NoConnectome", 0): NO_0})
    per_seed, summary = effective_data_multiplier(curves, milestones=[50, 100, 200, 300])
    per_seed = per_seed.set_index("milestone")
    # m=50: Connectome loss 8; NoConnectome reaches 8 at 0 + (10-8)/(10-7)*100 = 66.67 tokens -> 1.3333
    # m=100: loss 6; reached at 100 + (7-6)/(7-5)*100 = 150 -> 1.5
    # m=200: loss 4; reached exactly at 400 -> 2.0
    # m=300: loss 3.5; never reached (min 4) -> lower bound 400 / 300
    np.testing.assert_allclose(per_seed["val_loss"], [8.0, 6.0, 4.0, 3.5])
    np.testing.assert_allclose(per_seed["baseline_tokens"], [200 / 3, 150.0, 400.0, 400.0])
    np.testing.assert_allclose(per_seed["multiplier"], [4 / 3, 1.5, 2.0, 4 / 3])
    assert per_seed["lower_bound"].tolist() == [False, False, False, True]
    assert (per_seed["pairing"] == "seed").all()
    assert summary["lower_bound"].tolist() == [False, False, False, True]
    np.testing.assert_allclose(summary["mean"], [4 / 3, 1.5, 2.0, 4 / 3])
    assert summary["n"].tolist() == [1, 1, 1, 1]
    # several conditions in one frame: the NoConnectome curve against itself is 1x wherever it has data
    both = effective_data_multipliers(curves, ["Connectome", "NoConnectome"], milestones=[100, 200])
    assert both["condition"].tolist() == ["Connectome", "Connectome", "NoConnectome", "NoConnectome"]
    np.testing.assert_allclose(both["mean"], [1.5, 2.0, 1.0, 1.0])


def test_lower_bound_is_not_extrapolated():
    # the baseline still falls steeply at its end (extrapolating would give 450 tokens), but it never gets to 3.5
    curves = curves_frame({("Connectome", 0): CONNECTOME, ("NoConnectome", 0): [10.0, 8.0, 6.0, 4.0]})
    per_seed, _ = effective_data_multiplier(curves, milestones=[300])
    row = per_seed.iloc[0]
    assert bool(row["lower_bound"]) is True
    assert row["multiplier"] == pytest.approx(400 / 300)
    assert row["baseline_tokens"] == 400


def test_mean_and_se_over_paired_seeds():
    curves = curves_frame({("Connectome", 0): CONNECTOME, ("Connectome", 1): CONNECTOME,
                           ("NoConnectome", 0): NO_0, ("NoConnectome", 1): NO_1})
    per_seed, summary = effective_data_multiplier(curves, milestones=[100])
    # seed 0: loss 6 reached at 150 -> 1.5;  seed 1: between 200 (7) and 400 (5) at 300 -> 3.0
    np.testing.assert_allclose(per_seed.sort_values("seed")["multiplier"], [1.5, 3.0])
    row = summary.iloc[0]
    assert row["mean"] == pytest.approx(2.25)
    assert row["se"] == pytest.approx(np.std([1.5, 3.0], ddof=1) / np.sqrt(2))  # = 0.75
    assert row["se"] == pytest.approx(0.75)
    assert row["n"] == 2 and not row["lower_bound"]


def test_unpaired_seed_uses_the_mean_baseline_curve():
    curves = curves_frame({("Connectome", 5): CONNECTOME, ("NoConnectome", 0): NO_0, ("NoConnectome", 1): NO_1})
    per_seed, _ = effective_data_multiplier(curves, milestones=[100])
    # mean baseline: 10, 8, 6, 4.5 -> loss 6 reached at 200 tokens -> 2.0
    assert per_seed["pairing"].tolist() == ["mean"]
    assert per_seed["multiplier"].iloc[0] == pytest.approx(2.0)


def test_accuracy_metrics_use_higher_is_better():
    curves = curves_frame({("Connectome", 0): [0.5, 0.6, 0.7, 0.8], ("NoConnectome", 0): [0.5, 0.55, 0.6, 0.7]})
    per_seed, _ = effective_data_multiplier(curves, milestones=[100], metric="val_loss", higher_is_better=True)
    # Connectome 0.6 at 100 tokens; the baseline reaches 0.6 at 200 -> 2.0
    assert per_seed["multiplier"].iloc[0] == pytest.approx(2.0)


def test_errors_name_what_is_missing():
    curves = curves_frame({("Connectome", 0): CONNECTOME})
    with pytest.raises(ValueError, match="NoConnectome"):
        effective_data_multiplier(curves)
    with pytest.raises(ValueError, match="val_loss"):
        effective_data_multiplier(curves.drop(columns="val_loss"))


def results_frame() -> pd.DataFrame:
    rows = []
    for condition in ("Connectome", "NoConnectome"):
        for seed in (0, 1):
            for step, tokens in ((10, 1000), (20, 2000)):
                base = {"condition": condition, "seed": seed, "step": step, "tokens": tokens, "task": "blimp@50",
                        "metric": "acc", "n": 50}
                rows.append({**base, "value": 0.5 + step / 100, "paradigm": np.nan})
                rows.append({**base, "value": 0.9, "paradigm": "anaphor_gender_agreement"})
    rows.append({"condition": "Connectome", "seed": 0, "step": 10, "tokens": 1000, "task": "mmlu", "metric": "acc",
                 "value": 0.25, "n": 10, "paradigm": np.nan})
    return pd.DataFrame(rows)


def test_metric_vs_tokens_picks_the_overall_rows():
    df = metric_vs_tokens(results_frame(), "blimp", "acc")
    assert len(df) == 8 and set(df["task"]) == {"blimp@50"}
    np.testing.assert_allclose(df[df["tokens"] == 2000]["value"], 0.7)
    one = metric_vs_tokens(results_frame(), "blimp@50", "acc", paradigm="anaphor_gender_agreement")
    assert (one["value"] == 0.9).all() and len(one) == 8
    with pytest.raises(ValueError, match="hellaswag"):
        metric_vs_tokens(results_frame(), "hellaswag", "acc")
    with pytest.raises(ValueError, match="acc_norm"):
        metric_vs_tokens(results_frame(), "blimp", "acc_norm")


def test_figures_build_with_expected_lines_and_markers():
    curves = curves_frame({("Connectome", 0): CONNECTOME, ("Connectome", 1): CONNECTOME,
                           ("NoConnectome", 0): NO_0, ("NoConnectome", 1): NO_1})
    fig = plot_data_efficiency(curves, milestones=[50, 100, 300])
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    assert len(ax.lines) == 2 + 3  # one mean curve per condition, one dotted line per milestone
    assert len(ax.collections) == 2  # the SE bands
    plt.close(fig)

    _, summary = effective_data_multiplier(curves, milestones=[50, 100, 200, 300])
    # seed 1's baseline (NO_1) never gets below 5, so m=200 (loss 4) and m=300 (loss 3.5) are lower bounds
    assert summary["lower_bound"].tolist() == [False, False, True, True]
    assert summary["n_lower_bound"].tolist() == [0, 0, 1, 2]
    fig = plot_multiplier(summary)
    ax = fig.axes[0]
    by_marker = {}
    for line in ax.lines:
        by_marker.setdefault(line.get_marker(), []).append(len(line.get_xdata()))
    assert by_marker["^"] == [2, 0]  # the lower bounds, then their (empty) legend entry
    assert by_marker["o"] == [2]  # the exact multipliers
    assert any(list(line.get_ydata()) == [1.0, 1.0] for line in ax.lines)  # the reference line at 1
    labels = ax.get_legend_handles_labels()[1]
    assert any("lower bound" in label for label in labels)
    plt.close(fig)

    blimp = metric_vs_tokens(results_frame(), "blimp", "acc")
    fig = plot_data_efficiency(blimp, "value", milestones=(), ylabel="BLiMP acc")
    assert len(fig.axes[0].lines) == 2
    plt.close(fig)


def test_inner_curves_of_keeps_the_conditions_shown_and_names_missing_ones(tmp_path):
    study = StudyLayout(tmp_path)
    runs = {("Connectome", 0): CONNECTOME, ("Connectome[random]", 0): NO_0, ("NoConnectome", 0): NO_1,
            ("RandomConnectome", 0): NO_1}
    for (condition, seed), losses in runs.items():
        log = RunLog(study.inner_run(condition, seed) / "metrics.jsonl")
        for step, (tokens, loss) in enumerate(zip(TOKENS, losses)):
            log.append({"step": step, "tokens": tokens, "val_loss": loss})
    shown = inner_curves_of(study, ["Connectome", "NoConnectome", "Connectome[random]"])
    assert sorted(set(shown["condition"])) == ["Connectome", "Connectome[random]", "NoConnectome"]
    assert len(shown) == 3 * len(TOKENS)
    with pytest.raises(ValueError, match=r"Connectome\[attribution\]"):
        inner_curves_of(study, ["Connectome", "Connectome[attribution]"])

    final = final_summary(shown)
    assert final["condition"].tolist() == ["Connectome", "Connectome[random]", "NoConnectome"]  # best first
    np.testing.assert_allclose(final["mean"], [3.0, 4.0, 5.0])

    # by default every connectome-grown condition gets a multiplier against NoConnectome, never the baseline itself
    summary = effective_data_multipliers(shown, baseline="NoConnectome", milestones=[100])
    assert summary["condition"].tolist() == ["Connectome", "Connectome[random]"]
    np.testing.assert_allclose(summary["mean"], [300 / 100, 200 / 100])  # NO_1 reaches 6 at 300, 7 at 200


def test_benchmark_vs_tokens_draws_the_conditions_shown_or_notes_missing_rows(tmp_path, capsys):
    results = results_frame()
    fig = plot_benchmark_vs_tokens(results, "blimp", "acc", conditions=["Connectome"], milestones=())
    ax = fig.axes[0]
    assert len(ax.lines) == 1 and "blimp@50" in ax.get_title()  # one condition, the stored label
    plt.close(fig)
    assert metric_vs_tokens(results, "blimp", "acc", conditions=["NoConnectome"])["condition"].unique().tolist() == [
        "NoConnectome"]

    assert save_benchmark_vs_tokens(results, "hellaswag", "acc_norm", tmp_path, "06_x") is None
    assert "no 'acc_norm' rows of task 'hellaswag'" in capsys.readouterr().out
    assert plot_benchmark_vs_tokens(results, "blimp", "acc", conditions=["Connectome[random]"]) is None
    assert "Connectome[random]" in capsys.readouterr().out
    path = save_benchmark_vs_tokens(results, "blimp", "acc", tmp_path, "06_data_efficiency_blimp", milestones=())
    assert path == tmp_path / "06_data_efficiency_blimp.png" and path.exists()
    plt.close("all")
