import math
from pathlib import Path

import pandas as pd
import pytest
import torch

from genprune_nb.config import get_preset
from genprune_nb.model.gpt import GPT
from genprune_nb.model.lm import next_token_logprobs
from genprune_nb.evals.runner import sweep
from genprune_nb.report.benchmarks import headline
from genprune_nb.study.model_refs import ModelRef
from genprune_nb.study.results import COLUMNS, ResultsTable, select
from genprune_nb.training.checkpoint import save_checkpoint

SMOKE = get_preset("smoke")


def test_next_token_logprobs_by_hand_and_under_padding():
    torch.manual_seed(0)
    model = GPT(SMOKE.model).eval()
    ids = torch.randint(0, 50257, (2, 12))
    lp = next_token_logprobs(model, ids)
    logits, _ = model(ids)
    assert lp[1, 4].item() == pytest.approx(torch.log_softmax(logits[1, 4], -1)[ids[1, 5]].item(), abs=1e-5)
    padded = torch.cat([ids, torch.zeros(2, 5, dtype=torch.long)], dim=1)
    torch.testing.assert_close(next_token_logprobs(model, padded)[:, :11], lp)


def test_results_table_replaces_same_keys_and_keeps_extra_columns(tmp_path):
    table = ResultsTable(tmp_path / "results.csv")
    base = {"condition": "Connectome", "seed": 0, "step": 100, "tokens": 1000, "task": "blimp", "n": 10}
    table.add([{**base, "metric": "acc", "value": 0.5}])
    table.add([{**base, "metric": "acc", "value": 0.6}, {**base, "metric": "acc", "value": 0.7, "paradigm": "x"}])
    df = table.load()
    assert len(df) == 2
    assert df.loc[df["paradigm"].isna(), "value"].item() == 0.6
    with pytest.raises(ValueError, match="lack columns"):
        table.add([{"condition": "x"}])


def test_sweep_skips_what_is_done(tmp_path):
    torch.manual_seed(0)
    model = GPT(SMOKE.model)
    refs = []
    for step in (1, 2):
        ckpt = save_checkpoint(tmp_path / "run", step, model=model, preset=SMOKE)
        refs.append(ModelRef("NoConnectome", 0, step, step * 512, ckpt.path))
    calls = []

    def evaluate(m):
        calls.append(1)
        return [{"metric": "norm", "value": m.lm_head.weight.detach().norm().item(), "n": 1}]

    table = ResultsTable(tmp_path / "results.csv")
    sweep(refs[:1], "weights", evaluate, table, progress=False)
    df = sweep(refs, "weights", evaluate, table, progress=False)
    assert len(calls) == 2 and list(df["step"]) == [1, 2]
    assert df["value"].iloc[0] == pytest.approx(model.lm_head.weight.detach().norm().item())
    assert isinstance(df, pd.DataFrame) and not math.isnan(df["value"].sum())


def test_study_layout_lists_inner_checkpoints_in_order(tmp_path):
    from genprune_nb.study.layout import StudyLayout

    study = StudyLayout(tmp_path)
    model = GPT(SMOKE.model)
    for cond in ("RandomConnectome", "Connectome"):
        for seed in (10, 2):
            for step in (5, 10):
                save_checkpoint(study.inner_run(cond, seed), step, model=model, preset=SMOKE,
                                state={"tokens": step * 512})
    refs = study.model_refs()
    assert [(r.condition, r.seed, r.step) for r in refs[:4]] == [
        ("Connectome", 2, 5), ("Connectome", 2, 10), ("Connectome", 10, 5), ("Connectome", 10, 10)]
    assert refs[1].tokens == 5120
    final = study.model_refs(conditions=["Connectome"], final_only=True)
    assert [(r.seed, r.step) for r in final] == [(2, 10), (10, 10)]


_GOOD = "condition,seed,step,tokens,task,metric,value,n\nConnectome,0,10,100,blimp,acc,0.5,10\nConnectome,0,20,200,blimp,acc,,\n"


