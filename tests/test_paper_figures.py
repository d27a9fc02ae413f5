"""Notebook 07 and genprune_nb.report.paper: Figure 1 panels and the paper-vs-run table from a results table alone."""
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import xarray as xr  # noqa: E402

from genprune_nb.alignment import behavior, encoding, localizer  # noqa: E402
from genprune_nb.config import get_preset  # noqa: E402
from genprune_nb.config import InnerConfig  # noqa: E402
from genprune_nb.evals import labels, preset_sizes  # noqa: E402
from genprune_nb.report import paper, plots  # noqa: E402
from genprune_nb.study.conditions import CONDITIONS as PAPER_CONDITIONS  # noqa: E402
from genprune_nb.study import curves
from genprune_nb.study.layout import StudyLayout  # noqa: E402
from genprune_nb.study.results import ResultsTable  # noqa: E402
from genprune_nb.study.results import task_label  # noqa: E402
from genprune_nb.training.runlog import RunLog  # noqa: E402

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "07_paper_figures.ipynb"
CONDITIONS = ("Connectome", "RandomConnectome", "NoConnectome")
SEEDS = (0, 1)
STEPS = (0, 5, 10)
PRESET = get_preset("smoke")


def value(c: int, seed: int, step: int) -> float:
    """A distinct, hand-computable value per checkpoint."""
    return 0.1 * c + 0.01 * seed + 0.001 * step


def write_val_logs(study: StudyLayout) -> None:
    """metrics.jsonl of every inner run, as the training loop writes them (train and val records)."""
    for c, condition in enumerate(CONDITIONS):
        for seed in SEEDS:
            log = RunLog(study.inner_run(condition, seed) / "metrics.jsonl")
            for step in STEPS:
                log.append({"step": step, "tokens": step * 512, "train_loss": 9.0})
                log.append({"step": step, "tokens": step * 512, "val_loss": 10 - step * 0.1 + value(c, seed, 0)})


def synthetic_results(study: StudyLayout) -> pd.DataFrame:
    """A results table in the real format of every task the panels read, as the smoke preset's notebooks name them."""
    ev = PRESET.eval
    limit, n_sentences = ev.pick("limit"), ev.pick("n_sentences")
    reading, brain, localized = labels([behavior.TASK, encoding.TASK, localizer.TASK], preset_sizes(PRESET))
    write_val_logs(study)
    rows = curves.val_loss_rows(study, n=PRESET.inner_train.val_tokens).to_dict("records")
    for c, condition in enumerate(CONDITIONS):
        for seed in SEEDS:
            for step in STEPS:
                ids = {"condition": condition, "seed": seed, "step": step, "tokens": step * 512}
                v = value(c, seed, step)
                rows += [{**ids, "task": task_label("hellaswag", limit), "metric": m, "value": 0.25 + v, "n": 4}
                         for m in ("acc", "acc_norm")]
                rows += [{**ids, "task": task_label("mmlu", limit), "metric": "acc", "value": 0.2 + v, "n": 4},
                         {**ids, "task": task_label("mmlu", limit), "subject": "anatomy", "metric": "acc",
                          "value": 0.9, "n": 1}]
                rows += [{**ids, "task": task_label("blimp", limit), "metric": "acc", "value": 0.5 + v, "n": 268}]
                rows += [{**ids, "task": reading, "metric": m, "value": 0.3 + v - (step == 10) * 0.05, "n": 40}
                         for m in ("pearson_r", "pearson_r_low", "pearson_r_high", "brainscore")]
                if step != STEPS[-1]:
                    continue
                folds = np.arange(5, dtype=float)[None, :, None] * 0.001  # [layer, fold, neuroid]
                layers = 0.01 * np.arange(3)[:, None, None]
                by_layer = xr.DataArray(v + layers + folds, dims=("layer", "fold", "neuroid"),
                                        coords={"layer": [0, 1, 2]})
                rows += [{**ids, "task": brain, **r} for r in encoding.summary_rows(by_layer, n_sentences)]
                for units, extra in (("top 1%", 0.0), ("top 10%", 0.02)):
                    pooled = xr.DataArray(v + extra + folds[0], dims=("fold", "neuroid"))
                    rows += [{**ids, "task": localized, **r}
                             for r in encoding.summary_rows(pooled, n_sentences, units=units)]
    table = ResultsTable(study.root / "results.csv")
    table.add(rows)
    return table.load()  # as a notebook reads it back


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    study = StudyLayout(tmp_path_factory.mktemp("paper_study"))
    return synthetic_results(study), study


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def test_val_loss_rows_one_per_logged_val_loss(tmp_path):
    study = StudyLayout(tmp_path)
    assert curves.val_loss_rows(study).empty
    write_val_logs(study)
    rows = curves.val_loss_rows(study, n=2048)
    assert len(rows) == len(CONDITIONS) * len(SEEDS) * len(STEPS)
    assert set(rows["task"]) == {curves.VAL_LOSS_TASK} and set(rows["metric"]) == {"loss"}
    assert (rows["n"] == 2048).all()
    one = rows[(rows["condition"] == "RandomConnectome") & (rows["seed"] == 1) & (rows["step"] == 10)].iloc[0]
    assert one["tokens"] == 5120 and one["value"] == pytest.approx(10 - 1.0 + value(1, 1, 0))
    table = ResultsTable(tmp_path / "results.csv")
    table.add(rows)
    assert len(table.add(rows)) == len(rows), "re-adding replaces, it does not duplicate"


