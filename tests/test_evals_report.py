"""Report helpers on a hand-made results table, and notebook 03 run headlessly on the fake study."""
import json
import warnings
from pathlib import Path

import pandas as pd
import pytest
from scipy import stats

from genprune_nb.report import benchmarks as report
from genprune_nb.study.layout import StudyLayout

REPO = Path(__file__).resolve().parents[1]
FINAL = {("Connectome", 0): 0.30, ("Connectome", 1): 0.32, ("RandomConnectome", 0): 0.25,
         ("RandomConnectome", 1): 0.26, ("NoConnectome", 0): 0.28, ("NoConnectome", 1): 0.27}


@pytest.fixture
def results():
    rows = []
    for (cond, seed), final in FINAL.items():
        for step, value in ((10, 0.25), (20, final)):
            ids = {"condition": cond, "seed": seed, "step": step, "tokens": step * 100}
            rows += [{**ids, "task": "hellaswag", "metric": "acc_norm", "value": value, "n": 50},
                     {**ids, "task": "hellaswag", "metric": "acc", "value": 0.0, "n": 50},
                     {**ids, "task": "blimp", "metric": "acc", "value": value + 0.4, "n": 4},
                     {**ids, "task": "blimp", "metric": "acc", "value": 1.0, "n": 2, "phenomenon": "p"},
                     {**ids, "task": "blimp", "metric": "acc", "value": 0.5, "n": 1, "phenomenon": "p",
                      "paradigm": "x"}]
    return pd.DataFrame(rows).sample(frac=1, random_state=0)  # order must not matter


def test_summary_and_figure_table(results):
    s = report.summarize(results, ["hellaswag", "blimp"]).set_index(["condition", "task"])
    c = s.loc[("Connectome", "hellaswag")]
    assert c["mean"] == pytest.approx(0.31) and c["se"] == pytest.approx(0.01) and c["n"] == 2
    assert c["metric"] == "acc_norm"
    assert s.loc[("NoConnectome", "blimp"), "mean"] == pytest.approx(0.675)
    table = report.figure_table(results, ["hellaswag", "blimp"], digits=3)
    assert list(table.index) == ["Connectome", "RandomConnectome", "NoConnectome"]
    assert list(table.columns) == ["hellaswag acc_norm", "blimp acc"]
    assert table.loc["RandomConnectome", "hellaswag acc_norm"] == "0.255 ± 0.005 (2)"


def test_condition_tests_match_scipy(results):
    tests = report.condition_tests(results, ["hellaswag"]).set_index("comparison")
    groups = [[FINAL[(c, s)] for s in (0, 1)] for c in ("Connectome", "RandomConnectome", "NoConnectome")]
    f, p = stats.f_oneway(*groups)
    assert tests.loc["all conditions", "statistic"] == pytest.approx(f)
    assert tests.loc["all conditions", "p_value"] == pytest.approx(p)
    t, p = stats.ttest_ind(groups[0], groups[1], equal_var=False)
    row = tests.loc["Connectome - RandomConnectome"]
    assert (row["statistic"], row["p_value"], row["estimate"]) == (pytest.approx(t), pytest.approx(p),
                                                                   pytest.approx(0.055))
    assert (tests["p_holm"].iloc[1:] >= tests["p_value"].iloc[1:]).all()
    one_seed = results[results["seed"] == 0]
    assert report.condition_tests(one_seed, ["hellaswag"])[["statistic", "p_value"]].isna().all().all()
    flat = results.assign(value=0.5)  # no spread between seeds: pairwise tests undefined, no warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert report.condition_tests(flat, ["hellaswag"])["p_value"].iloc[1:].isna().all()


def test_breakdown_and_curves(results):
    ph = report.breakdown(results, "blimp", "phenomenon")
    assert list(ph.index) == ["p"] and ph.loc["p", "Connectome"] == 1.0  # paradigm rows are not mixed in
    assert report.breakdown(results, "blimp", "paradigm").loc["x", "NoConnectome"] == 0.5
    fig = report.plot_curves(results, ["hellaswag", "blimp"])
    assert [ax.get_title() for ax in fig.axes] == ["hellaswag", "blimp"]


def test_notebook_runs_headless_on_the_fake_study(tmp_path, fake_study):
    papermill = pytest.importorskip("papermill")
    root = tmp_path / "study"
    for ref in fake_study.model_refs(final_only=True):  # 3 conditions x 2 seeds, the last step (time)
        link = StudyLayout(root).inner_run(ref.condition, ref.seed) / "checkpoints" / Path(ref.path).name
        link.parent.mkdir(parents=True)
        link.symlink_to(ref.path)
    out = tmp_path / "03_benchmarks.ipynb"
    papermill.execute_notebook(
        str(REPO / "notebooks" / "03_benchmarks.ipynb"), str(out), kernel_name="python3", cwd=str(tmp_path),
        parameters={"run_root": str(root), "figures_dir": "figs", "limit": 2, "device": "cpu", "progress": False},
        progress_bar=False,
    )
    df = StudyLayout(root).results.load()
    assert set(df["condition"]) == {"Connectome", "RandomConnectome", "NoConnectome"}
    assert set(df["task"]) == {"hellaswag@2", "mmlu@2", "blimp@2"} and set(df["seed"]) == {0, 1}
    assert (tmp_path / "figs" / "03_benchmarks_curves.png").stat().st_size > 0
    source = json.loads((REPO / "notebooks" / "03_benchmarks.ipynb").read_text())
    assert all(not c.get("outputs") for c in source["cells"] if c["cell_type"] == "code")
    assert "parameters" in source["cells"][1]["metadata"]["tags"]


def test_items_and_breakdowns(results):
    items = report.items(results, ["hellaswag", "blimp"])["items"]
    assert items.to_dict() == {("blimp", "acc"): 4, ("hellaswag", "acc"): 50, ("hellaswag", "acc_norm"): 50}
    other = results[(results["phenomenon"] == "p") & results["paradigm"].isna()].assign(phenomenon="a", value=0.2)
    tables = report.breakdowns(pd.concat([results, other]), ["hellaswag", "blimp"])
    assert len(tables) == 1  # hellaswag has no finer rows
    table = tables[0]
    assert table.index.name == "blimp phenomenon" and list(table.index) == ["p", "a"]  # best first, coarsest key
    assert table.loc["a", "mean"] == pytest.approx(0.2) and table.loc["p", "Connectome"] == 1.0
    assert list(report.breakdowns(pd.concat([results, other]), ["blimp"], top=1)[0].index) == ["p"]
