"""The GPU code's paths on CPU: torch.compile (inductor) and bf16 autocast in training, scoring and features; the
paper-scale shapes stepped once; the CPU thread rule."""
import contextlib
import gc
import json
import os
import shutil

import pytest
import torch
import torch.nn.functional as F

from genprune_nb.config import get_preset, override
from genprune_nb.launch import DistContext, cpu_threads
from genprune_nb.model.features import layer_states
from genprune_nb.model.gpt import GPT
from genprune_nb.model.lm import autocast_context, next_token_logprobs, target_predictions
from genprune_nb.storage import hashing
from genprune_nb.training import provenance
from genprune_nb.training.checkpoint import latest_checkpoint
from genprune_nb.training.loop import train, train_step
from genprune_nb.training.optim import WeightMask, build_optimizer, set_lr

SMOKE = get_preset("smoke")
CPU = torch.device("cpu")
# three masked steps of two micro-batches each, validation after the last
SHORT = ["train.steps=3", "train.warmup_steps=1", "train.decay_steps=1", "train.val_every=0", "train.log_every=1",
         "train.checkpoint_every=0"]
# Compiled kernels reorder fp32 sums: after three Adam steps the losses agree to ~1e-7 (relative), the weights to ~1e-6
COMPILE_RTOL, COMPILE_WEIGHT_ATOL = 1e-5, 1e-4
# bf16 keeps 8 bits of mantissa: losses of ~10.8 nats within 0.01 nats (seen: 3e-5), log-probs and features within 2%
BF16_LOSS_ATOL, BF16_RTOL = 0.01, 0.02

_CXX = os.environ.get("CXX") or shutil.which("g++") or shutil.which("clang++")
needs_cxx = pytest.mark.skipif(not _CXX, reason="inductor compiles C++ on CPU and finds no compiler (g++, clang++)")


def random_masks(model: GPT, density: float = 0.26, seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {n: torch.rand(p.shape, generator=gen) < density for n, p in model.named_parameters() if p.dim() == 2}


def run(preset, run_dir, masks, *overrides):
    """Train ``preset`` three short steps under ``overrides``: (train losses, final val loss, weights, fingerprint)."""
    result = train(override(preset, SHORT + list(overrides)), run_dir, masks=masks, progress=False)
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    losses = [r["train_loss"] for r in rows if "train_loss" in r]
    weights = latest_checkpoint(run_dir).weights()  # dense: a masked run stores its survivors only
    return losses, result.final_val_loss, weights, provenance.read(run_dir)


@pytest.fixture(scope="module")
def masks():
    return random_masks(GPT(SMOKE.model))


@pytest.fixture(scope="module")
def eager(smoke_preset, masks, tmp_path_factory):
    return run(smoke_preset, tmp_path_factory.mktemp("eager") / "run", masks)


def assert_pruned_zero(weights, masks):
    for name, mask in masks.items():
        assert torch.count_nonzero(weights[name][~mask]) == 0, name  # exactly 0.0


@needs_cxx
def test_compiled_training_on_cpu_matches_eager(smoke_preset, masks, eager, tmp_path):
    losses, val, weights, fingerprint = run(smoke_preset, tmp_path / "run", masks, "train.compile=true")
    eager_losses, eager_val, eager_weights, eager_fingerprint = eager
    assert len(losses) == 3 and losses == pytest.approx(eager_losses, rel=COMPILE_RTOL)
    assert val == pytest.approx(eager_val, rel=COMPILE_RTOL)  # validation through the compiled model (eval mode)
    assert sorted(weights) == sorted(eager_weights)  # no "_orig_mod." prefixes in the checkpoint
    for name, w in weights.items():
        torch.testing.assert_close(w, eager_weights[name], rtol=0, atol=COMPILE_WEIGHT_ATOL)
    assert_pruned_zero(weights, masks)
    assert fingerprint == eager_fingerprint  # compile changes kernels, not the recipe


def test_bf16_autocast_training_on_cpu(smoke_preset, masks, eager, tmp_path):
    losses, val, weights, fingerprint = run(smoke_preset, tmp_path / "run", masks, "train.autocast_cpu=true")
    eager_losses, eager_val, eager_weights, eager_fingerprint = eager
    assert all(map(torch.isfinite, torch.tensor(losses + [val])))
    assert losses == pytest.approx(eager_losses, abs=BF16_LOSS_ATOL)
    assert val == pytest.approx(eager_val, abs=BF16_LOSS_ATOL)
    assert losses != eager_losses  # bf16 did run
    assert all(w.dtype == torch.float32 for w in weights.values())  # fp32 master weights
    assert_pruned_zero(weights, masks)
    assert fingerprint["train"]["autocast_cpu"] is True and "autocast_cpu" not in eager_fingerprint["train"]


def test_fingerprints_without_cpu_autocast_are_unchanged():
    """Digests of the recorded train fields from before ``autocast_cpu`` existed; it is recorded only when set."""
    for name, train_digest, inner_digest in (("smoke", "eeeb86b33492ff9c", "852182b8f5a736a0"),
                                             ("gpt2-124m", "58065434a2b59bcc", "c4631d56d218973e")):
        preset = get_preset(name)
        assert hashing.digest(provenance.train_fields(preset.train)) == train_digest
        assert hashing.digest(provenance.train_fields(preset.inner_train)) == inner_digest
    on = provenance.train_fields(override(SMOKE, ["train.autocast_cpu=true"]).train)
    assert on.pop("autocast_cpu") is True and on == provenance.train_fields(SMOKE.train)


@pytest.fixture(scope="module")
def model_and_ids():
    model = GPT(SMOKE.model, seed=0).eval()
    ids = torch.randint(0, 50257, (3, 24), generator=torch.Generator().manual_seed(1))
    return model, ids


def test_scoring_without_cpu_autocast_is_the_plain_fp32_forward(model_and_ids, monkeypatch):
    model, ids = model_and_ids
    assert isinstance(autocast_context(CPU, "bfloat16"), contextlib.nullcontext)
    with torch.no_grad():
        logits = model(ids)[0][:, :-1]  # the plain fp32 forward: position t predicts token t + 1
    targets = ids[:, 1:]
    by_hand = -F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1), reduction="none")
    default = next_token_logprobs(model, ids)
    torch.testing.assert_close(default, by_hand.view(targets.shape), rtol=1e-6, atol=1e-6)
    autocast_seen = []  # whether CPU autocast was on when the head ran
    head = model.head
    monkeypatch.setattr(model, "head", lambda h: autocast_seen.append(torch.is_autocast_enabled("cpu")) or head(h))
    assert torch.equal(next_token_logprobs(model, ids, autocast_cpu=False), default)
    lp, hits = target_predictions(model, ids[:, :-1], targets, autocast_cpu=False)
    torch.testing.assert_close(lp, default, rtol=1e-6, atol=1e-6)  # a shorter input: the matmuls sum in other orders
    assert torch.equal(hits, logits.argmax(-1) == targets)
    next_token_logprobs(model, ids, autocast_cpu=True)
    assert autocast_seen == [False, False, True]