def test_describe_scale_names_both_scales():
    text = paper.describe_scale("tiny")
    assert text.startswith("preset tiny: 4 layers x 128")
    assert "48 inner steps x 1,024 tokens" in text and "the paper's 124M, 2,000 x 524,288" in text


def test_the_paper_scale_is_read_from_its_preset():
    from genprune_nb.analysis import efficiency
    from genprune_nb.study import released

    scale = paper.PAPER_SCALE
    assert scale is get_preset("gpt2-124m")
    m, t = scale.model, scale.inner_train
    assert (m.n_layer, m.n_head, m.n_embd, m.vocab_size, m.block_size) == (12, 12, 768, 50304, 1024)  # DESIGN.md §2
    assert (t.steps, t.batch_size, t.seq_len, t.tokens_per_step) == (2000, 512, 1024, 524_288)  # DESIGN.md §3
    assert (t.warmup_steps, t.decay_steps) == (250, 1750)
    assert efficiency.PAPER_INNER_TOKENS == 1_048_576_000
    assert efficiency.PAPER_MILESTONES == tuple(int(x * 1e6) for x in (25, 50, 75, 100, 250, 500, 750, 1000))
    assert (released.PAPER_INNER_STEPS, released.PAPER_TOKENS_PER_STEP) == (2000, 524_288)


def test_conditions_are_named_once_in_the_papers_order():
    assert PAPER_CONDITIONS == CONDITIONS
    assert InnerConfig().conditions is PAPER_CONDITIONS  # the preset default is the one tuple, not a copy
    assert tuple(plots.CONDITION_COLORS) == PAPER_CONDITIONS


def test_one_band_plot_draws_mean_and_se_per_condition():
    df = pd.DataFrame({"condition": ["NoConnectome"] * 4 + ["Connectome"] * 4, "seed": [0, 1] * 4,
                       "step": [0, 0, 1, 1] * 2, "value": [1.0, 3.0, 2.0, 4.0, 0.0, 0.0, 1.0, 1.0]})
    fig, ax = plt.subplots()
    summary = plots.condition_bands(ax, df, "value")
    assert [line.get_label() for line in ax.lines] == ["Connectome", "NoConnectome"]  # the paper's order
    assert ax.lines[0].get_color() == plots.CONDITION_COLORS["Connectome"]
    np.testing.assert_allclose(ax.lines[1].get_ydata(), [2.0, 3.0])  # mean over the two seeds
    band = ax.collections[1].get_paths()[0].vertices[:, 1]  # SE of (1, 3) and (2, 4) is 1
    assert (band.min(), band.max()) == pytest.approx((1.0, 4.0))
    assert plots.seeds_title(summary) == "mean ± SE over 2 seeds"


def test_paper_table_holds_the_design_numbers():
    ref = paper.PAPER.set_index(["quantity", "condition"])["value"]
    assert ref["val loss, end of the inner loop", "RandomConnectome"] == 5.43
    assert ref["HellaSwag acc_norm", "Connectome"] == 0.2764
    assert ref["MMLU acc", "NoConnectome"] == 0.2412
    assert ref["localized-unit encoding r", "RandomConnectome"] == 0.165
    assert paper.PAPER["definition"].str.len().min() > 20


def test_paper_vs_run_means_of_final_checkpoints(results):
    df, _ = results
    table = paper.paper_vs_run(df, PRESET)
    assert table.attrs["scale"].startswith("preset smoke:")
    row = table.set_index(["quantity", "condition", "run_at"])

    def run(quantity, condition, at):
        return row.loc[(quantity, condition, at)]

    # val loss: seeds 0 and 1 of RandomConnectome at step 10: 10 - 1 + 0.1 + {0, 0.01} -> mean 9.105
    r = run("val loss, end of the inner loop", "RandomConnectome", "step 10")
    assert r["run"] == pytest.approx(9.105) and r["paper"] == 5.43 and r["seeds"] == 2
    assert r["run_se"] == pytest.approx(0.005)
    # HellaSwag acc_norm, Connectome: 0.25 + 0.010 + {0, 0.01} -> 0.265
    assert run("HellaSwag acc_norm", "Connectome", "step 10")["run"] == pytest.approx(0.265)
    # MMLU: the per-subject rows are left out: 0.2 + 0.2 + 0.010 + {0, 0.01} -> 0.415
    assert run("MMLU acc", "NoConnectome", "step 10")["run"] == pytest.approx(0.415)
    # reading r peaks at step 5 (step 10 is 0.05 lower): 0.3 + 0.005 + {0, 0.01} -> 0.31
    peak = run("reading-time r, peak", "Connectome", "step 5")
    assert peak["run"] == pytest.approx(0.31) and peak["paper"] == 0.38
    end = run("reading-time r, end", "RandomConnectome", "step 10")
    assert end["run"] == pytest.approx(0.3 + 0.1 + 0.01 - 0.05 + 0.005) and np.isnan(end["paper"])
    # brain encoding: best layer is 2, fold mean adds 0.002: 0.1 + 0.01 + 0.02 + 0.002 + 0.005
    best = run("brain encoding r, best layer", "RandomConnectome", "layer 2")
    assert best["run"] == pytest.approx(0.137) and best["paper"] == 0.32
    loc = run("localized-unit encoding r", "NoConnectome", "top 10%")
    assert loc["run"] == pytest.approx(0.2 + 0.01 + 0.02 + 0.002 + 0.005) and loc["paper"] == 0.228
    assert len(table[table["quantity"] == "localized-unit encoding r"]) == 6  # 3 conditions x 2 masks
    dense = run("val loss, end of the inner loop", "Dense on L", "")
    assert dense["paper"] == 3.39 and np.isnan(dense["run"])
    assert table.loc[table["quantity"] == "noise ceiling", "run"].isna().all()


