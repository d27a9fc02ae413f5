"""Provenance: runs, generations and results rows are only continued, skipped or reused under the recipe they
were made with (issue 12, item 1)."""
import dataclasses
import json
import shutil

import pandas as pd
import pytest
import torch

from genprune_nb.config import Preset, get_preset, override
from genprune_nb.connectome.wiring import Connectome
from genprune_nb.data.manifest import shard_files
from genprune_nb.evals.runner import sweep
from genprune_nb.model.gpt import GPT
from genprune_nb.storage import hashing
from genprune_nb.study.generations import inner_keep_steps, inner_schedule, run_inner_loop, run_outer_loop
from genprune_nb.study.layout import StudyLayout
from genprune_nb.study.model_refs import ModelRef
from genprune_nb.study.results import FINGERPRINT, REVISION, ResultsTable
from genprune_nb.training import provenance
from genprune_nb.training.checkpoint import latest_checkpoint, list_checkpoints, save_checkpoint
from genprune_nb.training.loop import train
from genprune_nb.training.provenance import ProvenanceError
from genprune_nb.training.runlog import RunLog
from genprune_nb.training.schedule import lr_at


@pytest.fixture(scope="module")
def fast(smoke_preset):
    """The smoke preset with 6 outer and 4 inner steps: provenance, not learning, is under test."""
    return override(smoke_preset, {
        "train.steps": 6, "train.warmup_steps": 1, "train.decay_steps": 2, "train.val_every": 3,
        "train.checkpoint_every": 3, "inner_train.steps": 4, "inner_train.warmup_steps": 1,
        "inner_train.decay_steps": 2, "inner_train.val_every": 2, "inner.keep_every": 2,
        "inner.conditions": "Connectome", "inner.seeds": "0",
    })


@pytest.fixture(scope="module")
def finished(fast, tmp_path_factory):
    """A finished 2-generation outer loop and one inner run; tests work on copies."""
    study = StudyLayout(tmp_path_factory.mktemp("finished"))
    run_outer_loop(fast, study, progress=False)
    run_inner_loop(fast, study, progress=False)
    return study


@pytest.fixture
def study(finished, tmp_path):
    shutil.copytree(finished.root, tmp_path / "study")
    return StudyLayout(tmp_path / "study")


def mtimes(run_dir):
    return [c.path.stat().st_mtime_ns for c in list_checkpoints(run_dir)]


def test_resume_under_another_recipe_is_refused_naming_the_fields(fast, tmp_path):
    run = tmp_path / "run"
    train(fast, run, until=3, progress=False)
    config, metrics = (run / "config.json").read_text(), (run / "metrics.jsonl").read_text()
    other = override(fast, {"train.lr": 0.001, "model.n_layer": 3})
    with pytest.raises(ProvenanceError) as refused:
        train(other, run, resume=True, progress=False)
    message = str(refused.value)
    assert "train.lr: 0.003 in the run, 0.001 now" in message and "model.n_layer: 2 in the run, 3 now" in message
    assert "--overwrite" in message and "--run-dir" in message and "\n" not in message
    # nothing was touched: the run still says (and is) what it was
    assert (run / "config.json").read_text() == config and (run / "metrics.jsonl").read_text() == metrics
    assert [c.step for c in list_checkpoints(run)] == [3]

    # fields that change only what is logged or kept do not block a resume
    result = train(override(fast, {"train.log_every": 2, "train.keep_last": 3}), run, resume=True, progress=False)
    assert result.steps == 6

    # overwrite restarts from scratch under the new recipe: no checkpoint or metric of the old one survives
    other = override(fast, {"train.lr": 0.001})
    train(other, run, resume=True, overwrite=True, progress=False)
    recorded = provenance.read(run)
    assert recorded["train"]["lr"] == 0.001
    assert json.loads((run / "config.json").read_text())["train"]["lr"] == 0.001
    assert {c.state()["run_fingerprint"] for c in list_checkpoints(run)} == {hashing.digest(recorded)}
    records = RunLog(run / "metrics.jsonl").records()
    assert [r["step"] for r in records if "lr" in r] == [5, 6]  # one run's log, not two interleaved
    assert [r["lr"] for r in records if r["step"] == 5] == [pytest.approx(lr_at(4, other.train))]


