"""Scoring only what is read: the head at read positions only, and a group's shared context computed once (packed
rows with position ids and a tree mask) give the values of scoring each request alone, full logits and all."""
import pytest
import torch
from torch import nn

from genprune_nb.config import get_preset
from genprune_nb.evals import Request, score
from genprune_nb.evals.scorer import Pack, pack, packs, tree_mask
from genprune_nb.model import lm
from genprune_nb.model.gpt import GPT
from genprune_nb.model.lm import IGNORE, target_predictions


@pytest.fixture(scope="module")
def gpt():
    return GPT(get_preset("smoke").model, seed=3).eval()  # block_size 64, fp32 on CPU


class ForwardOnly(nn.Module):
    """The GPT behind its plain ``forward`` only: full logits at every position, one causal sequence per request."""

    def __init__(self, model: GPT):
        super().__init__()
        self.model, self.config = model, model.config

    def forward(self, idx):
        return self.model(idx)


def greedy_continuation(model: GPT, context: list[int], n: int) -> tuple[int, ...]:
    """``n`` tokens of greedy decoding after ``context``: a continuation whose every token is the model's top one."""
    ids = list(context)
    with torch.no_grad():
        for _ in range(n):
            ids.append(int(model(torch.tensor([ids[-model.config.block_size:]]))[0][0, -1].argmax()))
    return tuple(ids[len(context):])


