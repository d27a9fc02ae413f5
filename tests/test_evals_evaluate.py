"""Benchmarks over checkpoints: validation loss, one checkpoint (the CLI's call), a whole study with skipping."""
import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import genprune_nb.evals.runner as runner
from genprune_nb.config import get_preset, override
from genprune_nb.data.shards import write_shard
from genprune_nb.evals import evaluate, get_benchmark, run_task
from genprune_nb.evals.loss import val_loss
from genprune_nb.model.gpt import GPT
from genprune_nb.study.layout import StudyLayout
from genprune_nb.study.results import COLUMNS, task_label
from genprune_nb.training.checkpoint import resolve_checkpoint


def test_val_loss_by_hand(tmp_path):
    tokens = np.random.default_rng(0).integers(0, 50257, size=5000)
    write_shard(tmp_path / "english_prose_val_000000.bin", tokens)
    preset = override(get_preset("smoke"), {"data.tokens_dir": str(tmp_path), "train.val_tokens": 1024})
    torch.manual_seed(0)
    model = GPT(preset.model).eval()
    x = torch.from_numpy(tokens[:1025].astype(np.int64))
    with torch.no_grad():
        # 1024 tokens = 4 batches of 4 x 64 in the preset's geometry; equal-sized batches, so one flat mean
        logits, _ = model(x[:-1].view(16, 64))
        expected = F.cross_entropy(logits.view(-1, logits.size(-1)), x[1:]).item()
    (row,) = run_task("val_loss", model, preset=preset)
    assert row == {"metric": "loss", "value": pytest.approx(expected, abs=1e-4), "n": 1024}
    (quick,) = run_task("val_loss", model, preset=preset, limit=2)  # 2 sequences
    assert quick["n"] == 128
    with pytest.raises(ValueError, match="hold only"):
        val_loss(model, [tmp_path / "english_prose_val_000000.bin"], tokens=10_000, seq_len=64, batch_size=4)


def test_evaluate_checkpoint_reads_ids_from_the_study_path(fake_study):
    run = fake_study.inner_run("RandomConnectome", 1)
    df = evaluate(run, "blimp", limit=3, device="cpu", progress=False)  # a run dir: its latest
    assert list(df.columns[:5]) == COLUMNS[:5] and list(df.columns[-5:]) == ["metric", "value", "n", "fingerprint",
                                                                               "revision"]
    assert set(df.columns[5:-5]) == {"paradigm", "phenomenon"}  # the results table's own column order
    assert set(df["fingerprint"]) == {resolve_checkpoint(run).fingerprint()}  # what was scored
    overall = df[df["paradigm"].isna() & df["phenomenon"].isna()].iloc[0]
    assert (overall["condition"], overall["seed"], overall["step"], overall["task"]) == \
           ("RandomConnectome", 1, 20, "blimp@3")
    assert overall["n"] == 3 and len(df) == 1 + 2 + 3  # overall, 2 phenomena, 3 paradigms (round-robin)
    ten = evaluate(run / "checkpoints" / "step_000010", "hellaswag", limit=2, progress=False)
    assert ten["step"].tolist() == [10, 10] and ten["metric"].tolist() == ["acc", "acc_norm"]
    with pytest.raises(FileNotFoundError, match="neither a checkpoint"):
        evaluate(fake_study.root / "inner", "blimp")


@pytest.fixture
def study(tmp_path, fake_study):
    """The fake study's checkpoints under a fresh root, so that its results table starts empty."""
    (tmp_path / "inner").symlink_to(fake_study.root / "inner")
    return StudyLayout(tmp_path)


def test_evaluate_study_fills_the_table_and_skips_what_is_done(study, monkeypatch):
    prepared = []
    real = get_benchmark("hellaswag")
    counting = dataclasses.replace(real, prepare=lambda s: prepared.append(real.name) or real.prepare(s))
    monkeypatch.setattr(runner, "get_benchmark", lambda name: counting)
    df = evaluate(study, ["hellaswag"], limit=2, device="cpu", conditions=["Connectome"], final_only=True,
                  progress=False)
    assert set(df["condition"]) == {"Connectome"} and set(df["task"]) == {task_label("hellaswag", 2)}
    assert sorted(df["seed"].unique()) == [0, 1] and set(df["step"]) == {20}
    again = evaluate(study.root, ["hellaswag"], limit=2, device="cpu", conditions=["Connectome"],
                     final_only=True, progress=False)
    assert prepared == ["hellaswag"]  # the second sweep found everything done and read no data
    assert again.equals(df) and study.results.load().equals(df)


def test_a_given_limit_overrides_the_one_in_sizes(study):
    """``evaluate(..., limit=2, sizes=preset_sizes(preset))``: the preset's budget has its own limit (None on some
    presets); the one given explicitly is the one scored and stored."""
    df = evaluate(study, ["hellaswag"], limit=2, sizes={"limit": None}, device="cpu", conditions=["Connectome"],
                  final_only=True, progress=False)
    assert set(df["task"]) == {task_label("hellaswag", 2)} and set(df["n"]) == {2}