def test_paper_vs_run_on_an_empty_table_keeps_the_paper_rows():
    table = paper.paper_vs_run(ResultsTable(Path("/nonexistent/results.csv")).load(), "tiny")
    assert len(table) == len(paper.PAPER) and table["run"].isna().all()


def test_task_labels_prefer_the_presets_then_the_full_run(results):
    df, _ = results
    labels = paper.task_labels(df, PRESET)
    assert labels["hellaswag"] == "hellaswag@4" and labels["val_loss"] is None
    assert labels[curves.VAL_LOSS_TASK] == curves.VAL_LOSS_TASK
    assert labels[encoding.TASK] == "brain_encoding@sentences=40"
    extra = pd.DataFrame([{**df.iloc[0].to_dict(), "task": "hellaswag"}])
    assert paper.pick_task(pd.concat([df, extra]), "hellaswag") == "hellaswag"
    assert paper.pick_task(df, "hellaswag", "hellaswag@999") == "hellaswag@4"


@pytest.mark.parametrize("name", list(paper.PANELS))
def test_each_panel_draws_with_its_rows_and_skips_without(name, results, capsys):
    df, _ = results
    draw = paper.PANELS[name]
    fig = draw(df)
    assert isinstance(fig, plt.Figure) and fig.axes[0].has_data()
    bases = {"1B-i": [curves.VAL_LOSS_TASK], "1B-ii": ["hellaswag", "mmlu", "blimp"], "1C": [behavior.TASK],
             "1D-i": [encoding.TASK], "1D-ii": [localizer.TASK]}[name]
    others = df[~df["task"].str.split("@").str[0].isin(bases)]
    assert draw(others) is None
    assert f"Figure {name} skipped" in capsys.readouterr().out
    assert draw(df.iloc[0:0]) is None


def test_save_panels_writes_every_panel_and_skips_what_is_missing(tmp_path, results, capsys):
    df, _ = results
    labels = paper.task_labels(df, PRESET)
    paths = paper.save_panels(df, tmp_path, labels)
    assert list(paths) == list(paper.PANELS)
    assert [p.name for p in paths.values()] == [f"{name}.png" for name in paper.PANEL_FILES.values()]
    assert all(p.stat().st_size > 0 for p in paths.values())
    assert paper.panel_tasks("1B-ii", labels) == [labels["hellaswag"], labels["mmlu"], labels["blimp"]]
    some = paper.save_panels(df[df["task"] == curves.VAL_LOSS_TASK], tmp_path / "some")
    assert some["1B-i"] is not None and all(some[p] is None for p in list(paper.PANELS)[1:])
    assert "Figure 1C skipped" in capsys.readouterr().out
    with pytest.raises(ValueError, match="no Figure 1 panel '2A'"):
        paper.draw_panel(df, "2A", labels)


def test_notebook_runs_headless_from_the_results_table(tmp_path, results):
    papermill = pytest.importorskip("papermill")
    df, _ = results
    root = tmp_path / "study"
    ResultsTable(root / "results.csv").add(df)
    figs = tmp_path / "figs"
    papermill.execute_notebook(
        str(NOTEBOOK), str(tmp_path / "07.ipynb"), kernel_name="python3", cwd=str(tmp_path), progress_bar=False,
        parameters=dict(preset="smoke", run_root=str(root), figures_dir=str(figs), progress=False),
    )
    for name in ("07_figure1_b_i_val_loss", "07_figure1_b_ii_benchmarks", "07_figure1_c_reading_times",
                 "07_figure1_d_i_brain_layers", "07_figure1_d_ii_language_units"):
        assert (figs / f"{name}.png").stat().st_size > 0
    table = pd.read_csv(figs / "07_paper_vs_run.csv")
    assert {"paper", "run", "definition"} <= set(table.columns) and table["run"].notna().any()
