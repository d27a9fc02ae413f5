import json

import numpy as np
import pytest
import torch

from genprune_nb.data.loader import TokenLoader, tokens_per_step
from genprune_nb.data.shards import write_shard

LENGTHS = [100, 57, 80]


@pytest.fixture
def shards(tmp_path):
    """Three shards whose tokens encode (shard, offset) so every read can be checked."""
    paths = []
    for s, n in enumerate(LENGTHS):
        paths.append(tmp_path / f"d_train_{s:06d}.bin")
        write_shard(paths[-1], 1000 * s + np.arange(n))
    return paths


def _expected_starts(B, T, world, steps):
    """Independent model of the stream: (shard, position, epoch) of each step's world-wide read."""
    out, shard, pos, epoch = [], 0, 0, 0
    for _ in range(steps):
        if pos + B * T * world + 1 > LENGTHS[shard]:
            shard, pos = shard + 1, 0
            if shard == len(LENGTHS):
                shard, epoch = 0, epoch + 1
        out.append((shard, pos, epoch))
        pos += B * T * world
    return out


def test_batches_follow_the_shards(shards):
    B, T = 2, 4
    loader = TokenLoader(shards, B, T)
    for shard, pos, epoch in _expected_starts(B, T, 1, 60):
        x, y = loader.next_batch()
        assert x.dtype == torch.int64 and x.shape == (B, T) and y.shape == (B, T)
        expected = 1000 * shard + pos + torch.arange(B * T + 1)
        assert torch.equal(x.flatten(), expected[:-1]) and torch.equal(y.flatten(), expected[1:])
        assert loader.epoch == epoch
    assert loader.epoch >= 2  # the test really wrapped around twice


def test_world_two_equals_halves_of_double_batch(shards):
    T = 3
    full = TokenLoader(shards, 4, T)
    ranks = [TokenLoader(shards, 2, T, rank=r, world_size=2) for r in range(2)]
    assert full.step_tokens == ranks[0].step_tokens == tokens_per_step(2, T, 2) == 12
    for _ in range(40):
        x, y = full.next_batch()
        for r, loader in enumerate(ranks):
            xr, yr = loader.next_batch()
            assert torch.equal(xr, x[2 * r : 2 * r + 2]) and torch.equal(yr, y[2 * r : 2 * r + 2])
            assert loader.state_dict()["position"] == full.state_dict()["position"]
    assert full.epoch >= 1


def test_deterministic_and_reset(shards):
    a, b = TokenLoader(shards, 3, 5), TokenLoader(shards, 3, 5)
    first = [a.next_batch()[0] for _ in range(25)]
    assert all(torch.equal(x, b.next_batch()[0]) for x in first)
    a.reset()
    assert torch.equal(a.next_batch()[0], first[0])


@pytest.mark.parametrize("k", [0, 1, 11, 12, 13, 30])
def test_state_round_trip_continues_identically(shards, k):
    a = TokenLoader(shards, 2, 4, rank=1, world_size=2)
    for _ in range(k):
        a.next_batch()
    state = json.loads(json.dumps(a.state_dict()))
    b = TokenLoader(shards, 2, 4, rank=1, world_size=2)
    b.load_state_dict(state)
    for _ in range(20):
        xa, ya = a.next_batch()
        xb, yb = b.next_batch()
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert a.state_dict() == b.state_dict()


def test_state_geometry_must_match(shards):
    state = TokenLoader(shards, 2, 4).state_dict()
    with pytest.raises(ValueError, match="batch_size=2 but this loader has 4"):
        TokenLoader(shards, 4, 4).load_state_dict(state)
    with pytest.raises(ValueError, match="world_size"):
        TokenLoader(shards, 2, 4, world_size=2).load_state_dict(state)
    with pytest.raises(ValueError, match="files"):
        TokenLoader(shards[:2], 2, 4).load_state_dict(state)
    with pytest.raises(ValueError, match="position=5 is not a step boundary"):
        TokenLoader(shards, 2, 4).load_state_dict({**state, "position": 5})


