"""The chunked loss (model.chunked_loss, train.loss_chunk) equals the plain head + cross-entropy: loss, gradients,
masked training steps; its config field is validated and left out of run fingerprints."""
import dataclasses

import pytest
import torch
import torch.nn.functional as F

from genprune_nb.config import ConfigError, TrainConfig, get_preset, override
from genprune_nb.launch import DistContext
from genprune_nb.model.chunked_loss import linear_cross_entropy
from genprune_nb.model.gpt import GPT
from genprune_nb.training import provenance
from genprune_nb.training.distill import Teacher
from genprune_nb.training.loop import train_step
from genprune_nb.training.optim import WeightMask, build_optimizer

SMOKE = get_preset("smoke")


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest difference relative to the largest entry of ``b``."""
    return float((a - b).abs().max() / b.abs().max())


def plain_and_chunked(h, w, targets, rows, scale=0.3):
    """(loss, dh, dw) of the plain path and of the chunked one, both backpropagated from ``scale * loss``."""
    results = []
    for chunked in (False, True):
        hh, ww = h.clone().requires_grad_(), w.clone().requires_grad_()
        loss = linear_cross_entropy(hh, ww, targets, rows) if chunked else \
            F.cross_entropy(F.linear(hh, ww).float(), targets, ignore_index=-1)
        (scale * loss).backward()
        results.append((loss.detach(), hh.grad, ww.grad))
    return results


@pytest.mark.parametrize("rows", [1, 7, 50, 64])  # N = 50: chunks that do not divide it, one chunk, one larger
def test_loss_and_gradients_equal_the_plain_path(rows):
    gen = torch.Generator().manual_seed(0)
    h, w = torch.randn(50, 16, generator=gen), torch.randn(97, 16, generator=gen)
    targets = torch.randint(0, 97, (50,), generator=gen)
    targets[::4] = -1  # ignored: the mean is over the other 37
    (loss, dh, dw), (loss_c, dh_c, dw_c) = plain_and_chunked(h, w, targets, rows)
    assert loss_c.dtype == torch.float32 and loss_c.item() == pytest.approx(loss.item(), rel=1e-6)
    assert rel(dh_c, dh) < 1e-5 and rel(dw_c, dw) < 1e-5
    assert torch.count_nonzero(dh_c[::4]) == 0  # an ignored position gets no gradient
    with torch.no_grad():  # the loss alone, no gradients computed
        assert linear_cross_entropy(h, w, targets, rows).item() == pytest.approx(loss.item(), rel=1e-6)


def test_under_bf16_autocast_the_matmuls_run_in_bf16_as_the_plain_paths():
    """The logits are bf16 products taken to fp32 (the plain ``lm_head(x).float()``), not fp32 products: the losses
    agree to fp32 rounding while the fp32 loss differs; with one chunk the gradients are the plain path's too."""
    gen = torch.Generator().manual_seed(1)
    h, w = torch.randn(64, 32, generator=gen), torch.randn(300, 32, generator=gen)
    targets = torch.randint(0, 300, (64,), generator=gen)
    fp32 = plain_and_chunked(h, w, targets, 64)[0][0]
    for rows in (64, 24):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            (loss, dh, dw), (loss_c, dh_c, dw_c) = plain_and_chunked(h, w, targets, rows, scale=0.25)
        assert loss_c.item() == pytest.approx(loss.item(), rel=1e-5)
        assert abs(loss.item() - fp32.item()) > 1e-4 * fp32.item()  # bf16 logits are visibly not fp32 ones
        assert dh_c.dtype == dw_c.dtype == torch.float32
        # one chunk: the same bf16 products; several: the weight's gradient summed in fp32 over bf16 chunk products
        assert rel(dh_c, dh) < (1e-4 if rows == 64 else 1e-2) and rel(dw_c, dw) < (1e-4 if rows == 64 else 1e-2)


@pytest.mark.parametrize("tied", [False, True])
def test_the_model_loss_and_every_gradient_equal_the_plain_path(tied):
    cfg = dataclasses.replace(SMOKE.model, tie_embeddings=tied)
    gen = torch.Generator().manual_seed(2)
    x = torch.randint(0, 1000, (3, 40), generator=gen)
    y = torch.randint(0, 1000, (3, 40), generator=gen)
    y[:, -5:] = -1
    grads, losses = [], []
    for chunk in (0, 25):  # 120 positions in chunks of 25
        model = GPT(cfg, seed=0)
        logits, loss = model(x, y, loss_chunk=chunk)
        assert (logits is None) == (chunk > 0)  # the chunked path never makes the logits
        loss.backward()
        losses.append(loss.item())
        grads.append({n: p.grad for n, p in model.named_parameters()})
    assert losses[1] == pytest.approx(losses[0], rel=1e-5)
    assert grads[0].keys() == grads[1].keys() and ("lm_head.weight" in grads[0]) != tied
    for name, g in grads[0].items():
        assert rel(grads[1][name], g) < 1e-5, name
    logits, loss = GPT(cfg, seed=0)(x, loss_chunk=25)  # no targets: the logits, as ever
    assert logits.shape == (3, 40, cfg.vocab_size) and loss is None