def test_run_without_a_recorded_fingerprint_is_checked_against_its_checkpoint(fast, tmp_path):
    run = tmp_path / "run"
    train(fast, run, until=3, progress=False)
    (run / provenance.FINGERPRINT_FILE).unlink()  # as a run written before fingerprints were recorded
    with pytest.raises(ProvenanceError, match=r"train.lr: 0.003 in the run, 0.002 now"):
        train(override(fast, {"train.lr": 0.002}), run, resume=True, progress=False)
    train(fast, run, resume=True, progress=False)
    assert provenance.read(run)["train"]["lr"] == 0.003  # adopted once it matched


def test_data_hashes_from_the_shard_meta_are_part_of_the_fingerprint(fast, tmp_path):
    import numpy as np

    from genprune_nb.data.shards import write_shard

    shard = tmp_path / "x_train_000001.bin"
    write_shard(shard, np.arange(100, dtype=np.uint16))
    start = provenance.tensor_start(None, None, 0)
    plain = provenance.run_fingerprint(fast.model, fast.train, [shard], [shard], start)
    assert plain["data"]["train"] == {"files": [shard.name], "shards": {shard.name: {"tokens": 100}}}
    (tmp_path / "x_meta.json").write_text(json.dumps({"files": {"train": [shard.name]}, "sha256": {shard.name: "ab" * 32}}))
    hashed = provenance.run_fingerprint(fast.model, fast.train, [shard], [shard], start)
    assert hashed["data"]["train"]["shards"][shard.name]["sha256"] == "ab" * 32
    fields = [d.field for d in provenance.compare(plain, hashed)]
    assert fields == [f"data.train.shards.{shard.name}.sha256", f"data.val.shards.{shard.name}.sha256"]


def test_more_generations_refresh_the_final_connectome(fast, study):
    before = {g: mtimes(study.generation(g)) for g in (0, 1)}
    final = run_outer_loop(override(fast, {"outer.generations": 3}), study, progress=False)
    assert {g: mtimes(study.generation(g)) for g in (0, 1)} == before  # not trained again
    assert study.final_connectome().read_bytes() == study.connectome(2).read_bytes()
    assert final.meta["generation"] == 2
    assert final.density() == pytest.approx(Connectome.load(study.connectome(2)).density())
    # three prunings: a block tensor (no tied magnitudes) keeps 0.8^3; wte keeps more under the default tie rule
    # (outer.ties=authors: rows of tokens never seen keep tied magnitudes and survive at the threshold)
    assert final.densities()["transformer.h.0.mlp.c_fc.weight"] == pytest.approx(0.8 ** 3, abs=1e-3)


def test_another_lr_on_a_finished_outer_loop_is_refused_then_retrained_with_overwrite(fast, study):
    connectome = study.final_connectome().read_bytes()
    other = override(fast, {"train.lr": 0.001, "outer.generations": 1})
    with pytest.raises(ProvenanceError, match=r"gen_0/connectome.gpc was made with another recipe \(train.lr: "
                                              r"0.003 in the run, 0.001 now\); pass --overwrite"):
        run_outer_loop(other, study, progress=False)
    assert study.final_connectome().read_bytes() == connectome
    old = latest_checkpoint(study.generation(0)).load_model().state_dict()
    run_outer_loop(other, study, overwrite=True, progress=False)
    new = latest_checkpoint(study.generation(0)).load_model().state_dict()
    assert not torch.equal(old["lm_head.weight"], new["lm_head.weight"])  # trained again, under the new lr
    assert provenance.read(study.generation(0))["train"]["lr"] == 0.001
    assert study.final_connectome().read_bytes() == study.connectome(0).read_bytes()


def test_other_pruning_settings_are_refused_then_pruned_again_without_training(fast, study):
    other = override(fast, {"outer.prune_fraction": 0.3, "outer.generations": 1})
    trained = mtimes(study.generation(0))
    with pytest.raises(ProvenanceError, match=r"outer.prune_fraction: 0.2 in the run, 0.3 now"):
        run_outer_loop(other, study, progress=False)
    final = run_outer_loop(other, study, overwrite=True, progress=False)
    assert mtimes(study.generation(0)) == trained
    assert final.density() == pytest.approx(0.7, abs=1e-3)
    assert json.loads((study.generation(0) / "generation.json").read_text())["density"] == pytest.approx(0.7, abs=1e-3)


