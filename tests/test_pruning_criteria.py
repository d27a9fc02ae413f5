"""The pruning criteria beside magnitude: random, attribution (Taylor) and structured MLP units."""
import math

import pytest
import torch
from torch import nn

from genprune_nb.config import ModelConfig
from genprune_nb.connectome.pruning import (
    CRITERIA,
    group_sparsity_penalty,
    mlp_unit_pairs,
    prunable_names,
    prune,
    prune_by,
    taylor_scores,
    unit_scores,
)
from genprune_nb.model.gpt import GPT
from genprune_nb.training.optim import WeightMask

CFG = ModelConfig(n_layer=2, n_head=2, n_embd=16, block_size=16)


def _batches(n=3, seed=0, vocab=50257):
    gen = torch.Generator().manual_seed(seed)
    return [(torch.randint(0, vocab, (2, 16), generator=gen), torch.randint(0, vocab, (2, 16), generator=gen))
            for _ in range(n)]


def test_random_keeps_magnitudes_per_tensor_counts_over_generations():
    gen = torch.Generator().manual_seed(0)
    weights = {"a.weight": torch.randn(48, 16, generator=gen), "lm_head.weight": torch.randn(97, 16, generator=gen)}
    names = list(weights)
    mag = rnd = {n: torch.ones_like(weights[n], dtype=torch.bool) for n in names}
    for g in range(3):
        mag = prune_by("magnitude", weights, mag, 0.2)
        rnd = prune_by("random", weights, rnd, 0.2, seed=g)
        for n in names:
            assert int(rnd[n].sum()) == int(mag[n].sum()), (g, n)
    assert any(not torch.equal(rnd[n], mag[n]) for n in names)
    again = {n: torch.ones_like(weights[n], dtype=torch.bool) for n in names}
    assert all(torch.equal(prune_by("random", weights, again, 0.2, seed=5)[n],
                           prune_by("random", weights, again, 0.2, seed=5)[n]) for n in names)
    assert not torch.equal(prune_by("random", weights, again, 0.2, seed=5)["lm_head.weight"],
                           prune_by("random", weights, again, 0.2, seed=6)["lm_head.weight"])


class Probe(nn.Module):
    """A loss that depends on the weight's first three input columns only (the others see zero input)."""

    def __init__(self):
        super().__init__()
        w = torch.arange(1.0, 25.0).view(4, 6)
        w[:, 3:] += 100  # the dead columns hold the largest weights
        self.w = nn.Parameter(w)

    def forward(self, x, y):
        out = x @ self.w.T
        return out, ((out - y) ** 2).mean()


def test_attribution_prunes_the_zero_gradient_weights_first():
    model = Probe()
    gen = torch.Generator().manual_seed(0)
    batches = []
    for _ in range(2):
        x = torch.randn(8, 6, generator=gen)
        x[:, 3:] = 0
        batches.append((x, torch.randn(8, 4, generator=gen)))
    scores = taylor_scores(model, batches)
    assert torch.equal(scores["w"][:, 3:], torch.zeros(4, 3)) and bool((scores["w"][:, :3] > 0).all())
    # by hand: sum over batches of |w * dL/dw| with dL/dw = 2/(8*4) (out - y)^T x
    expected = sum((model.w.detach() * (2 / 32) * ((x @ model.w.detach().T - y).T @ x)).abs() for x, y in batches)
    torch.testing.assert_close(scores["w"], expected)
    assert model.w.grad is None  # gradients cleared, weights untouched
    mask = {"w": torch.ones(4, 6, dtype=torch.bool)}
    new = prune_by("attribution", {"w": model.w.detach()}, mask, 0.5, attribution=scores)
    assert new["w"][:, 3:].sum() == 0 and new["w"][:, :3].all()
    assert prune_by("magnitude", {"w": model.w.detach()}, mask, 0.5)["w"][:, 3:].all()  # magnitude keeps them
    with pytest.raises(ValueError, match="needs attribution scores"):
        prune_by("attribution", {"w": model.w.detach()}, mask, 0.5)
    with pytest.raises(ValueError, match="unknown pruning criterion 'snip'"):
        prune_by("snip", {"w": model.w.detach()}, mask, 0.5)
    assert CRITERIA == ("magnitude", "random", "attribution", "structured")


@pytest.fixture(scope="module")
def structured():
    model = GPT(CFG, seed=1)
    scores = taylor_scores(model, _batches())
    weights = model.state_dict()
    masks = {n: torch.ones_like(weights[n], dtype=torch.bool) for n in prunable_names(weights)}
    for _ in range(2):
        masks = prune_by("structured", weights, masks, 0.2, attribution=scores)
    return model, scores, masks


