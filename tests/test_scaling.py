"""The scaling sweep: the budget rule, the paired statistics (checked by hand), notebook 08 on the smoke preset and
the sweep's resumption."""
import json
import math

import numpy as np
import pandas as pd
import pytest

from genprune_nb.analysis import scaling as stats
from genprune_nb.config import get_preset, override
from genprune_nb.study import scaling
from genprune_nb.study.curves import val_loss_rows
from genprune_nb.study.pipeline import NOTEBOOKS_DIR, available_notebooks

T_975_2 = 4.302652729749464  # the 97.5% quantile of Student's t with 2 degrees of freedom (tables)


def test_a_budget_scales_the_schedule_and_keeps_its_shape():
    train = get_preset("smoke").train  # 20 steps, warmup 5, decay 10, val and checkpoints every 10
    quarter = scaling.scale_schedule(train, 0.25)
    assert (quarter.steps, quarter.warmup_steps, quarter.decay_steps) == (5, 1, 3)  # 1.25 -> 1, 2.5 -> 3 (half up)
    assert (quarter.val_every, quarter.checkpoint_every) == (3, 3)
    four = scaling.scale_schedule(train, 4)
    assert (four.steps, four.warmup_steps, four.decay_steps, four.val_every) == (80, 20, 40, 40)
    assert four.lr == train.lr and four.tokens_per_step == train.tokens_per_step
    tiny = scaling.scale_schedule(train, 0.01)  # never below one step, warmup and decay within it
    assert tiny.steps == 1 and tiny.warmup_steps + tiny.decay_steps <= 1
    with pytest.raises(ValueError, match="-1"):
        scaling.scale_schedule(train, -1)
    table = scaling.budget_table(get_preset("smoke"), [1, 0.25, 4])
    assert table["tokens"].tolist() == [5 * 512, 20 * 512, 80 * 512]
    with pytest.raises(ValueError, match="medium"):
        scaling.get_sweep("medium")
    assert max(scaling.SWEEPS["short"].multiples) / min(scaling.SWEEPS["short"].multiples) >= 16


def _hand_made() -> pd.DataFrame:
    """Curves logged at 0 and 1,000 tokens, all starting at loss 10: NoConnectome (no budget) ends at 5.0, 5.2, 4.9
    for seeds 0, 1, 2; at budget 100 Connectome ends at 4.5, 4.9, 4.6 and RandomConnectome at 5.5, 5.6, 5.4; at
    budget 200 Connectome ends at 4.0, 4.5, 5.0 against a NoConnectome that ends at 5.0 for every seed (seed 2 of
    the table's NoConnectome is 4.9, so budget 200 is checked against its own rows: see the test)."""
    rows = []

    def curve(condition, seed, final, budget):
        for step, tokens, loss in ((0, 0, 10.0), (10, 1000, final)):
            rows.append({"condition": condition, "seed": seed, "step": step, "tokens": tokens, "val_loss": loss,
                         "budget": budget, "inner_tokens": 1000})

    for seed, final in enumerate((5.0, 5.2, 4.9)):
        curve("NoConnectome", seed, final, np.nan)
    for seed, (c, r) in enumerate(((4.5, 5.5), (4.9, 5.6), (4.6, 5.4))):
        curve("Connectome", seed, c, 100.0)
        curve("RandomConnectome", seed, r, 100.0)
    for seed, c in enumerate((4.0, 4.5, 5.0)):
        curve("Connectome", seed, c, 200.0)
    return pd.DataFrame(rows)