def test_inner_run_from_a_changed_connectome_is_refused_and_its_rows_recomputed(fast, study):
    table = study.results
    calls = []

    def evaluate(model):
        calls.append(1)
        return [{"metric": "norm", "value": float(model.lm_head.weight.detach().norm()), "n": 1}]

    refs = study.model_refs()
    assert [r.step for r in refs] == [0, 2, 4]
    sweep(refs, "weights", evaluate, table, progress=False)
    assert len(calls) == 3
    run_outer_loop(override(fast, {"outer.generations": 1}), study, progress=False)  # final = generation 0's
    with pytest.raises(ProvenanceError, match=r"inner/Connectome/seed_0 was made with another recipe "
                                              r"\(start.connectome: \"\w+\" in the run, \"\w+\" now\)"):
        run_inner_loop(fast, study, progress=False)
    refs = run_inner_loop(fast, study, overwrite=True, progress=False)
    grown = latest_checkpoint(study.inner_run("Connectome", 0)).masks()
    assert all(torch.equal(grown[n], m) for n, m in Connectome.load(study.connectome(0)).masks().items())
    df = sweep(refs, "weights", evaluate, table, progress=False)
    assert len(calls) == 6  # every checkpoint changed (step 0 too: another connectome), so every row is new
    weights = df[df["task"] == "weights"]  # beside the loop's val-loss curve rows
    assert len(weights) == 3 and set(weights[FINGERPRINT]) == {r.fingerprint for r in refs}


def test_results_rows_of_a_changed_checkpoint_are_recomputed_never_reused(tmp_path):
    smoke = get_preset("smoke")
    run = tmp_path / "run"
    calls = []

    def evaluate(model):
        calls.append(1)
        return [{"metric": "norm", "value": float(model.lm_head.weight.detach().norm()), "n": 1},
                {"metric": "norm", "value": 1.0, "n": 1, "part": "old-only" if len(calls) == 1 else "new"}]

    def checkpoint(seed):
        ckpt = save_checkpoint(run, 5, model=GPT(smoke.model, seed=seed), preset=smoke)
        return ModelRef("NoConnectome", 0, 5, 2560, ckpt.path)

    table = ResultsTable(tmp_path / "results.csv")
    sweep([checkpoint(0)], "weights", evaluate, table, progress=False)
    sweep([checkpoint(0)], "weights", evaluate, table, progress=False)
    assert len(calls) == 1  # the same weights again: reused
    ref = checkpoint(1)  # the same step of another run
    df = sweep([ref], "weights", evaluate, table, progress=False)
    assert len(calls) == 2
    assert set(df[FINGERPRINT]) == {ref.checkpoint_fingerprint()}
    assert list(df["part"].fillna("")) == ["", "new"]  # the old checkpoint's rows are gone, also the extra-key one
    # a table written before rows recorded fingerprints still loads, and its rows count as unknown
    df.drop(columns=[FINGERPRINT]).to_csv(table.path, index=False)
    assert table.load()[FINGERPRINT].isna().all()
    sweep([ref], "weights", evaluate, table, progress=False)
    assert len(calls) == 3
    assert isinstance(table.load()[FINGERPRINT].iloc[0], str)


def test_fingerprint_column_survives_a_round_trip_as_text(tmp_path):
    table = ResultsTable(tmp_path / "results.csv")
    row = {"condition": "c", "seed": 0, "step": 1, "tokens": 1, "task": "t", "metric": "m", "value": 1.0, "n": 1}
    table.add([{**row, FINGERPRINT: "1234567890123456"}, {**row, "step": 2, FINGERPRINT: "1e34567890123456"}])
    assert list(table.load()[FINGERPRINT]) == ["1234567890123456", "1e34567890123456"]
    assert pd.api.types.is_numeric_dtype(table.load()["value"])


def test_loops_take_overwrite_on_the_command_line():
    from genprune_nb.cli import build_parser

    for command in ("outer", "inner"):
        assert build_parser().parse_args([command, "--overwrite"]).overwrite
        assert not build_parser().parse_args([command]).overwrite


def old_inner_fingerprint(preset, study, seed):
    """An inner run's fingerprint as the code before issue 13 computed it: train() got a preset whose ``train`` was
    ``inner_train`` with the seed and kept steps swapped in, and no group sparsity."""
    schedule = dataclasses.replace(preset.inner_train, seed=seed, keep_checkpoints=inner_keep_steps(preset))
    start = {"condition": "Connectome", "seed": seed, "connectome": Connectome.load(study.final_connectome()).digest()}
    return provenance.run_fingerprint(preset.model, schedule, shard_files(preset, "small"), shard_files(preset, "val"),
                                      start, 0.0)


