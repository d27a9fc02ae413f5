"""Masked training, checkpoints and bitwise resume on the smoke preset."""
import json

import numpy as np
import pytest
import torch

from genprune_nb.config import get_preset, override
from genprune_nb.data.shards import write_shard
from genprune_nb.training import checkpoint as checkpoint_mod
from genprune_nb.training.checkpoint import (
    CheckpointError,
    latest_checkpoint,
    list_checkpoints,
    restore_training_state,
)
from genprune_nb.training.loop import RunDirError, train
from genprune_nb.training.schedule import lr_at

SMOKE = get_preset("smoke")


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """Two small train shards and one val shard of a learnable token stream (a repeated random phrase)."""
    root = tmp_path_factory.mktemp("tokens")
    rng = np.random.default_rng(0)
    phrase = rng.integers(0, 50257, size=97)
    stream = np.tile(phrase, 300)
    noise = rng.random(stream.size) < 0.1
    stream[noise] = rng.integers(0, 50257, size=int(noise.sum()))
    train_files = [root / "t_train_000000.bin", root / "t_train_000001.bin"]
    write_shard(train_files[0], stream[:9000])
    write_shard(train_files[1], stream[9000:18000])
    val = root / "t_val_000000.bin"
    write_shard(val, stream[18000:])
    return {"train_files": train_files, "val_files": [val]}


def random_masks(density: float, seed: int = 0) -> dict[str, torch.Tensor]:
    from genprune_nb.model.gpt import GPT

    gen = torch.Generator().manual_seed(seed)
    names = [n for n, p in GPT(SMOKE.model).named_parameters() if p.dim() == 2]
    shapes = {n: p.shape for n, p in GPT(SMOKE.model).named_parameters()}
    return {n: torch.rand(shapes[n], generator=gen) < density for n in names}


def final_weights(run_dir):
    return latest_checkpoint(run_dir).weights()  # dense: a masked run stores its survivors only


def test_schedule_by_hand():
    cfg = override(SMOKE, ["train.steps=100", "train.warmup_steps=10", "train.decay_steps=40", "train.lr=1.0"]).train
    assert lr_at(0, cfg) == pytest.approx(0.1)
    assert lr_at(9, cfg) == pytest.approx(1.0)
    assert lr_at(30, cfg) == 1.0 and lr_at(59, cfg) == 1.0
    assert lr_at(60, cfg) == pytest.approx(1.0)  # (100 - 60) / 40
    assert lr_at(80, cfg) == pytest.approx(0.5)
    assert lr_at(99, cfg) == pytest.approx(1 / 40)
    with pytest.raises(ValueError, match="step 100"):
        lr_at(100, cfg)