def test_structured_prunes_whole_units_with_the_same_densities(structured):
    model, scores, masks = structured
    weights = model.state_dict()
    pairs = mlp_unit_pairs(masks)
    assert [p[0] for p in pairs] == ["transformer.h.0.mlp.c_fc.weight", "transformer.h.1.mlp.c_fc.weight"]
    for fc, proj in pairs:
        rows, cols = masks[fc].all(1), masks[proj].all(0)
        assert torch.equal(rows, masks[fc].any(1)) and torch.equal(cols, masks[proj].any(0))  # whole units
        assert torch.equal(rows, cols)
        assert int(rows.sum()) == 64 - 13 - 10  # 64 units: round(0.2 x 64) = 13, then round(0.2 x 51) = 10
        # the units that went first are the lowest-scoring ones
        first = prune_by("structured", weights, {n: torch.ones_like(m) for n, m in masks.items()}, 0.2,
                         attribution=scores)[fc].all(1)
        order = torch.argsort(unit_scores(scores, fc, proj), stable=True)
        assert set(order[:13].tolist()) == set((~first).nonzero().squeeze(1).tolist())
    for name in set(masks) - {n for p in pairs for n in p}:  # the rest: entry-wise, like the other criteria
        n = masks[name].numel()
        after_one = n - round(0.2 * n)
        assert int(masks[name].sum()) == after_one - round(0.2 * after_one)


def test_a_pruned_units_weights_cannot_change_the_output(structured):
    model, _, masks = structured
    pruned = GPT(CFG)
    pruned.load_state_dict(model.state_dict())
    WeightMask(pruned, masks).apply_to_weights()
    pruned.eval()
    x = _batches(1, seed=3)[0][0]
    reference = pruned(x)[0]
    fc, proj = mlp_unit_pairs(masks)[0]
    dead = int((~masks[fc].all(1)).nonzero()[0])
    live = int(masks[fc].all(1).nonzero()[0])
    params = dict(pruned.named_parameters())
    with torch.no_grad():
        for name, index in ((fc, (dead, slice(None))), (proj, (slice(None), dead))):
            saved = params[name][index].clone()
            params[name][index] = torch.randn_like(saved)  # only one side of the unit: it stays disconnected
            torch.testing.assert_close(pruned(x)[0], reference, rtol=0, atol=0)
            params[name][index] = saved
        params[fc][live] += 1.0
        assert not torch.allclose(pruned(x)[0], reference)


def test_group_sparsity_penalty_by_hand():
    model = GPT(CFG, seed=2)
    params = dict(model.named_parameters())
    expected = 0.0
    for block in range(CFG.n_layer):
        fc = params[f"transformer.h.{block}.mlp.c_fc.weight"].detach().double()
        proj = params[f"transformer.h.{block}.mlp.c_proj.weight"].detach().double()
        for j in range(4 * CFG.n_embd):
            expected += math.sqrt(sum(float(v) ** 2 for v in fc[j]) + sum(float(v) ** 2 for v in proj[:, j]))
    penalty = group_sparsity_penalty(model)
    assert penalty.item() == pytest.approx(expected, rel=1e-5)
    with torch.no_grad():  # a unit already at zero gets a zero (sub)gradient, not NaN
        params["transformer.h.0.mlp.c_fc.weight"][5] = 0
        params["transformer.h.0.mlp.c_proj.weight"][:, 5] = 0
    group_sparsity_penalty(model).backward()
    grad = params["transformer.h.0.mlp.c_fc.weight"].grad
    assert torch.isfinite(grad).all() and torch.count_nonzero(grad[5]) == 0
    # the gradient of a live unit is its weights over its norm
    row = params["transformer.h.0.mlp.c_fc.weight"][0].detach()
    col = params["transformer.h.0.mlp.c_proj.weight"][:, 0].detach()
    torch.testing.assert_close(grad[0], row / torch.sqrt(row.pow(2).sum() + col.pow(2).sum()))
    with pytest.raises(ValueError, match="no MLP"):
        group_sparsity_penalty(nn.Linear(3, 3))


def test_structured_units_in_prune_keep_counts_under_global_scope():
    weights = GPT(CFG, seed=0).state_dict()
    masks = {n: torch.ones_like(weights[n], dtype=torch.bool) for n in prunable_names(weights)}
    scores = {n: w.abs() for n, w in weights.items() if n in masks}
    new = prune_by("structured", weights, masks, 0.2, scope="global", attribution=scores)
    rest = [n for n in masks if ".mlp." not in n]
    total = sum(masks[n].numel() for n in rest)
    assert sum(int(new[n].sum()) for n in rest) == total - round(0.2 * total)
    reference = prune(weights, {n: masks[n] for n in rest}, 0.2, lambda n, w: scores[n], "global")
    assert all(torch.equal(new[n], reference[n]) for n in rest)


def test_alive_units_of_a_connectome_by_hand():
    from genprune_nb.connectome.wiring import Connectome

    signs = {"transformer.h.0.mlp.c_fc.weight": torch.ones(4, 2, dtype=torch.int8),
             "transformer.h.0.mlp.c_proj.weight": torch.ones(2, 4, dtype=torch.int8)}
    signs["transformer.h.0.mlp.c_fc.weight"][0] = 0  # unit 0: no input
    signs["transformer.h.0.mlp.c_proj.weight"][:, 1] = 0  # unit 1: no output
    signs["transformer.h.0.mlp.c_proj.weight"][0, 2] = 0  # unit 2: thinned but alive
    conn = Connectome(signs, {n: 0.02 for n in signs})
    assert conn.alive_units() == {"transformer.h.0.mlp.c_fc.weight": 0.5}
