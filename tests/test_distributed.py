"""Two CPU processes under torchrun (gloo) train to the same weights as one process with the same global batch."""
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from genprune_nb.checkpoint import latest_checkpoint
from genprune_nb.config import get_preset, override
from genprune_nb.data.shards import write_shard
from genprune_nb.train import train


@pytest.mark.slow
def test_two_gloo_ranks_match_one_process(tmp_path):
    rng = np.random.default_rng(0)
    write_shard(tmp_path / "t_train_000000.bin", rng.integers(0, 50257, size=20_000))
    write_shard(tmp_path / "t_val_000000.bin", rng.integers(0, 50257, size=3_000))
    overrides = [f"data.tokens_dir={tmp_path}", "data.shard_prefix=t", "train.steps=8", "train.warmup_steps=2",
                 "train.decay_steps=4", "train.val_every=4", "train.checkpoint_every=0", "train.log_every=1"]
    # global batch 8: one process runs 2 micro-steps of 4; two ranks run 1 micro-step of 4 each
    single = train(override(get_preset("smoke"), overrides), tmp_path / "single", progress=False)

    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "genprune_nb.cli", "train", "--preset", "smoke", "--device", "cpu", "--no-progress",
           "--run-dir", str(tmp_path / "ddp")]
    for o in overrides:
        cmd += ["--set", o]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]

    ckpt = latest_checkpoint(tmp_path / "ddp")
    assert ckpt.step == 8 and ckpt.state()["world_size"] == 2
    a = load_file(latest_checkpoint(single.run_dir).path / "model.safetensors")
    b = load_file(ckpt.path / "model.safetensors")
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=1e-4, atol=1e-5, msg=name)
    # rank 0 alone writes: one metrics file with one record per step
    records = (tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()
    assert sum('"train_loss"' in r for r in records) == 8
    assert ckpt.state()["val_loss"] == pytest.approx(single.final_val_loss, rel=1e-4)