def test_final_hidden_then_head_is_forward(gpt):
    idx = torch.randint(0, 50257, (2, 17), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits, _ = gpt(idx)
        h = gpt.final_hidden(idx)
        assert h.shape == (2, 17, gpt.config.n_embd)
        assert torch.equal(gpt.head(h), logits)
        rows = gpt.head(h[:, [3, 16]])  # a few rows only: the same values
    torch.testing.assert_close(rows, logits[:, [3, 16]], rtol=0, atol=1e-5)


def test_packed_rows_equal_the_separate_sequences_hidden_states(gpt):
    """A prefix, then two continuations at the positions they have alone, under the tree mask."""
    g = torch.Generator().manual_seed(1)
    prefix, a, b = (torch.randint(0, 50257, (n,), generator=g).tolist() for n in (6, 4, 2))
    p = Pack(prefix + a + b, [IGNORE] * 12, [*range(6), *range(6, 10), *range(6, 8)], [0] * 6 + [1] * 4 + [2] * 2, [])
    positions, branches = torch.tensor([p.positions]), torch.tensor([p.branches])
    with torch.no_grad():
        packed = gpt.final_hidden(torch.tensor([p.inputs]), positions, tree_mask(positions, branches))[0]
        alone_a = gpt.final_hidden(torch.tensor([prefix + a]))[0]
        alone_b = gpt.final_hidden(torch.tensor([prefix + b]))[0]
    torch.testing.assert_close(packed[:10], alone_a, rtol=0, atol=1e-5)
    torch.testing.assert_close(packed[10:], alone_b[6:], rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="both positions and attn_mask"):
        gpt.final_hidden(torch.tensor([p.inputs]), positions)
    with pytest.raises(ValueError, match="positions must lie in 0 .. block_size - 1 = 63"):
        gpt.final_hidden(torch.tensor([p.inputs]), positions + 60, tree_mask(positions, branches))


def test_pack_and_tree_mask_by_hand():
    # windows 1 2 3 4 | 5 6 and 1 2 3 4 | 7: scored 2 and 1 ids; the prefix stops before the first read position (3)
    p = pack([[1, 2, 3, 4, 5, 6], [1, 2, 3, 4, 7]], [2, 1])
    assert p == Pack(inputs=[1, 2, 3, 4, 5, 4], targets=[IGNORE, IGNORE, IGNORE, 5, 6, 7],
                     positions=[0, 1, 2, 3, 4, 3], branches=[0, 0, 0, 1, 1, 2], spans=[slice(3, 5), slice(5, 6)])
    # windows that differ from their second input on share one token; one window alone is its own causal sequence
    assert pack([[1, 2, 3, 4], [1, 9, 3, 4]], [1, 1]).positions == [0, 1, 2, 1, 2]
    assert pack([[8, 9, 10]], [2]) == Pack([8, 9], [9, 10], [0, 1], [1, 1], [slice(0, 2)])
    mask = tree_mask(torch.tensor([p.positions + [0]]), torch.tensor([p.branches + [-1]]))[0].int().tolist()
    assert mask == [[1, 0, 0, 0, 0, 0, 0],
                    [1, 1, 0, 0, 0, 0, 0],
                    [1, 1, 1, 0, 0, 0, 0],
                    [1, 1, 1, 1, 0, 0, 0],
                    [1, 1, 1, 1, 1, 0, 0],
                    [1, 1, 1, 0, 0, 1, 0],
                    [1, 0, 0, 0, 0, 0, 1]]  # padding reads the first token and itself; nobody reads padding


def test_a_group_shares_its_context_only_when_that_costs_less():
    context = list(range(100, 140))
    shared = packs([context + [1, 2], context + [3]], [2, 1], n_embd=32)
    assert len(shared) == 1 and len(shared[0].inputs) == 39 + 2 + 1  # the last context token is read by each
    disjoint = packs([[5, *context, 1], [6, *context, 2]], [1, 1], n_embd=32)  # no common first token
    assert [p.inputs for p in disjoint] == [[5, *context], [6, *context]]
    assert len(packs([context + [1], context + [2]], [1, 1], n_embd=None)) == 2  # a model without final_hidden


@pytest.mark.parametrize("rows", [None, 1, 4, 7])  # None: every read row at once
def test_head_only_at_read_positions_equals_the_full_head(gpt, rows, monkeypatch):
    if rows is not None:  # the head in chunks of ``rows`` rows (3 x 20 inputs read 31 rows: uneven chunks)
        monkeypatch.setitem(lm.HEAD_CHUNK_LOGITS, "cpu", rows * gpt.config.vocab_size)
        assert lm.head_rows(torch.device("cpu"), gpt.config.vocab_size) == rows
    g = torch.Generator().manual_seed(2)
    inputs = torch.randint(0, 50257, (3, 20), generator=g)
    targets = torch.randint(0, 50257, (3, 20), generator=g)
    targets[0, :15] = IGNORE
    targets[1] = IGNORE
    targets[2, ::3] = IGNORE
    targets[2, 5] = int(gpt(inputs)[0][2, 5].argmax())  # one greedy hit
    lp, hits = target_predictions(gpt, inputs, targets)
    with torch.no_grad():
        logp = torch.log_softmax(gpt(inputs)[0], dim=-1)
    read = targets != IGNORE
    full = torch.where(read, logp.gather(-1, targets.clamp(min=0)[..., None])[..., 0], 0.0)
    torch.testing.assert_close(lp, full, rtol=0, atol=1e-5)
    assert torch.equal(hits, read & (logp.argmax(-1) == targets)) and hits[2, 5]
    assert torch.equal(target_predictions(ForwardOnly(gpt), inputs, targets)[1], hits)
    with pytest.raises(TypeError, match="cannot read packed sequences"):
        target_predictions(ForwardOnly(gpt), inputs, targets, positions=inputs, attn_mask=inputs > 0)


def groups_of(gpt: GPT) -> list[list[Request]]:
    g = torch.Generator().manual_seed(4)

    def ids(n: int) -> tuple[int, ...]:
        return tuple(torch.randint(0, 50257, (n,), generator=g).tolist())

    item = ids(20)
    long_context = ids(80)  # > block_size 64: windows cut it at different points for different continuation lengths
    return [
        [Request(item, ids(n)) for n in (3, 7, 1, 5)],  # an item: different-length endings
        [Request(item[:12], greedy_continuation(gpt, list(item[:12]), 4)), Request(item[:12], ids(4))],
        [Request(long_context, ids(n)) for n in (2, 9, 30)],  # truncated differently: no common prefix
        [Request((7,) * 80, ids(n)) for n in (2, 5)],  # truncated differently, yet sharing 59 tokens
        [Request(item + ids(4), ids(2)), Request(item + ids(6), ids(3))],  # contexts that part after 20 tokens
        [Request(long_context, (7,)), Request(long_context, (8,)), Request(long_context, (9,))],  # MMLU letters
        [Request((5,), greedy_continuation(gpt, [5], 6))],  # one request
        [Request(item, item[:3] + ids(2)), Request(item, item[:3] + ids(5))],  # endings sharing their first tokens
        [Request(item[:1], ids(64))],  # a continuation of block_size tokens after one context token
    ]


@pytest.mark.parametrize("batch_size", [1, 5, 64])
def test_packed_scores_equal_separate_sequences(gpt, batch_size):
    groups = groups_of(gpt)
    packed = score(gpt, groups, batch_size=batch_size, greedy=True)
    separate = score(ForwardOnly(gpt), groups, batch_size=1, greedy=True)
    assert [[s.n_tokens for s in g] for g in packed] == [[len(r.continuation) for r in g] for g in groups]
    for g_packed, g_separate in zip(packed, separate):
        for a, b in zip(g_packed, g_separate, strict=True):
            assert a.logprob == pytest.approx(b.logprob, abs=1e-5)
            assert a.greedy == b.greedy
    flags = [s.greedy for g in packed for s in g]
    assert flags.count(True) == 2  # the two greedy continuations, and only they
