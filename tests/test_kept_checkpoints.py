"""Evaluation-only kept checkpoints in ``train.kept_dtype`` and masks stored once per run (smoke preset)."""
import json
import shutil
import struct

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from genprune_nb.config import ConfigError, get_preset, override
from genprune_nb.data.loader import TokenLoader
from genprune_nb.evals.scorer import Request, score
from genprune_nb.launch import DistContext
from genprune_nb.model.gpt import GPT
from genprune_nb.model.lm import validation_loss
from genprune_nb.storage import hashing
from genprune_nb.storage.locking import LOCK_FILE
from genprune_nb.training import loop, provenance
from genprune_nb.training.checkpoint import (
    MASKS_FILE,
    OPTIMIZER_FILE,
    WEIGHTS_FILE,
    Checkpoint,
    CheckpointError,
    latest_checkpoint,
    list_checkpoints,
    load_masks,
    restore_training_state,
    save_run_masks,
)
from genprune_nb.training.loop import train

SMOKE = override(get_preset("smoke"), {"train.keep_checkpoints": (5, 10), "train.val_every": 0})
HALF = override(SMOKE, {"train.kept_dtype": "bfloat16"})
N = sum(p.numel() for p in GPT(SMOKE.model).parameters())  # 3,244,032 weights, all 2-D
VAL_LOSS_RTOL = 1e-2  # bf16 rounding of each weight (relative error <= 2^-9); measured: 8e-7 here
LOGPROB_ATOL_PER_TOKEN = 0.01  # nats per scored token (measured: 1.5e-4 on this 20-step model)


@pytest.fixture(scope="module")
def shards(phrase_shards):
    return phrase_shards("k", length=97, repeats=200, n_train=15000)


@pytest.fixture(scope="module")
def masks():
    gen = torch.Generator().manual_seed(3)
    return {n: torch.rand(p.shape, generator=gen) < 0.5 for n, p in GPT(SMOKE.model).named_parameters()}


@pytest.fixture(scope="module")
def results(tmp_path_factory, shards, masks):
    """The same masked run twice: kept steps 5 and 10 in float32, and in bfloat16 (their TrainResults)."""
    root = tmp_path_factory.mktemp("runs")
    return {dtype: train(preset, root / dtype, masks=masks, progress=False, **shards)
            for dtype, preset in (("float32", SMOKE), ("bfloat16", HALF))}


@pytest.fixture(scope="module")
def runs(results):
    return {dtype: result.run_dir for dtype, result in results.items()}


def files_written(run) -> dict[str, tuple[int, int, str]]:
    """Every file of a run folder but its lock (the writer's pid): (inode, mtime, sha256)."""
    return {str(p.relative_to(run)): (p.stat().st_ino, p.stat().st_mtime_ns, hashing.file_sha256(p))
            for p in sorted(run.rglob("*")) if p.is_file() and p.name != LOCK_FILE}


def data_bytes(file) -> int:
    """Bytes of a safetensors file's tensor data: the file less its 8-byte length and its JSON header."""
    with open(file, "rb") as f:
        (header,) = struct.unpack("<Q", f.read(8))
    return file.stat().st_size - 8 - header


def test_kept_dtype_is_validated():
    with pytest.raises(ConfigError, match="train.kept_dtype must be one of .*'float16'"):
        override(SMOKE, {"train.kept_dtype": "float16"})


def test_kept_dtype_changes_neither_the_fingerprint_nor_the_trained_weights(runs):
    assert provenance.train_fields(HALF.train) == provenance.train_fields(SMOKE.train)
    assert "kept_dtype" not in provenance.train_fields(HALF.train)  # fingerprints of existing runs stay the same
    assert provenance.read(runs["float32"]) == provenance.read(runs["bfloat16"])
    full, half = (latest_checkpoint(runs[d]) for d in ("float32", "bfloat16"))
    assert full.step == half.step == 20 and half.weights_dtype() == "float32"  # the final one stays resumable
    assert full.state()["weights_sha256"] == half.state()["weights_sha256"]


def test_a_finished_run_keeps_no_optimizer_moments(runs):
    for run in runs.values():
        final = latest_checkpoint(run)
        assert final.step == 20 and final.weights_dtype() == "float32"
        assert not any((c.path / OPTIMIZER_FILE).exists() for c in list_checkpoints(run))
        assert (final.path / "rng.pt").exists() and final.state()["loader"]


def test_resuming_a_finished_run_changes_nothing_and_returns_its_result(results, shards, tmp_path, monkeypatch):
    run = tmp_path / "run"
    shutil.copytree(results["bfloat16"].run_dir, run, copy_function=shutil.copy2)
    before = files_written(run)
    monkeypatch.setattr(loop, "restore_training_state", lambda *a, **k: pytest.fail("a finished run was loaded"))
    again = train(HALF, run, resume=True, progress=False, **shards)
    assert files_written(run) == before
    original = results["bfloat16"]
    assert (again.steps, again.final_val_loss) == (original.steps, original.final_val_loss)
    assert original.steps == 20 and original.final_val_loss is not None
    assert again.checkpoint.path == run / original.checkpoint.path.relative_to(original.run_dir)
    with pytest.raises(provenance.ProvenanceError, match="lr"):  # another recipe is refused as before
        train(override(HALF, {"train.lr": HALF.train.lr * 2}), run, resume=True, progress=False, **shards)
    assert files_written(run) == before


