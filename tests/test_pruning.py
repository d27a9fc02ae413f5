import numpy as np
import pytest
import torch

from genprune_nb.config import ModelConfig, OuterConfig
from genprune_nb.connectome.wiring import Connectome, file_bits_per_weight, reinit_scales
from genprune_nb.connectome.pruning import prunable_names, prune
from genprune_nb.model.gpt import GPT


def test_layer_pruning_removes_the_smallest_survivors_by_hand():
    w = {"a": torch.tensor([[0.5, -0.1, 0.3], [-0.9, 0.2, 0.05]]), "b": torch.tensor([[1.0, 2.0], [3.0, 4.0]])}
    masks = {"a": torch.tensor([[True, True, True], [True, True, False]]), "b": torch.ones(2, 2, dtype=torch.bool)}
    new = prune(w, masks, 0.4)
    # a: 5 survivors -> prune round(2.0) = 2 smallest |w| among survivors: -0.1 and 0.2 (0.05 is already gone)
    assert new["a"].tolist() == [[True, False, True], [True, False, False]]
    # b: 4 survivors -> round(1.6) = 2: 1.0 and 2.0
    assert new["b"].tolist() == [[False, False], [True, True]]
    assert masks["a"].sum() == 5  # inputs untouched


def test_ties_break_towards_the_lower_index_deterministically():
    w = {"t": torch.ones(2, 5)}
    new = prune(w, {"t": torch.ones(2, 5, dtype=torch.bool)}, 0.3)
    assert new["t"].flatten().tolist() == [False] * 3 + [True] * 7


def test_global_scope_uses_one_threshold():
    w = {"small": torch.full((4, 4), 0.01), "large": torch.full((4, 4), 1.0)}
    w["small"][0, 0] = 5.0
    masks = {k: torch.ones(4, 4, dtype=torch.bool) for k in w}
    new = prune(w, masks, 0.25, scope="global")  # 8 of 32 weights, all from the small tensor
    assert new["small"].sum() == 8 and new["large"].all()
    with pytest.raises(ValueError, match="scope"):
        prune(w, masks, 0.25, scope="neuron")


def test_repeated_pruning_reaches_0_8_to_the_g():
    gen = torch.Generator().manual_seed(0)
    w = {"x": torch.randn(37, 53, generator=gen)}
    masks = {"x": torch.ones(37, 53, dtype=torch.bool)}
    for g in range(1, 7):
        masks = prune(w, masks, 0.2)
        assert abs(int(masks["x"].sum()) - 0.8**g * w["x"].numel()) <= 1.5


def test_prunable_names():
    state = GPT(ModelConfig(n_layer=1, n_head=2, n_embd=16, block_size=8)).state_dict()
    assert len(prunable_names(state)) == 6
    assert "lm_head.weight" not in prunable_names(state, prune_embeddings=False)


@pytest.fixture
def connectome():
    gen = torch.Generator().manual_seed(0)
    cfg = ModelConfig(n_layer=1, n_head=2, n_embd=16, block_size=8)
    weights = GPT(cfg, seed=0).state_dict()
    names = prunable_names(weights)
    masks = {n: torch.rand(weights[n].shape, generator=gen) < 0.26 for n in names}
    return cfg, weights, Connectome.from_weights(masks, weights, reinit_scales(cfg, names, OuterConfig()))


def test_connectome_survivors_are_signed_constants(connectome):
    cfg, weights, conn = connectome
    state = conn.init_state(cfg, seed=3)
    for name, s in conn.signs.items():
        mask = s != 0
        assert torch.equal(state[name][~mask], torch.zeros(int((~mask).sum())))
        assert torch.equal(state[name][mask], torch.sign(weights[name][mask]) * 0.02)
    scales = reinit_scales(cfg, list(conn.signs), OuterConfig(reinit="init_std"))
    assert scales["transformer.h.0.mlp.c_proj.weight"] == pytest.approx(0.02 / np.sqrt(2))


def test_random_control_keeps_densities_and_changes_the_pattern(connectome):
    _, _, conn = connectome
    rc = conn.random_control(seed=1)
    assert rc.densities() == conn.densities()
    assert rc.scales == conn.scales
    for name in conn.signs:
        assert not torch.equal(rc.signs[name], conn.signs[name])
        assert set(rc.signs[name].unique().tolist()) <= {-1, 0, 1}
    assert torch.equal(conn.random_control(seed=1).signs["lm_head.weight"], rc.signs["lm_head.weight"])


def test_connectome_file_round_trips_and_costs_about_its_entropy(connectome, tmp_path):
    _, _, conn = connectome
    size = conn.save(tmp_path / "c.gpc")
    back = Connectome.load(tmp_path / "c.gpc")
    assert all(torch.equal(back.signs[n], conn.signs[n]) for n in conn.signs)
    assert back.scales == conn.scales
    bits = file_bits_per_weight(tmp_path / "c.gpc", conn.n_weights)
    assert bits == 8 * size / conn.n_weights
    assert conn.entropy_bits() < bits < conn.entropy_bits() + 0.2  # small tensors: the header is visible
