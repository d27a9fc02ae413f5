import math

import numpy as np
import pytest
import torch
from torch import nn

from genprune_nb.alignment.surprisal import token_logprobs, tokenize_words, window_starts, word_surprisal
from genprune_nb.config import ModelConfig
from genprune_nb.model.gpt import GPT
from genprune_nb.model.lm import next_token_logprobs
from genprune_nb.tokenizer import EOT, encode

TEXTS = [  # (words, separators): punctuation, apostrophes, runs of spaces, numbers, long words, non-ASCII
    (["'Admiral", "Nelson,'", "she", "said;", "don't", "you", "think", "so?"], " "),
    (["It", "cost", "$1,234,567.89", "in", "1999", "(roughly)."], " "),
    (["antidisestablishmentarianism", "and", "pneumonoultramicroscopicsilicovolcanoconiosis"], " "),
    (["a", "b", "c", "d"], ["", "   ", "\n\n", "\t "]),
    (["naïve", "café", "—", "🙂", "Zürich's", "crêpes"], " "),
]


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return GPT(ModelConfig(n_layer=2, n_head=2, n_embd=32, block_size=64)).eval()


@pytest.mark.parametrize("words,seps", TEXTS)
def test_word_surprisal_is_the_sum_of_its_tokens_logprobs(model, words, seps):
    sep_list = ["" if i == 0 else seps for i in range(len(words))] if isinstance(seps, str) else seps
    pieces = [encode(s + w) for s, w in zip(sep_list, words)]  # tokens of each "separator + word" alone
    ids = [t for p in pieces for t in p]
    assert ids == encode("".join(s + w for s, w in zip(sep_list, words)))  # here the pieces tokenize alike
    assert len(ids) < 64 and max(map(len, pieces)) >= 1
    lp = next_token_logprobs(model, torch.tensor([[EOT, *ids]]))[0].double().numpy()  # one pass
    bounds = np.cumsum([0, *map(len, pieces)])
    expected = [-lp[a:b].sum() / math.log(2) for a, b in zip(bounds[:-1], bounds[1:])]
    np.testing.assert_allclose(word_surprisal(model, words, seps, stride=1), expected, rtol=1e-6)  # fits one window


def test_words_split_into_many_tokens_and_tokens_across_words():
    ids, owner = tokenize_words(["pneumonoultramicroscopic", "🙂"])
    assert len(ids) >= 5 and owner[0] == 0 and owner[-1] == 1
    assert (np.diff(owner) >= 0).all()
    _, owner = tokenize_words(["no", "thing"], ["", ""])  # "nothing" is one GPT-2 token: it belongs to "thing"
    assert list(owner) == [1]


def test_a_word_without_a_token_gets_nan(model):
    s = word_surprisal(model, ["no", "thing", "here"], ["", "", " "])
    assert math.isnan(s[0]) and np.isfinite(s[1:]).all()


def test_sliding_window_gives_each_token_its_documented_context(model):
    torch.manual_seed(1)
    ids = torch.randint(0, 50257, (150,)).tolist()
    block, stride = 64, 16
    lp = token_logprobs(model, ids, stride=stride, batch_size=3)
    assert lp.shape == (149,)
    for p in (1, 63, 64, 79, 80, 149):
        start = 0 if p < block else (p - block) // stride * stride + stride  # first window start with p inside
        assert p - start >= min(p, block - stride)
        direct = next_token_logprobs(model, torch.tensor([ids[start : p + 1]]))[0, -1].item()
        assert lp[p - 1] == pytest.approx(direct, abs=1e-5)


class Bigram(nn.Module):
    """A language model that sees one token of context, so windows lose nothing."""

    def __init__(self, block_size: int, vocab: int = 100):
        super().__init__()
        self.config = ModelConfig(n_layer=1, n_head=1, n_embd=2, block_size=block_size)
        self.table = nn.Embedding(vocab, vocab)

    def forward(self, idx):
        return self.table(idx), None


def test_sliding_window_equals_one_pass_for_a_model_with_short_context():
    torch.manual_seed(2)
    bigram = Bigram(block_size=16)
    ids = torch.randint(0, 100, (90,))
    one_pass = next_token_logprobs(bigram, ids[None])[0].double().numpy()
    for stride in (1, 5, 15):
        np.testing.assert_allclose(token_logprobs(bigram, ids.tolist(), stride=stride), one_pass, rtol=1e-6)


def test_window_starts_cover_the_text_and_refuse_bad_strides():
    assert window_starts(64, 64, 16) == [0]
    assert window_starts(65, 64, 16) == [0, 16]
    assert window_starts(300, 64, 32)[-1] + 64 >= 300
    for bad in (0, 64):
        with pytest.raises(ValueError, match="stride"):
            window_starts(100, 64, bad)


def test_words_from_token_logprobs_by_hand():
    from genprune_nb.alignment.surprisal import words_from_token_logprobs

    ln2 = math.log(2)
    # text "Hi there!" = "Hi" + " there" + "!" (separators "", " ", ""); tokens "Hi", " the", "re", "!"
    bits, counts = words_from_token_logprobs(["Hi", "there", "!"], ["", " ", ""], [-ln2, -2 * ln2, -ln2, -3 * ln2],
                                             [(0, 2), (2, 6), (6, 8), (8, 9)])
    np.testing.assert_allclose(bits, [1, 3, 3])
    assert counts.tolist() == [1, 2, 1]
    bits, counts = words_from_token_logprobs(["no", "thing"], "", [-ln2], [(0, 7)])  # one token runs on
    assert np.isnan(bits[0]) and bits[1] == pytest.approx(1) and counts.tolist() == [0, 1]
    with pytest.raises(ValueError, match=r"token 1 has offsets \(3, 3\)"):
        words_from_token_logprobs(["Hi", "there"], " ", [-1.0, -1.0], [(0, 2), (3, 3)])
    with pytest.raises(ValueError, match="token 0 has log-prob 0.5"):
        words_from_token_logprobs(["Hi"], " ", [0.5], [(0, 2)])
    with pytest.raises(ValueError, match="2 log-probs for 1 token offsets"):
        words_from_token_logprobs(["Hi"], " ", [-1.0, -1.0], [(0, 2)])
