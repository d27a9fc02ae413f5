import numpy as np
import pytest
import torch

from genprune_nb.config import ModelConfig, OuterConfig
from genprune_nb.connectome.pruning import lowest, prunable_names, prune, prune_units
from genprune_nb.connectome.wiring import Connectome, file_bits_per_weight, reinit_scales
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


# |w| of ten survivors: 0.1 once, then 0.2 four times (positions 1, 3, 6, 8), then larger values
TIED = torch.tensor([[0.1, -0.2, 0.9, 0.2, 0.5], [0.7, -0.2, 0.3, 0.2, 0.6]])


def test_exact_ties_prune_round_of_the_fraction_lowest_index_first():
    new = prune({"t": TIED}, {"t": torch.ones(2, 5, dtype=torch.bool)}, 0.35, ties="exact")["t"]
    # round(3.5) = 4 go: 0.1 (position 0), then three of the four tied 0.2s by index: 1, 3, 6; position 8 survives
    assert (~new).flatten().nonzero().flatten().tolist() == [0, 1, 3, 6]


def test_authors_ties_survive_at_the_threshold():
    masks = {"t": torch.ones(2, 5, dtype=torch.bool)}
    new = prune({"t": TIED}, masks, 0.35, ties="authors")["t"]
    # floor(3.5) = 3: sorted |w| = 0.1, 0.2, 0.2, 0.2 | ..., the threshold is sorted[3] = 0.2; only 0.1 < 0.2 goes
    assert (~new).flatten().nonzero().flatten().tolist() == [0]
    # fraction 0.5: floor(5) = 5, sorted[5] = 0.3; the 0.1 and all four 0.2s are strictly below: 5 go, as exact
    new = prune({"t": TIED}, masks, 0.5, ties="authors")["t"]
    assert (~new).flatten().nonzero().flatten().tolist() == [0, 1, 3, 6, 8]
    # without ties the rules differ only by floor vs round: 0.25 of 10 survivors -> authors 2, exact round(2.5) = 2;
    # 0.35 of distinct scores -> authors 3, exact 4
    distinct = torch.arange(1.0, 11.0)
    assert lowest(distinct, 0.35, "authors").tolist() == [0, 1, 2]
    assert lowest(distinct, 0.35, "exact").tolist() == [0, 1, 2, 3]
    assert lowest(distinct, 0.05, "authors").tolist() == []  # floor(0.5) = 0: nothing goes
    with pytest.raises(ValueError, match="tie rule must be one of .* got 'floor'"):
        lowest(distinct, 0.2, "floor")


def test_authors_ties_count_only_survivors_and_apply_to_global_scope_and_units():
    masks = {"t": torch.ones(2, 5, dtype=torch.bool)}
    masks["t"][0, 0] = False  # the 0.1 is already pruned: 9 survivors, sorted 0.2 x4, 0.3, 0.5, ...
    new = prune({"t": TIED}, masks, 0.35, ties="authors")["t"]  # floor(3.15) = 3, sorted[3] = 0.2: none goes
    assert (~new).flatten().nonzero().flatten().tolist() == [0]
    new = prune({"t": TIED}, masks, 0.5, ties="authors")["t"]  # floor(4.5) = 4, sorted[4] = 0.3: the four 0.2s go
    assert (~new).flatten().nonzero().flatten().tolist() == [0, 1, 3, 6, 8]
    both = {"t": TIED, "u": torch.full((1, 2), 0.2)}
    new = prune(both, {k: torch.ones_like(v, dtype=torch.bool) for k, v in both.items()}, 0.35, scope="global",
                ties="authors")  # 12 scores, floor(4.2) = 4, sorted[4] = 0.2 (six tied): only the 0.1 goes
    assert int((~new["t"]).sum()) == 1 and bool(new["u"].all())
    fc, proj = torch.ones(4, 3, dtype=torch.bool), torch.ones(3, 4, dtype=torch.bool)
    units = prune_units({"fc": fc, "proj": proj}, 0.5, torch.tensor([1.0, 2.0, 2.0, 3.0]), "fc", "proj",
                        ties="authors")  # floor(2) = 2, threshold 2.0: only unit 0 goes
    assert units["fc"].any(1).tolist() == [False, True, True, True]


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
