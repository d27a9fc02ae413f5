"""A masked run's checkpoints store the masked tensors' survivors only (``checkpoint.pack_weights``)."""
import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from genprune_nb.config import get_preset
from genprune_nb.model.gpt import GPT
from genprune_nb.storage import hashing
from genprune_nb.training.checkpoint import (
    WEIGHTS_FILE,
    CheckpointError,
    model_state,
    save_checkpoint,
    to_evaluation,
)

SMOKE = get_preset("smoke")
DENSITY = 0.3
SLACK = 4096  # bytes: the safetensors header


def raw(file):
    """The tensors and metadata of a safetensors file as stored."""
    with safe_open(str(file), "pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, f.metadata()


@pytest.fixture()
def masked(tmp_path):
    """A model whose pruned weights are zero (negative ones -0.0, as ``WeightMask`` leaves them), its masks (every
    weight but ``lm_head``) and its checkpoint."""
    model = GPT(SMOKE.model, seed=1)
    gen = torch.Generator().manual_seed(2)
    masks = {n: torch.rand(p.shape, generator=gen) < DENSITY for n, p in model.named_parameters()
             if n != "lm_head.weight"}
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n in masks:
                p.mul_(masks[n])
    ckpt = save_checkpoint(tmp_path / "run", 5, model=model, preset=SMOKE, masks=masks, state={"tokens": 5})
    return model, masks, ckpt


def test_a_masked_checkpoint_stores_the_survivors_and_loads_the_trained_weights(masked):
    model, masks, ckpt = masked
    trained = model_state(model)
    stored, metadata = raw(ckpt.path / WEIGHTS_FILE)
    assert metadata == {"dtype": "float32", "weights": "survivors"} and stored.keys() == trained.keys()
    for name, values in stored.items():
        if name in masks:  # the values where the mask is True, row-major
            assert values.shape == (int(masks[name].sum()),) and torch.equal(values, trained[name][masks[name]])
        else:
            assert torch.equal(values, trained[name])  # unmasked: whole
    assert any(torch.signbit(trained[n][~masks[n]]).any() for n in masks)  # -0.0 where a negative weight was
    loaded = ckpt.weights()
    reloaded = dict(ckpt.load_model().named_parameters())
    for name, weights in trained.items():
        assert torch.equal(loaded[name], weights) and torch.equal(reloaded[name].detach(), weights), name
        if name in masks:  # pruned weights exactly +0.0
            assert loaded[name][~masks[name]].view(torch.int32).eq(0).all(), name
    assert ckpt.state()["weights_sha256"] == hashing.tensors_sha256(loaded)  # the sha256 of what a load returns


def test_a_kept_bf16_checkpoint_stays_survivors_and_loads_the_rounded_weights(masked):
    model, masks, ckpt = masked
    trained = model_state(model)
    full_bytes = (ckpt.path / WEIGHTS_FILE).stat().st_size
    to_evaluation(ckpt, "bfloat16")
    stored, metadata = raw(ckpt.path / WEIGHTS_FILE)
    assert metadata == {"dtype": "bfloat16", "weights": "survivors"}
    assert all(stored[n].dtype == torch.bfloat16 and stored[n].numel() == int(masks[n].sum()) for n in masks)
    assert (ckpt.path / WEIGHTS_FILE).stat().st_size < full_bytes / 2 + SLACK
    loaded = ckpt.weights()
    assert all(torch.equal(loaded[n], trained[n].to(torch.bfloat16)) for n in trained)
    assert ckpt.state()["weights_sha256"] == hashing.tensors_sha256(loaded)
    reloaded = dict(ckpt.load_model().named_parameters())
    assert all(torch.equal(reloaded[n].detach(), trained[n].to(torch.bfloat16).float()) for n in trained)


def test_a_masked_checkpoint_is_smaller_by_about_its_density(masked, tmp_path):
    model, masks, ckpt = masked
    dense = save_checkpoint(tmp_path / "dense", 5, model=model, preset=SMOKE)
    masked_share = sum(m.numel() for m in masks.values()) / sum(p.numel() for p in model.parameters())
    survivors = sum(int(m.sum()) for m in masks.values()) / sum(m.numel() for m in masks.values())
    dense_bytes = (dense.path / WEIGHTS_FILE).stat().st_size
    expected = dense_bytes * (1 - masked_share + masked_share * survivors)
    assert (ckpt.path / WEIGHTS_FILE).stat().st_size < expected + SLACK
    assert survivors < DENSITY + 0.01


def test_an_unmasked_checkpoint_is_dense_as_before(masked, tmp_path):
    model = masked[0]
    ckpt = save_checkpoint(tmp_path / "dense", 5, model=model, preset=SMOKE)
    stored, metadata = raw(ckpt.path / WEIGHTS_FILE)
    assert metadata == {"dtype": "float32"}
    trained = model_state(model)
    assert all(torch.equal(stored[n], trained[n]) and stored[n].shape == trained[n].shape for n in trained)
    # bit for bit, the sha256 as before (the pruned -0.0 of this model are kept)
    assert ckpt.state()["weights_sha256"] == hashing.tensors_sha256(trained) == hashing.tensors_sha256(ckpt.weights())


def test_a_dense_masked_run_checkpoint_written_before_still_loads(masked):
    model, masks, ckpt = masked
    trained = model_state(model)
    save_file(trained, str(ckpt.path / WEIGHTS_FILE), metadata={"dtype": "float32"})  # the format before
    loaded = ckpt.weights()
    assert all(torch.equal(loaded[n], trained[n]) for n in trained)
    assert all(torch.equal(p.detach(), trained[n]) for n, p in ckpt.load_model().named_parameters())


def test_survivors_that_do_not_fit_the_masks_are_refused(masked):
    _, masks, ckpt = masked
    stored, metadata = raw(ckpt.path / WEIGHTS_FILE)
    name = next(iter(masks))
    stored[name] = stored[name][:-1]
    save_file(stored, str(ckpt.path / WEIGHTS_FILE), metadata=metadata)
    with pytest.raises(CheckpointError, match=f"{name} holds .* not the .* survivors"):
        ckpt.load_model()
    state = ckpt.state()
    del state["masks_sha256"]  # a survivors file, but no masks for the run
    (ckpt.path / "state.json").write_text(json.dumps(state))
    with pytest.raises(CheckpointError, match="run has no masks"):
        ckpt.weights()