def masked_training(cfg: TrainConfig, tied: bool, steps: int, teacher: Teacher | None = None):
    """The weights after ``steps`` masked ``train_step``s on fixed batches, and the masks (wte and lm_head pruned)."""
    model_cfg = dataclasses.replace(SMOKE.model, tie_embeddings=tied)
    model = GPT(model_cfg, seed=0)
    gen = torch.Generator().manual_seed(3)
    masks = {n: torch.rand(p.shape, generator=gen) < 0.3 for n, p in model.named_parameters() if p.dim() == 2}
    mask = WeightMask(model, masks)
    mask.apply_to_weights()
    optimizer = build_optimizer(model, cfg, torch.device("cpu"))
    batches = [torch.randint(0, 1000, (cfg.micro_batch_size, cfg.seq_len + 1), generator=gen) for _ in range(4)]
    accum = cfg.grad_accum_steps(1)
    for step in range(steps):
        micro = iter(batches[(step * accum + i) % len(batches)] for i in range(accum))
        train_step(model, optimizer, mask, lambda: (lambda b: (b[:, :-1], b[:, 1:]))(next(micro)), accum,
                   DistContext(), cfg, teacher=teacher)
    return {n: p.detach().clone() for n, p in model.named_parameters()}, masks


@pytest.mark.parametrize("tied", [False, True])
def test_masked_steps_keep_pruned_head_weights_zero_and_match_the_plain_path(tied):
    # 2 micro-steps of 128 rows. Adam's step lr g / (|g| + eps) turns a rounding difference of a gradient near 0 into
    # one of up to lr / eps times it (3e5 at eps 1e-8); eps 1e-6 keeps that below the tolerance.
    cfg = override(SMOKE, {"train.micro_batch_size": 2, "train.batch_size": 4, "train.adam_eps": 1e-6}).train
    plain, masks = masked_training(dataclasses.replace(cfg, loss_chunk=0), tied, steps=6)
    chunked, _ = masked_training(dataclasses.replace(cfg, loss_chunk=48), tied, steps=6)
    head = "transformer.wte.weight" if tied else "lm_head.weight"
    for name in (head, "transformer.wte.weight"):
        assert torch.count_nonzero(chunked[name][~masks[name]]) == 0, name  # exactly 0.0
    init = GPT(dataclasses.replace(SMOKE.model, tie_embeddings=tied), seed=0).state_dict()[head]
    assert not torch.equal(chunked[head][masks[head]], init[masks[head]])  # the head trained
    for name, w in plain.items():
        torch.testing.assert_close(chunked[name], w, rtol=0, atol=2e-6, msg=name)  # weights ~0.02


def test_a_teacher_reads_the_students_logits_with_the_option_on():
    """Distillation needs the student's logits: its steps take the plain path whatever ``loss_chunk`` says."""
    cfg = override(SMOKE, {"train.micro_batch_size": 4, "train.batch_size": 4}).train
    teacher = Teacher(GPT(SMOKE.model, seed=5), 0.5, 2.0, "digest")
    plain, _ = masked_training(dataclasses.replace(cfg, loss_chunk=0), False, steps=2, teacher=teacher)
    chunked, _ = masked_training(dataclasses.replace(cfg, loss_chunk=64), False, steps=2, teacher=teacher)
    assert all(torch.equal(chunked[n], w) for n, w in plain.items())


def test_loss_chunk_is_validated_and_not_in_the_fingerprint():
    assert override(SMOKE, ["train.loss_chunk=256"]).train.loss_chunk == 256
    for bad in (-1, 2.5, "64"):
        with pytest.raises(ConfigError, match="train.loss_chunk must be a non-negative integer"):
            TrainConfig(loss_chunk=bad)
    cfg = SMOKE.train
    assert "loss_chunk" not in provenance.train_fields(cfg)
    assert provenance.train_fields(dataclasses.replace(cfg, loss_chunk=7)) == provenance.train_fields(
        dataclasses.replace(cfg, loss_chunk=0))