def test_final_differences_are_paired_by_seed_with_a_t_interval():
    result = stats.final_differences(_hand_made())
    per_seed = result.per_seed.set_index(["budget", "baseline", "seed"])["difference"]
    assert per_seed[(100.0, "NoConnectome", 1)] == pytest.approx(4.9 - 5.2)
    summary = result.summary.set_index(["budget", "baseline"])
    diffs = np.array([4.5 - 5.0, 4.9 - 5.2, 4.6 - 4.9])
    se = diffs.std(ddof=1) / math.sqrt(3)
    row = summary.loc[(100.0, "NoConnectome")]
    assert (row["mean"], row["n"]) == (pytest.approx(diffs.mean()), 3)
    assert (row["low"], row["high"]) == (pytest.approx(diffs.mean() - T_975_2 * se),
                                         pytest.approx(diffs.mean() + T_975_2 * se))
    assert summary.loc[(100.0, "RandomConnectome"), "mean"] == pytest.approx(np.mean([-1.0, -0.7, -0.8]))
    # budget 200 has no RandomConnectome: only the NoConnectome comparison, against the shared runs
    assert (200.0, "RandomConnectome") not in summary.index
    assert summary.loc[(200.0, "NoConnectome"), "mean"] == pytest.approx(np.mean([4.0 - 5.0, 4.5 - 5.2, 5.0 - 4.9]))


def test_multiplier_per_budget_with_a_t_interval():
    curves = _hand_made()
    curves = curves[~((curves["condition"] == "NoConnectome") & (curves["seed"] == 1))]
    curves = pd.concat([curves, pd.DataFrame([  # NoConnectome seed 1 ends at 5.0 like seed 0 here
        {"condition": "NoConnectome", "seed": 1, "step": s, "tokens": t, "val_loss": v, "budget": np.nan,
         "inner_tokens": 1000} for s, t, v in ((0, 0, 10.0), (10, 1000, 5.0))])], ignore_index=True)
    result = stats.multipliers(curves, comparisons=[("Connectome", "NoConnectome")], fraction=0.25)
    row = result.summary.set_index("budget").loc[200.0]
    # at 250 tokens Connectome is at 10 - 250 x (10 - final) / 1000 = 8.5, 8.625, 8.75; NoConnectome (seeds 0, 1:
    # 10 -> 5.0; seed 2: 10 -> 4.9) gets there at 300, 275 and 250 / (5.1 / 5) tokens
    expected = np.array([300 / 250, 275 / 250, (1.25 / 5.1 * 1000) / 250])
    se = expected.std(ddof=1) / math.sqrt(3)
    assert row["milestone"] == 250 and not row["lower_bound"]
    assert row["mean"] == pytest.approx(expected.mean())
    assert row["high"] == pytest.approx(expected.mean() + T_975_2 * se)


def test_along_keeps_one_sweep_and_the_shared_baseline():
    curves = _hand_made()
    other = curves[curves["condition"] == "Connectome"].assign(inner_tokens=2000)
    both = pd.concat([curves, other], ignore_index=True)
    outer = stats.along(both, "budget", 1000)
    assert len(outer) == len(curves) and outer["budget"].isna().sum() == 6
    inner = stats.along(both, "inner_tokens", 100.0)
    assert sorted(set(inner["inner_tokens"])) == [1000, 2000] and inner["budget"].isna().sum() == 6
    with pytest.raises(ValueError, match="seed"):
        stats.along(both, "seed", 0)


def test_notebook_08_is_listed_for_the_pipeline():
    assert "08_scaling" in available_notebooks()