def test_a_final_checkpoint_written_with_moments_loses_them_on_resume(results, shards, tmp_path):
    """A run finished before finished runs dropped their moments: resuming it drops them, and changes nothing else."""
    run = tmp_path / "run"
    shutil.copytree(results["float32"].run_dir, run, copy_function=shutil.copy2)
    final = latest_checkpoint(run)
    torch.save({"state": {}, "param_groups": []}, final.path / OPTIMIZER_FILE)
    before = files_written(run)
    again = train(SMOKE, run, resume=True, progress=False, **shards)
    assert not (final.path / OPTIMIZER_FILE).exists()
    before.pop(f"checkpoints/{final.path.name}/{OPTIMIZER_FILE}")
    assert files_written(run) == before and again.final_val_loss == results["float32"].final_val_loss


def test_bf16_kept_checkpoints_take_half_the_bytes(runs, masks):
    survivors = sum(int(m.sum()) for m in masks.values())  # a masked run stores its survivors only
    for dtype, per_weight in (("float32", 4), ("bfloat16", 2)):
        ckpts = list_checkpoints(runs[dtype])
        assert [c.step for c in ckpts] == [5, 10, 20]
        kept, final = ckpts[:-1], ckpts[-1]
        assert [c.weights_dtype() for c in kept] == [dtype] * 2
        assert all(data_bytes(c.path / WEIGHTS_FILE) == per_weight * survivors for c in kept)
        assert data_bytes(final.path / WEIGHTS_FILE) == 4 * survivors
        # the recorded sha256 is that of the dense weights a load returns
        assert all(c.state()["weights_sha256"] == hashing.tensors_sha256(c.weights()) for c in ckpts)
        assert not any((c.path / "optimizer.pt").exists() for c in kept)
    full, half = (list_checkpoints(runs[d])[0].path / WEIGHTS_FILE for d in ("float32", "bfloat16"))
    assert half.stat().st_size / full.stat().st_size == pytest.approx(0.5, abs=1e-3)


def test_bf16_kept_checkpoint_loads_as_float32_and_evaluates_like_it(runs, shards):
    full, half = (Checkpoint(list_checkpoints(runs[d])[1].path) for d in ("float32", "bfloat16"))
    assert full.step == half.step == 10
    assert full.fingerprint() != half.fingerprint()  # results of the two are never mixed up
    a, b = full.load_model().eval(), half.load_model().eval()
    for (name, pa), pb in zip(a.named_parameters(), b.parameters()):
        assert pb.dtype == torch.float32, name
        assert torch.equal(pb, pa.to(torch.bfloat16).float()), name  # upcast of the rounded weights, exactly
    cfg = SMOKE.train
    losses = [validation_loss(m, TokenLoader(shards["val_files"], cfg.micro_batch_size, cfg.seq_len), 4,
                              DistContext(), "float32") for m in (a, b)]
    assert losses[1] == pytest.approx(losses[0], rel=VAL_LOSS_RTOL) and losses[0] != losses[1]
    rng = np.random.default_rng(1)
    groups = [[Request(tuple(rng.integers(0, 50257, 12).tolist()), tuple(rng.integers(0, 50257, 5).tolist()))
               for _ in range(4)] for _ in range(3)]  # 3 HellaSwag-like items of 4 endings each
    with torch.no_grad():
        scored = [score(m, groups) for m in (a, b)]
    for items_a, items_b in zip(*scored):
        for sa, sb in zip(items_a, items_b):
            assert sa.n_tokens == sb.n_tokens == 5
            assert abs(sa.logprob - sb.logprob) <= LOGPROB_ATOL_PER_TOKEN * sa.n_tokens


