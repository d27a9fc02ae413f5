import math

import pytest
import torch

from genprune_nb.config import ConfigError, ModelConfig, get_preset
from genprune_nb.model.gpt import GPT, Rotary, flops_per_token, init_std, rms_norm
from genprune_nb.training.checkpoint import StateDictError, load_model_state

SMOKE = get_preset("smoke").model


def authors_layout(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Parameter names and shapes of the authors' checkpoints (DESIGN.md §2), written out by hand."""
    C, V = cfg.n_embd, cfg.vocab_size
    layout = {"transformer.wte.weight": (V, C), "lm_head.weight": (V, C)}
    for i in range(cfg.n_layer):
        layout[f"transformer.h.{i}.attn.c_attn.weight"] = (3 * C, C)
        layout[f"transformer.h.{i}.attn.c_proj.weight"] = (C, C)
        layout[f"transformer.h.{i}.mlp.c_fc.weight"] = (4 * C, C)
        layout[f"transformer.h.{i}.mlp.c_proj.weight"] = (C, 4 * C)
    return layout


def test_d12_names_shapes_and_parameter_count():
    with torch.device("meta"):
        model = GPT(ModelConfig())
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert shapes == authors_layout(ModelConfig())
    assert model.num_params() == 162_201_600  # untied, DESIGN.md: 162.2M
    with torch.device("meta"):
        tied = GPT(ModelConfig(tie_embeddings=True))
    assert tied.num_params() == 162_201_600 - 50304 * 768  # ~124M


def test_state_dict_in_authors_layout_loads_without_renaming():
    torch.manual_seed(0)
    state = {k: torch.randn(s) for k, s in authors_layout(SMOKE).items()}
    model = GPT(SMOKE)
    load_model_state(model, state)
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k])
    # torch.compile'd checkpoints carry an _orig_mod. prefix
    load_model_state(model, {"_orig_mod." + k: v * 2 for k, v in state.items()})
    assert torch.equal(model.lm_head.weight, state["lm_head.weight"] * 2)


def authors_frequencies(head_dim: int, base: float = 10000.0) -> torch.Tensor:
    """Rotary frequencies as the authors' model computes and stores them: in fp32."""
    return 1.0 / (base ** (torch.arange(0, head_dim, 2).float() / head_dim))