def test_seek_continues_another_geometry_at_a_shared_step_boundary(shards):
    a = TokenLoader(shards, 2, 4)  # 8 tokens per step
    for _ in range(14):  # shard 0 holds 12 steps (12 * 8 + 1 <= 100), then shard 1
        a.next_batch()
    assert a.stream_position() == {"shard": 1, "position": 16, "epoch": 0}
    b = TokenLoader(shards, 4, 4)  # 16 tokens per step: 16 is a boundary of both
    b.seek(a.state_dict())
    assert b.next_batch()[0].flatten().tolist() == [1000 + 16 + i for i in range(16)]
    c = TokenLoader(shards, 3, 4)  # 12 tokens per step: 16 is not a boundary
    with pytest.raises(ValueError, match="position=16 is not a step boundary .* 12 tokens per step"):
        c.seek(a.stream_position())
    with pytest.raises(ValueError, match="shards .*d_train_000000.bin"):
        TokenLoader(shards[:2], 2, 4).seek(a.state_dict())
    with pytest.raises(ValueError, match=r"lacks \['epoch'\]"):
        b.seek({"shard": 0, "position": 0})


def test_too_small_shard_and_bad_args(shards, tmp_path):
    with pytest.raises(ValueError, match="d_train_000001.bin holds 57 tokens") as err:
        TokenLoader(shards, 4, 8, world_size=2, rank=1)  # needs 65
    assert "65" in str(err.value)
    with pytest.raises(ValueError, match="rank"):
        TokenLoader(shards, 2, 4, rank=2, world_size=2)
    with pytest.raises(ValueError, match="at least one"):
        TokenLoader([], 2, 4)


def test_shuffled_order_covers_the_same_blocks_differently_and_resumes(shards):
    B, T = 2, 4
    steps = sum((n - 1) // (B * T) for n in LENGTHS)  # one epoch

    def epoch(seed):
        loader = TokenLoader(shards, B, T, shuffle_seed=seed)
        return [int(loader.next_batch()[0][0, 0]) for _ in range(steps)]

    plain = TokenLoader(shards, B, T)
    sequential = [int(plain.next_batch()[0][0, 0]) for _ in range(steps)]
    a, b = epoch(1), epoch(2)
    assert sorted(a) == sorted(b) == sorted(sequential)  # the same tokens in an epoch
    assert a != b and a != sequential  # in other orders
    assert epoch(1) == a  # deterministic
    loader = TokenLoader(shards, B, T, shuffle_seed=1)
    for _ in range(steps + 3):
        loader.next_batch()
    state = json.loads(json.dumps(loader.state_dict()))
    rest = [loader.next_batch()[0] for _ in range(5)]
    resumed = TokenLoader(shards, B, T, shuffle_seed=1)
    resumed.load_state_dict(state)
    assert all(torch.equal(r, resumed.next_batch()[0]) for r in rest)
    with pytest.raises(ValueError, match="shuffle_seed"):
        TokenLoader(shards, B, T, shuffle_seed=2).load_state_dict(state)


def test_a_token_id_outside_the_vocabulary_names_shard_and_offset(shards):
    loader = TokenLoader(shards, 2, 4, vocab_size=2050)  # shard 2 holds 2000..2079: offset 50 is the first bad id
    for _ in range((LENGTHS[0] - 1) // 8 + (LENGTHS[1] - 1) // 8):
        loader.next_batch()  # shards 0 and 1 are within the vocabulary
    with pytest.raises(ValueError, match=r"d_train_000002.bin: token id 2050 at token offset 50 is outside the "
                                         r"model's vocabulary \(vocab_size 2050\)"):
        loader.next_batch()
    assert TokenLoader(shards, 2, 4, vocab_size=2080).next_batch()  # the largest id 2079 fits