def test_notebook_runs_headless_on_smoke_and_the_sweep_resumes(tmp_path, smoke_preset, monkeypatch):
    papermill = pytest.importorskip("papermill")
    root, figures = tmp_path / "study", tmp_path / "figures"
    overrides = [f"data.tokens_dir={smoke_preset.data.tokens_dir}", "outer.generations=1"]  # kept fast
    papermill.execute_notebook(
        NOTEBOOKS_DIR / "08_scaling.ipynb", tmp_path / "08.ipynb", kernel_name="python3", progress_bar=False,
        parameters={"preset": "smoke", "overrides": overrides, "run_root": str(root), "figures_dir": str(figures),
                    "device": "cpu", "progress": True, "budgets": [0.25, 1], "seeds": [0, 1]})
    assert (figures / "08_scaling.png").stat().st_size > 0
    # progress bars are widgets (ipywidgets is a dependency): no "IProgress not found" warning, no text bar lines
    executed = json.loads((tmp_path / "08.ipynb").read_text())
    outputs = [out for cell in executed["cells"] for out in cell.get("outputs", [])]
    streams = "".join("".join(out["text"]) for out in outputs if out["output_type"] == "stream")
    assert "IProgress" not in streams and "TqdmWarning" not in streams and "it/s]" not in streams
    bars = [out for out in outputs if "application/vnd.jupyter.widget-view+json" in out.get("data", {})]
    assert bars and "application/vnd.jupyter.widget-state+json" in executed["metadata"].get("widgets", {})
    # where the widget is not restored (JupyterLab's default, GitHub) a reader sees the stored text: the final state
    finals = ["".join(out["data"]["text/plain"]) for out in bars]
    assert all("100%" in text for text in finals), finals
    layout = scaling.ScalingLayout.of(root)
    budgets = [5 * 512, 20 * 512]  # tokens per generation of 0.25 and 1 x the smoke preset's 20 steps
    assert layout.outer_budget(budgets[0]).final_connectome().exists()
    # budget 1x is the study's own outer loop and inner runs, NoConnectome the study's: nothing trained twice
    assert not layout.outer_budget(budgets[1]).root.exists()
    assert sorted(p.name for p in layout.root.glob("outer_*")) == ["outer_2560"]
    assert layout.study.final_connectome().exists()
    assert sorted(p.name for p in (layout.study.root / "inner").iterdir()) == [
        "Connectome", "NoConnectome", "RandomConnectome"]
    curves = scaling.scaling_curves(root)
    assert sorted(curves["budget"].dropna().unique()) == budgets
    own = curves[(curves["budget"] == budgets[1]) | curves["budget"].isna()]
    study_rows = val_loss_rows(layout.study).set_index(["condition", "seed", "step"])["value"]
    assert np.array_equal(own.set_index(["condition", "seed", "step"])["val_loss"].sort_index().to_numpy(),
                          study_rows.sort_index().to_numpy())
    assert set(curves.loc[curves["budget"].isna(), "condition"]) == {"NoConnectome"}
    assert set(curves["seed"]) == {0, 1}

    from genprune_nb.training import loop

    def no_training(*args, **kwargs):
        raise AssertionError("the resumed sweep trained a step")

    monkeypatch.setattr(loop, "train_step", no_training)
    preset = override(smoke_preset, ["outer.generations=1"])
    again = scaling.run_outer_sweep(preset, root, [0.25, 1], seeds=[0, 1], progress=False)
    pd.testing.assert_frame_equal(again, curves)

    # the inner-data sweep from the 0.25x connectome: its 1x point is the outer sweep's runs, 0.5x a new folder
    monkeypatch.undo()
    curves = scaling.run_inner_sweep(preset, root, [0.5, 1], outer_multiple=0.25, seeds=[0], progress=False)
    inner = stats.along(curves, "inner_tokens", 5 * 512)
    assert sorted(set(inner["inner_tokens"])) == [5 * 512, 10 * 512]
    assert sorted(p.name for p in (layout.inner_budget(5 * 512).root / "inner").iterdir()) == [
        "Connectome", "NoConnectome", "RandomConnectome"]
    summary = stats.final_differences(inner, "inner_tokens").summary
    assert set(summary["inner_tokens"]) == {5 * 512, 10 * 512} and set(summary["n"]) == {1, 2}


def test_the_sweep_comes_from_the_parameters_the_name_or_the_preset():
    from genprune_nb.config import get_preset
    from genprune_nb.study.pipeline import runs_by_default

    tiny, cpu = get_preset("tiny"), get_preset("cpu")
    assert scaling.plan_sweep(cpu) == scaling.get_sweep(cpu.eval.scaling_sweep)
    assert scaling.plan_sweep(tiny, "long").seeds == tuple(range(8))
    given = scaling.plan_sweep(tiny, None, [0.5, 1], [3])
    assert (given.multiples, given.seeds) == ((0.5, 1), (3,))
    with pytest.raises(ValueError, match="preset 'tiny' names no scaling sweep"):
        scaling.plan_sweep(tiny)
    # reproduce without --only runs 08 only where the preset or the parameters ask for a sweep
    assert not runs_by_default("08_scaling", tiny, {})
    assert runs_by_default("08_scaling", tiny, {"sweep": "short"}) and runs_by_default("08_scaling", cpu, {})
    assert runs_by_default("07_paper_figures", tiny, {})