def test_authors_state_dict_with_rotary_frequencies_loads_and_other_frequencies_are_refused():
    torch.manual_seed(0)
    state = {k: torch.randn(s) for k, s in authors_layout(SMOKE).items()}
    freqs = {f"transformer.h.{i}.attn.rotary.inv_freq": authors_frequencies(SMOKE.head_dim)
             for i in range(SMOKE.n_layer)}
    model = GPT(SMOKE)
    load_model_state(model, {**state, **freqs})
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    load_model_state(model, {"_orig_mod." + k: v for k, v in {**state, **freqs}.items()})  # compiled: prefixed
    wrong = {**state, **freqs, "transformer.h.1.attn.rotary.inv_freq": authors_frequencies(SMOKE.head_dim, 5e5)}
    with pytest.raises(StateDictError, match=r"ckpt\.bin: rotary frequencies 'transformer\.h\.1\.attn\.rotary"
                                             r"\.inv_freq' .* differ from the model's .*rope_base 10000"):
        load_model_state(model, wrong, "ckpt.bin")
    short = {**state, "transformer.h.0.attn.rotary.inv_freq": authors_frequencies(SMOKE.head_dim // 2)}
    with pytest.raises(StateDictError, match="inv_freq"):
        load_model_state(model, short)


def test_init_std_follows_design():
    torch.manual_seed(0)
    cfg = ModelConfig(n_layer=4, n_head=4, n_embd=256, block_size=32)
    model = GPT(cfg)
    for name, p in model.named_parameters():
        expected = 0.02 / math.sqrt(8) if name.endswith("c_proj.weight") else 0.02
        assert init_std(cfg, name) == expected
        assert p.std().item() == pytest.approx(expected, rel=0.05), name


def test_rotary_matches_the_stated_convention_by_hand():
    rot = Rotary(head_dim=4, max_len=8, base=10000.0)
    x = torch.randn(1, 8, 1, 4)
    y = rot(x)
    for t in range(8):
        for j in range(2):
            theta = t * 10000.0 ** (-2 * j / 4)
            x1, x2 = x[0, t, 0, j], x[0, t, 0, j + 2]
            assert y[0, t, 0, j].item() == pytest.approx((x1 * math.cos(theta) + x2 * math.sin(theta)).item(), abs=1e-5)
            assert y[0, t, 0, j + 2].item() == pytest.approx((-x1 * math.sin(theta) + x2 * math.cos(theta)).item(), abs=1e-5)


def test_rotary_scores_depend_only_on_relative_position():
    rot = Rotary(head_dim=8, max_len=16, base=10000.0)
    q, k = torch.randn(8), torch.randn(8)
    qs = rot(q.expand(1, 16, 1, 8))[0, :, 0]
    ks = rot(k.expand(1, 16, 1, 8))[0, :, 0]
    assert (qs[5] @ ks[2]).item() == pytest.approx((qs[12] @ ks[9]).item(), abs=1e-4)


def test_rms_norm_is_fp32_and_parameter_free():
    x = torch.randn(3, 5, dtype=torch.bfloat16, generator=torch.Generator().manual_seed(0)) * 7
    y = rms_norm(x, 1e-6)
    assert y.dtype == torch.bfloat16
    xf = x.float()
    ref = xf / torch.sqrt(xf.pow(2).mean(-1, keepdim=True) + 1e-6)
    # F.rms_norm multiplies by an rsqrt (its CPU kernel varies with the instruction set) where ref divides by a
    # sqrt: the fp32 results differ by ulps, so a value next to a bf16 rounding boundary may round one bf16 ulp
    # (2^-8 relative) apart; the same norm computed in bf16 is off by more (0.47% on this input)
    torch.testing.assert_close(y.float(), ref.bfloat16().float(), rtol=2.0 ** -8, atol=0)


def test_forward_is_causal_and_returns_hidden_states():
    torch.manual_seed(0)
    model = GPT(SMOKE).eval()
    idx = torch.randint(0, 50257, (2, 16))
    logits, loss = model(idx)
    assert logits.shape == (2, 16, SMOKE.vocab_size) and logits.dtype == torch.float32 and loss is None
    changed = idx.clone()
    changed[:, 10:] = 7
    logits2, _ = model(changed)
    assert torch.allclose(logits[:, :10], logits2[:, :10], atol=1e-5)
    assert not torch.allclose(logits[:, 10:], logits2[:, 10:])
    _, loss, hidden = model(idx, idx, return_hidden=True)
    assert len(hidden) == SMOKE.n_layer + 1
    assert torch.equal(hidden[0], model.transformer.wte(idx))
    assert loss.item() == pytest.approx(math.log(SMOKE.vocab_size), rel=0.05)  # near-uniform at init


def test_loss_ignores_minus_one_targets():
    torch.manual_seed(0)
    model = GPT(SMOKE).eval()
    idx = torch.randint(0, 50257, (1, 8))
    targets = idx.clone()
    targets[0, 4:] = -1
    logits, loss = model(idx, targets)
    ref = torch.nn.functional.cross_entropy(logits[0, :4], idx[0, :4])
    assert loss.item() == pytest.approx(ref.item(), rel=1e-6)


def test_bf16_autocast_keeps_fp32_logits():
    """The CUDA path runs under bf16 autocast; check its dtype handling on CPU."""
    torch.manual_seed(0)
    model = GPT(SMOKE)
    idx = torch.randint(0, 50257, (2, 16))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits, loss, hidden = model(idx, idx, return_hidden=True)
        assert model.transformer.h[0].mlp.c_fc(hidden[0]).dtype == torch.bfloat16
    assert logits.dtype == torch.float32 and torch.isfinite(loss)
    # matmuls run in bf16 (above), but the residual stream (embedding + branches) stays fp32
    assert hidden[-1].dtype == torch.float32
    loss.backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in model.parameters())


def test_tied_head_shares_the_embedding():
    model = GPT(ModelConfig(n_layer=1, n_head=2, n_embd=16, block_size=8, tie_embeddings=True))
    assert model.lm_head.weight is model.transformer.wte.weight


def test_flops_per_token_by_hand():
    cfg = ModelConfig()
    n_matmul = 12 * (3 * 768 * 768 + 768 * 768 + 2 * 4 * 768 * 768) + 50304 * 768
    assert flops_per_token(cfg, 1024) == 6 * n_matmul + 12 * 12 * 768 * 1024


@pytest.mark.parametrize(
    "kwargs, words",
    [({"n_embd": 100, "n_head": 3}, "not divisible"), ({"n_layer": 0}, "n_layer"), ({"vocab_size": 100}, "vocab_size")],
)
def test_bad_model_config_is_refused(kwargs, words):
    with pytest.raises(ConfigError, match=words):
        ModelConfig(**kwargs)


def test_unknown_preset_lists_known_ones():
    with pytest.raises(ConfigError, match="gpt2-124m"):
        get_preset("gpt5")


def test_sequence_longer_than_block_is_refused():
    model = GPT(SMOKE)
    with pytest.raises(ValueError, match="block_size"):
        model(torch.zeros(1, SMOKE.block_size + 1, dtype=torch.long))