def test_resume_from_a_bf16_checkpoint_is_refused(runs, shards, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(runs["bfloat16"], run)
    kept = run / "checkpoints" / "step_000010"
    torch.save({"state": {}, "param_groups": []}, kept / OPTIMIZER_FILE)  # moments alone do not make it resumable
    (run / "checkpoints" / "latest").write_text("step_000010\n")
    with pytest.raises(CheckpointError, match=r"step_000010/model.safetensors holds bfloat16 weights .*resumes only "
                                              r"from float32.*nor does any other checkpoint of the run"):
        train(HALF, run, resume=True, progress=False, **shards)
    model = GPT(SMOKE.model)
    with pytest.raises(CheckpointError, match="holds bfloat16 weights"):
        restore_training_state(Checkpoint(kept), model, torch.optim.AdamW(model.parameters()))


def test_a_bf16_run_does_not_go_back_to_float32_silently(runs, shards, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(runs["bfloat16"], run)
    with pytest.raises(CheckpointError, match="step_000005 was kept in bfloat16.*train.kept_dtype=bfloat16"):
        train(SMOKE, run, resume=True, progress=False, **shards)
    train(HALF, run, resume=True, progress=False, **shards)  # under its own kept_dtype the finished run resumes


def test_masks_are_stored_once_per_run(runs, masks, tmp_path):
    run = runs["float32"]
    assert (run / MASKS_FILE).is_file()
    for ckpt in list_checkpoints(run):
        assert not (ckpt.path / MASKS_FILE).exists()
        loaded = ckpt.masks()
        assert loaded.keys() == masks.keys()
        assert all(loaded[n].dtype == torch.bool and torch.equal(loaded[n], masks[n]) for n in masks)
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    changed = {n: m.to(torch.uint8) for n, m in masks.items()}
    first = next(iter(changed))
    changed[first][0, 0] = 1 - changed[first][0, 0]
    save_file(changed, str(copy / MASKS_FILE))
    with pytest.raises(CheckpointError, match="holds other masks than step_000005"):
        list_checkpoints(copy)[0].masks()
    (copy / MASKS_FILE).unlink()
    with pytest.raises(CheckpointError, match=f"{MASKS_FILE} is missing"):
        list_checkpoints(copy)[0].masks()


def test_masks_are_stored_one_bit_per_weight(runs, masks):
    file = runs["float32"] / MASKS_FILE
    assert data_bytes(file) == sum(-(-m.numel() // 8) for m in masks.values())  # 1/8 of the uint8 format's bytes
    with safe_open(str(file), "pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.uint8}


def test_bit_packed_masks_round_trip_exactly_at_any_shape(tmp_path):
    gen = torch.Generator().manual_seed(0)
    shapes = {"a": (3, 5), "b": (7,), "c": (2, 3, 5), "d": (8, 8), "e": (1, 9), "f": (0, 4)}
    masks = {k: torch.rand(s, generator=gen) < 0.5 for k, s in shapes.items()}
    masks["g"] = torch.zeros(9, dtype=torch.bool)
    masks["g"][[1, 8]] = True  # element i is bit i % 8 (least significant first) of byte i // 8
    sha = save_run_masks(tmp_path, masks)
    loaded = load_masks(tmp_path / MASKS_FILE)
    assert loaded.keys() == masks.keys()
    assert all(loaded[k].dtype == torch.bool and torch.equal(loaded[k], masks[k]) for k in masks)
    assert hashing.tensors_sha256(loaded) == sha
    with safe_open(str(tmp_path / MASKS_FILE), "pt") as f:
        assert f.get_tensor("g").tolist() == [0b10, 0b1]
        assert f.get_tensor("a").numel() == 2 and f.get_tensor("f").numel() == 0


def test_a_run_masks_file_of_one_byte_per_weight_still_loads(runs, masks, tmp_path):
    """The format before masks were bit-packed: uint8 0 / 1 per weight, the sha256 in the metadata."""
    run = tmp_path / "run"
    shutil.copytree(runs["float32"], run)
    sha = latest_checkpoint(run).state()["masks_sha256"]
    save_file({n: m.to(torch.uint8) for n, m in masks.items()}, str(run / MASKS_FILE), metadata={"sha256": sha})
    for ckpt in list_checkpoints(run):
        loaded = ckpt.masks()
        assert all(loaded[n].dtype == torch.bool and torch.equal(loaded[n], masks[n]) for n in masks)
    assert save_run_masks(run, masks) == sha  # the same masks: the file stays as it is
    assert data_bytes(run / MASKS_FILE) == sum(m.numel() for m in masks.values())


def test_a_checkpoint_with_its_own_masks_still_loads_and_resumes(runs, masks, shards, tmp_path):
    """The format before masks were stored once: ``masks.safetensors`` (uint8) in every step directory, and dense
    weights (before a masked run stored its survivors only)."""
    run = tmp_path / "old"
    train(SMOKE, run, masks=masks, until=7, progress=False, **shards)
    for ckpt in list_checkpoints(run):
        save_file(ckpt.weights(), str(ckpt.path / WEIGHTS_FILE), metadata={"dtype": "float32"})
    (run / MASKS_FILE).unlink()
    for ckpt in list_checkpoints(run):
        save_file({n: m.to(torch.uint8) for n, m in masks.items()}, str(ckpt.path / MASKS_FILE))
        state = ckpt.state()
        del state["masks_sha256"], state["weights_dtype"]
        (ckpt.path / "state.json").write_text(json.dumps(state))
    ckpt = latest_checkpoint(run)
    assert ckpt.weights_dtype() == "float32" and all(torch.equal(ckpt.masks()[n], masks[n]) for n in masks)
    resumed = train(SMOKE, run, resume=True, progress=False, **shards)  # the masks come from the old checkpoint
    straight = latest_checkpoint(runs["float32"]).weights()
    final = latest_checkpoint(resumed.run_dir).weights()
    assert all(torch.equal(final[n], straight[n]) for n in straight)
    assert all(torch.count_nonzero(final[n][~masks[n]]) == 0 for n in masks)
    assert latest_checkpoint(run).state()["weights_sha256"] == \
        latest_checkpoint(runs["float32"]).state()["weights_sha256"]  # bit for bit: the same weights, the same sha