@pytest.mark.parametrize("bad_row, message", [
    ("Connectome,0,30,300,blimp,acc", "line 4 has 6 fields, the header 8"),  # a truncated row
    ("Connectome,0,30,300,blimp,acc,0.5,10,7", "line 4 has 9 fields"),
    ("Connectome,,30,300,blimp,acc,0.5,10", "line 4: seed is empty, expected an integer"),
    ("Connectome,0,3x,300,blimp,acc,0.5,10", "line 4: step is '3x', expected an integer"),
    ("Connectome,0,30,2.5,blimp,acc,0.5,10", "line 4: tokens is '2.5', expected an integer"),
    ("Connectome,0,30,300,,acc,0.5,10", "line 4: task is empty"),
    ("Connectome,0,30,300,blimp,acc,high,10", "line 4: value is 'high', expected a number"),
    ("\n\nConnectome,0,30,300,blimp,acc,0.5,ten", "line 6: n is 'ten'"),  # blank lines still count
])
def test_a_damaged_results_row_is_refused_naming_file_and_line(tmp_path, bad_row, message):
    path = tmp_path / "results.csv"
    path.write_text(_GOOD + bad_row + "\n")
    with pytest.raises(ValueError, match=f"results.csv: {message}"):
        ResultsTable(path).load()
    path.write_text(_GOOD)  # an undefined (NaN) value and n are legitimate
    df = ResultsTable(path).load()
    assert len(df) == 2 and math.isnan(df["value"].iloc[1])
    ResultsTable(path).add(df.assign(fingerprint="f0"))  # the rows record the checkpoint they scored
    assert ResultsTable(path).has(ModelRef("Connectome", 0, 20, 200, tmp_path, fingerprint="f0"), "blimp")


def _table():
    rows = []
    for seed in (1, 0):
        for step, tokens in ((20, 200), (10, 100)):
            ids = {"condition": "Connectome", "seed": seed, "step": step, "tokens": tokens, "n": 5}
            rows.append({**ids, "task": "blimp@50", "metric": "acc", "value": 0.5 + seed + step / 100})
            rows.append({**ids, "task": "blimp@50", "metric": "acc", "paradigm": "p1", "value": 0.1})
            rows.append({**ids, "task": "brain_encoding", "metric": "pearson_r", "layer": 1, "value": 0.2})
            rows.append({**ids, "task": "brain_encoding", "metric": "pearson_r", "layer": 2, "value": 0.3})
    return pd.DataFrame(rows)


def test_select_overall_rows_by_task_name_sorted():
    df = select(_table(), "blimp", "acc")
    assert list(df["task"].unique()) == ["blimp@50"] and df["paradigm"].isna().all()
    assert list(zip(df["seed"], df["tokens"])) == [(0, 100), (0, 200), (1, 100), (1, 200)]
    assert df["value"].tolist() == pytest.approx([0.6, 0.7, 1.6, 1.7])


def test_select_keys_and_breakdown():
    assert select(_table(), "blimp@50", "acc", paradigm="p1")["value"].tolist() == [0.1] * 4
    per_layer = select(_table(), "brain_encoding", "pearson_r", breakdown="layer")
    assert sorted(per_layer["layer"].unique()) == [1, 2] and len(per_layer) == 8
    assert select(_table(), "brain_encoding", "pearson_r", layer=2)["value"].tolist() == [0.3] * 4
    assert select(_table(), "brain_encoding", "pearson_r", required=False).empty  # no overall row: layers only


def test_select_names_what_is_missing():
    with pytest.raises(ValueError, match="no task 'mmlu'.*stored tasks"):
        select(_table(), "mmlu", "acc")
    with pytest.raises(ValueError, match="has no metric 'acc_norm'"):
        select(_table(), "blimp", "acc_norm")
    with pytest.raises(ValueError, match=r"no column\(s\) \['subject'\]"):
        select(_table(), "blimp", "acc", subject="x")
    assert select(_table(), "mmlu", "acc", required=False).empty


def test_headline_rows_are_the_selectors_overall_rows():
    """The benchmark report's headline is ``select``'s overall score: a row with any extra key set is left out."""
    table = _table()
    layered = pd.concat([table, table.iloc[[0]].assign(layer=3, value=9.9)], ignore_index=True)
    rows = headline(layered, ["blimp@50"])
    pd.testing.assert_frame_equal(rows, select(table, "blimp", "acc")[COLUMNS])
    assert headline(layered, ["mmlu"]).empty and list(headline(layered, ["mmlu"]).columns) == COLUMNS


def test_checkpoint_table_and_one_model_per_condition():
    from genprune_nb.study.model_refs import ModelRef, checkpoint_table, one_per_condition

    refs = [ModelRef(c, seed, step, step * 10, Path(f"{c}/{seed}/{step}"))
            for c, seed, step in [("RandomConnectome", 3, 20), ("RandomConnectome", 1, 10), ("RandomConnectome", 1, 30),
                                  ("Zeta", 0, 5), ("Connectome", 2, 40)]]
    table = checkpoint_table(refs)
    assert table.loc[("RandomConnectome", 1)].tolist() == [2, 10, 30]  # checkpoints, first step, last step
    assert table.loc[("Connectome", 2)].tolist() == [1, 40, 40] and list(table.columns) == [
        "checkpoints", "first_step", "last_step"]
    picked = one_per_condition(refs)
    assert list(picked) == ["Connectome", "RandomConnectome", "Zeta"]  # the paper's order, others after
    assert (picked["RandomConnectome"].seed, picked["RandomConnectome"].step) == (1, 10)  # lowest seed, first listed