def test_inner_checkpoints_store_the_study_preset_and_the_schedule_they_ran(fast, study):
    run = study.inner_run("Connectome", 0)
    assert provenance.read(run) == old_inner_fingerprint(fast, study, 0)  # the recipe's fingerprint is unchanged
    for ckpt in list_checkpoints(run):
        assert ckpt.preset() == fast  # the study's preset, unchanged
        assert ckpt.schedule() == inner_schedule(fast, 0)
    assert Preset.from_dict(json.loads((run / "config.json").read_text())) == fast
    # a run without fingerprint.json is checked against its checkpoint's schedule, not the preset's train
    (run / provenance.FINGERPRINT_FILE).unlink()
    before = mtimes(run)
    run_inner_loop(fast, study, progress=False)
    assert mtimes(run) == before and provenance.read(run) == old_inner_fingerprint(fast, study, 0)


def test_a_study_written_before_the_schedule_was_recorded_resumes_without_overwrite(fast, study):
    """Checkpoints of older code hold the inner schedule as their preset's ``train`` and no recorded schedule."""
    run = study.inner_run("Connectome", 0)
    schedule = inner_schedule(fast, 0)
    for ckpt in list_checkpoints(run):
        config = json.loads((ckpt.path / "config.json").read_text())
        config["train"] = provenance.jsonable(dataclasses.asdict(schedule))
        (ckpt.path / "config.json").write_text(json.dumps(config))
        state = json.loads((ckpt.path / "state.json").read_text())
        del state["schedule"]
        (ckpt.path / "state.json").write_text(json.dumps(state))
        assert ckpt.schedule() == schedule and ckpt.load_model() is not None
    before = mtimes(run)
    run_inner_loop(fast, study, progress=False)  # same recipe: skipped, no --overwrite needed
    assert mtimes(run) == before
    (run / provenance.FINGERPRINT_FILE).unlink()  # older still: no fingerprint either
    run_inner_loop(fast, study, progress=False)
    assert mtimes(run) == before and provenance.read(run) == old_inner_fingerprint(fast, study, 0)


def test_val_loss_of_a_checkpoint_uses_the_schedule_it_trained_on(smoke_preset, tmp_path):
    """An inner run's val loss is measured as it trained (inner_train), not with its preset's outer ``train``."""
    from genprune_nb.evals import evaluate
    from genprune_nb.training.checkpoint import SCHEDULE

    schedule = dataclasses.replace(smoke_preset.inner_train, val_tokens=3 * 8 * 64, seed=7)  # 3 batches of 8 x 64
    assert smoke_preset.train.val_tokens != schedule.val_tokens and smoke_preset.train.seed != 7
    save_checkpoint(tmp_path / "run", 0, model=GPT(smoke_preset.model), preset=smoke_preset,
                    state={SCHEDULE: provenance.jsonable(dataclasses.asdict(schedule))})
    row = evaluate(tmp_path / "run", "val_loss", device="cpu", progress=False).iloc[0]
    assert row["n"] == schedule.val_tokens and row["seed"] == 7


def test_a_new_benchmark_revision_rescores_and_replaces_the_old_rows(tmp_path):
    smoke = get_preset("smoke")
    ckpt = save_checkpoint(tmp_path / "run", 5, model=GPT(smoke.model, seed=0), preset=smoke)
    ref = ModelRef("NoConnectome", 0, 5, 2560, ckpt.path)
    calls = []

    def evaluate(model):
        calls.append(1)
        metric = "old_metric" if len(calls) == 1 else "new_metric"  # revision 2 writes other metrics
        return [{"metric": "acc", "value": float(len(calls)), "n": 1}, {"metric": metric, "value": 0.0, "n": 1}]

    table = ResultsTable(tmp_path / "results.csv")
    sweep([ref], "task", evaluate, table, progress=False)  # revision 1, the default
    sweep([ref], "task", evaluate, table, progress=False, revision=1)
    assert len(calls) == 1 and table.has(ref, "task") and not table.has(ref, "task", 2)
    df = sweep([ref], "task", evaluate, table, progress=False, revision=2)
    assert len(calls) == 2
    assert sorted(df["metric"]) == ["acc", "new_metric"] and set(df[REVISION]) == {2}  # no row of revision 1 left
    assert df.loc[df["metric"] == "acc", "value"].item() == 2.0
    # a table written before rows recorded revisions loads with revision 1, so revision 2 rescores it
    df.drop(columns=[REVISION]).to_csv(table.path, index=False)
    assert set(table.load()[REVISION]) == {1}
    sweep([ref], "task", evaluate, table, progress=False, revision=2)
    assert len(calls) == 3