def test_scoring_and_features_under_cpu_autocast_are_fp32_and_close(model_and_ids):
    model, ids = model_and_ids
    fp32, bf16 = next_token_logprobs(model, ids), next_token_logprobs(model, ids, autocast_cpu=True)
    assert bf16.dtype == torch.float32 and not torch.equal(bf16, fp32)
    torch.testing.assert_close(bf16, fp32, rtol=BF16_RTOL, atol=0.0)
    layers = [0, 1, 2]
    f32 = layer_states(model, ids, layers, pooling="mean")
    f16 = layer_states(model, ids, layers, pooling="mean", autocast_cpu=True)
    assert f16.dtype == f32.dtype == "float32" and not (f16 == f32).all()
    # relative to each layer's scale (single units near 0 have no relative precision in bf16)
    scale = abs(f32).max(axis=(0, 2), keepdims=True)
    assert (abs(f16 - f32) / scale).max() < BF16_RTOL
    with autocast_context(CPU, "bfloat16", cpu=True):
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
    assert isinstance(autocast_context(CPU, "float32", cpu=True), contextlib.nullcontext)


@pytest.mark.slow  # one paper-scale model at a time: gpt2-417m's fp32 weights, gradients, AdamW moments and mask ~8 GB
@pytest.mark.parametrize("name", ["gpt2-124m", "gpt2-417m"])
def test_paper_shapes_take_one_masked_step_on_cpu(name):
    preset = get_preset(name)
    cfg = override(preset, ["train.batch_size=1", "train.micro_batch_size=1", "train.seq_len=16"]).train
    model = GPT(preset.model, seed=0)
    weight_mask = WeightMask(model, random_masks(model))
    weight_mask.apply_to_weights()
    optimizer = build_optimizer(model, cfg, CPU)
    set_lr(optimizer, cfg.lr)
    batch = torch.randint(0, 50257, (1, cfg.seq_len + 1), generator=torch.Generator().manual_seed(0))
    before = model.lm_head.weight[:4].clone()
    loss, grad_norm = train_step(model, optimizer, weight_mask, lambda: (batch[:, :-1], batch[:, 1:]), 1,
                                 DistContext(), cfg)
    assert torch.isfinite(loss) and torch.isfinite(grad_norm) and grad_norm > 0
    params = dict(model.named_parameters())
    for tensor, mask in weight_mask.state_dict().items():
        assert torch.count_nonzero(params[tensor].detach()[~mask]) == 0, tensor  # exactly 0.0
    kept = weight_mask.state_dict()["lm_head.weight"][:4]
    assert not torch.equal(params["lm_head.weight"].detach()[:4][kept], before[kept])  # the survivors stepped
    del model, weight_mask, optimizer, params
    gc.collect()


def test_cpu_threads_rule():
    assert cpu_threads({}, cores=8, default=16) == 8  # the cores this process may use, not the machine's
    assert cpu_threads({}, cores=16, default=8) == 8  # never more than torch's count (physical cores)
    assert cpu_threads({}, cores=8, default=8, local_world_size=2) == 4  # shared among the node's ranks
    assert cpu_threads({}, cores=2, default=2, local_world_size=4) == 1
    assert cpu_threads({"OMP_NUM_THREADS": "3"}, cores=8, default=8) == 3  # the user's choice wins
    assert cpu_threads({"OMP_NUM_THREADS": "12"}, cores=8, default=8, local_world_size=2) == 12
    assert cpu_threads({"OMP_NUM_THREADS": "4,2"}, cores=8, default=8) == 4  # nested: the outer level
    assert cpu_threads({"OMP_NUM_THREADS": ""}, cores=6, default=8) == 6
    assert cpu_threads({"OMP_NUM_THREADS": "0"}, cores=6, default=8) == 6
    assert cpu_threads({"OMP_NUM_THREADS": "many"}, cores=6, default=8) == 6
