"""Two CPU processes under torchrun (gloo) train like one process with the same global batch.

Correct by construction on any CPU: both sides run as subprocesses of the same command with the same thread count
(OMP_NUM_THREADS=1), so every forward and backward runs the same kernels on tensors of the same shape (a rank's
micro-batch of 4 is the single process's micro-batch of 4). What differs is exact in floating point: the single
process accumulates g1/2 + g2/2 (backward of loss/2), DDP averages (g1 + g2)/2 over two ranks, and scaling by a
power of two commutes with rounding. The tolerances below allow for rounding noise anyway, derived from AdamW.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from genprune_nb.config import get_preset, override
from genprune_nb.data.shards import write_shard
from genprune_nb.training.checkpoint import latest_checkpoint
from genprune_nb.training.schedule import lr_at

# relative gradient noise tolerated from a different summation order (fp32 sums of this size stay far below it)
GRAD_NOISE = 1e-5
FP32_ULP = 2.0 ** -23


def _genprune(args: list[str], *, ranks: int, env: dict[str, str]) -> None:
    launcher = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={ranks}"] if ranks > 1 else []
    proc = subprocess.run([sys.executable, *launcher, "-m", "genprune_nb.cli", *args], capture_output=True,
                          text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]


def _train_losses(run_dir) -> list[tuple[int, float]]:
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["train_loss"]) for r in records if "train_loss" in r]


@pytest.mark.slow
def test_two_gloo_ranks_match_one_process(tmp_path):
    rng = np.random.default_rng(0)
    write_shard(tmp_path / "t_train_000000.bin", rng.integers(0, 50257, size=20_000))
    write_shard(tmp_path / "t_val_000000.bin", rng.integers(0, 50257, size=3_000))
    overrides = [f"data.tokens_dir={tmp_path}", "data.shard_prefix=t", "train.steps=8", "train.warmup_steps=2",
                 "train.decay_steps=4", "train.val_every=4", "train.checkpoint_every=0", "train.log_every=1",
                 "train.keep_checkpoints=1"]  # keep step 1: the weights after one AdamW step are compared
    args = ["train", "--preset", "smoke", "--device", "cpu", "--no-progress"]
    for o in overrides:
        args += ["--set", o]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    # global batch 8: one process runs 2 micro-steps of 4; two ranks run 1 micro-step of 4 each
    _genprune(args + ["--run-dir", str(tmp_path / "single")], ranks=1, env=env)
    _genprune(args + ["--run-dir", str(tmp_path / "ddp")], ranks=2, env=env)

    ckpt = latest_checkpoint(tmp_path / "ddp")
    assert ckpt.step == 8 and ckpt.state()["world_size"] == 2
    single = latest_checkpoint(tmp_path / "single")
    assert single.state()["world_size"] == 1

    # rank 0 alone writes: one record per step; every step's training loss agrees to a few fp32 ulps
    losses, reference = _train_losses(tmp_path / "ddp"), _train_losses(tmp_path / "single")
    assert [s for s, _ in losses] == list(range(1, 9)) == [s for s, _ in reference]
    assert [v for _, v in losses] == pytest.approx([v for _, v in reference], rel=1e-6)
    # the val loss: a mean of means over the same 8 batches, in another order
    assert ckpt.state()["val_loss"] == pytest.approx(single.state()["val_loss"], rel=1e-6)

    # Weights after the first step, before AdamW can amplify noise: with m = (1-b1) g and v = (1-b2) g^2 the
    # bias-corrected update is lr0 * g / (|g| + eps), whose derivative in g is at most 1 / (4 eps); a gradient
    # differing by GRAD_NOISE |g| moves the update by at most lr0 * GRAD_NOISE / 4 (largest where |g| = eps), plus
    # the rounding of the weight itself. Later steps are covered by the losses above: AdamW turns noise in rarely
    # updated entries into sign flips of lr-sized updates, so comparing late weights entrywise would test noise.
    lr0 = lr_at(0, override(get_preset("smoke"), overrides).train)
    a = load_file(tmp_path / "single" / "checkpoints" / "step_000001" / "model.safetensors")
    b = load_file(tmp_path / "ddp" / "checkpoints" / "step_000001" / "model.safetensors")
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=4 * FP32_ULP, atol=lr0 * GRAD_NOISE / 4, msg=name)
