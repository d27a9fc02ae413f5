"""Surviving fraction of embedding rows by token frequency, on hand-made connectomes and shards."""
import numpy as np
import pytest
import torch

from genprune_nb.analysis.token_survival import frequency_bins, row_survival, token_counts
from genprune_nb.connectome.wiring import Connectome
from genprune_nb.data.shards import write_shard


def test_token_counts_and_bins(tmp_path):
    write_shard(tmp_path / "a.bin", np.array([1, 1, 2, 5] + [3] * 12))
    write_shard(tmp_path / "b.bin", np.array([1] * 120))
    counts = token_counts([tmp_path / "a.bin", tmp_path / "b.bin"], 6)
    assert counts.tolist() == [0, 122, 1, 12, 0, 1]
    labels, order = frequency_bins(counts, top=1)
    assert labels.tolist() == ["unseen", "top 1", "1-9", "10-99", "unseen", "1-9"]
    assert order == ["unseen", "1-9", "10-99", "top 1"]
    with pytest.raises(ValueError, match="a.bin: token id 5 at token offset 3 is outside the model.s vocabulary"):
        token_counts([tmp_path / "a.bin"], 5)


def test_row_survival_by_hand():
    counts = np.array([0, 50, 3, 7])  # token 1 is the top 1; tokens 2, 3 are 1-9; token 0 unseen
    wte = torch.tensor([[1, -1, 1, 1], [0, 0, 0, 1], [1, 0, 0, 0], [1, 1, 0, 0]], dtype=torch.int8)
    head = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1], [0, 0, 0, 0], [0, 0, 0, 0]], dtype=torch.int8)
    block = torch.ones(2, 2, dtype=torch.int8)
    g0 = Connectome({"transformer.wte.weight": wte, "lm_head.weight": head, "h.0.w": block},
                    {"transformer.wte.weight": 0.02, "lm_head.weight": 0.02, "h.0.w": 0.02})
    g1 = Connectome({"h.0.w": block}, {"h.0.w": 0.02})  # embeddings left dense: no rows
    table = row_survival([g0, g1], counts, top=1)
    got = {(r.generation, r.tensor, r.bin): (r.tokens, r.surviving) for r in table.itertuples()}
    assert got == {
        (0, "transformer.wte.weight", "unseen"): (1, 1.0),
        (0, "transformer.wte.weight", "1-9"): (2, 3 / 8),
        (0, "transformer.wte.weight", "top 1"): (1, 1 / 4),
        (0, "lm_head.weight", "unseen"): (1, 2 / 4),
        (0, "lm_head.weight", "1-9"): (2, 0.0),
        (0, "lm_head.weight", "top 1"): (1, 1.0),
    }
    assert list(table["bin"].cat.categories) == ["unseen", "1-9", "top 1"]
    with pytest.raises(ValueError, match="generation 0: transformer.wte.weight has 4 rows but the token counts cover 3"):
        row_survival([g0], counts[:3], top=1)


def test_the_top_bin_fits_the_vocabulary():
    from genprune_nb.analysis.token_survival import default_top

    assert default_top(50304) == 500 and default_top(320) == 32  # GPT-2's vocabulary, a byte model's
    labels, order = frequency_bins(np.arange(320))
    assert order[-1] == "top 32" and (labels == "top 32").sum() == 32