def test_masked_weights_stay_exactly_zero_after_50_steps(tmp_path, shards):
    preset = override(SMOKE, ["train.steps=50", "train.warmup_steps=5", "train.decay_steps=20",
                              "train.checkpoint_every=0", "train.val_every=0"])
    masks = random_masks(0.26)
    from genprune_nb.model.gpt import GPT

    init = GPT(preset.model, seed=preset.train.seed).state_dict()  # the weights train() starts from
    result = train(preset, tmp_path / "run", masks=masks, progress=False, **shards)
    weights = final_weights(result.run_dir)
    for name, mask in masks.items():
        w = weights[name]
        assert torch.count_nonzero(w[~mask]) == 0, name  # exactly 0.0, not merely small
        assert not torch.equal(w[mask], init[name][mask]), name  # the survivors trained
    saved = latest_checkpoint(result.run_dir).masks()
    assert all(torch.equal(saved[n], masks[n]) for n in masks)
    log = [json.loads(l) for l in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    losses = [r["train_loss"] for r in log if "train_loss" in r]
    assert losses[-1] < losses[0]


def test_resume_is_bitwise_identical(tmp_path, shards):
    masks = random_masks(0.5, seed=1)
    straight = train(SMOKE, tmp_path / "straight", masks=masks, progress=False, **shards)
    first = train(SMOKE, tmp_path / "split", masks=masks, until=7, progress=False, **shards)
    assert first.steps == 7 and latest_checkpoint(first.run_dir).step == 7
    # the resumed run gets neither init nor masks: both come from the checkpoint
    resumed = train(SMOKE, tmp_path / "split", resume=True, progress=False, **shards)
    a, b = final_weights(straight.run_dir), final_weights(resumed.run_dir)
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name
    assert resumed.final_val_loss == straight.final_val_loss
    log_a = [json.loads(l) for l in (straight.run_dir / "metrics.jsonl").read_text().splitlines()]
    log_b = [json.loads(l) for l in (resumed.run_dir / "metrics.jsonl").read_text().splitlines()]
    strip = lambda log: [{k: v for k, v in r.items() if k != "tokens_per_s"} for r in log]
    assert strip(log_a) == strip(log_b)


def test_existing_run_is_not_overwritten_silently(tmp_path, shards):
    preset = override(SMOKE, ["train.steps=2", "train.warmup_steps=1", "train.decay_steps=1", "train.val_every=0"])
    train(preset, tmp_path / "run", progress=False, **shards)
    with pytest.raises(RunDirError, match="resume or overwrite"):
        train(preset, tmp_path / "run", progress=False, **shards)
    train(preset, tmp_path / "run", overwrite=True, progress=False, **shards)


def test_kill_mid_save_keeps_previous_checkpoint_as_latest(tmp_path, shards, monkeypatch):
    preset = override(SMOKE, ["train.checkpoint_every=5", "train.val_every=0", "train.keep_last=10"])
    run = tmp_path / "run"
    train(preset, run, until=5, progress=False, **shards)
    real_save = checkpoint_mod.torch.save

    def dying_save(obj, path, *a, **k):
        real_save(obj, path, *a, **k)
        raise KeyboardInterrupt("killed mid-save")

    monkeypatch.setattr(checkpoint_mod.torch, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        train(preset, run, resume=True, progress=False, **shards)
    monkeypatch.undo()
    assert latest_checkpoint(run).step == 5
    assert [c.step for c in list_checkpoints(run)] == [5]
    assert not [p for p in (run / "checkpoints").iterdir() if p.name.startswith(".")]
    resumed = train(preset, run, resume=True, progress=False, **shards)
    assert resumed.steps == preset.train.steps


def test_rolling_checkpoints_keep_last_and_kept_steps(tmp_path, shards):
    preset = override(SMOKE, ["train.checkpoint_every=2", "train.val_every=0", "train.keep_last=2",
                              "train.keep_checkpoints=4"])
    train(preset, tmp_path / "run", until=18, progress=False, **shards)
    ckpts = list_checkpoints(tmp_path / "run")
    assert [c.step for c in ckpts] == [4, 16, 18]  # while training: kept step 4 and the newest two
    assert [(c.path / "optimizer.pt").exists() for c in ckpts] == [False, True, True]
    train(preset, tmp_path / "run", resume=True, progress=False, **shards)
    ckpts = list_checkpoints(tmp_path / "run")
    assert [c.step for c in ckpts] == [4, 20]  # complete: the rolling ones are gone
    # step 4 is kept for evaluation only, the finished run's final step too: weights without optimizer moments
    assert [(c.path / "optimizer.pt").exists() for c in ckpts] == [False, False]
    assert ckpts[0].load_model().config == preset.model
    model = ckpts[0].load_model()
    with pytest.raises(CheckpointError, match="no optimizer state"):
        restore_training_state(ckpts[0], model, torch.optim.AdamW(model.parameters()))


def test_batch_not_divisible_is_refused(tmp_path, shards):
    preset = override(SMOKE, ["train.batch_size=6", "train.micro_batch_size=4"])
    with pytest.raises(ValueError, match="batch_size=6"):
        train(preset, tmp_path / "run", progress=False, **shards)
