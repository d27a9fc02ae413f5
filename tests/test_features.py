import numpy as np
import pytest
import torch

from genprune_nb.config import get_preset
from genprune_nb.model.gpt import GPT
from genprune_nb.model.features import layer_states, sentence_features, token_features
from genprune_nb.tokenizer import EOT, encode

SENTENCES = ["The cat sat.", "A much longer sentence about dogs and their owners in the park.", "Hi", "Rain fell."]


def _hidden(model, ids):
    with torch.no_grad():
        return model(torch.tensor([ids]), return_hidden=True)[2]


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return GPT(get_preset("smoke").model).eval()


def test_last_token_features_equal_one_sentence_at_a_time(model):
    feats = sentence_features(model, SENTENCES, batch_size=3)  # padded batches
    C, L = model.config.n_embd, model.config.n_layer
    assert feats.dims == ("presentation", "neuroid") and feats.shape == (4, (L + 1) * C)
    assert list(feats["stimulus"].values) == SENTENCES
    np.testing.assert_array_equal(feats["layer"].values, np.repeat(np.arange(L + 1), C))
    np.testing.assert_array_equal(feats["unit"].values, np.tile(np.arange(C), L + 1))
    for i, s in enumerate(SENTENCES):
        hidden = _hidden(model, [EOT, *encode(s)])
        for layer in range(L + 1):
            np.testing.assert_allclose(feats.values[i, feats["layer"].values == layer], hidden[layer][0, -1].numpy(),
                                       rtol=1e-4, atol=1e-5)


def test_mean_pooling_and_layer_subset(model):
    feats = sentence_features(model, SENTENCES[:2], pooling="mean", layers=[2], prefix_eot=False, batch_size=2)
    assert feats.shape == (2, model.config.n_embd) and set(feats["layer"].values) == {2}
    hidden = _hidden(model, encode(SENTENCES[1]))
    np.testing.assert_allclose(feats.values[1], hidden[2][0].mean(0).numpy(), rtol=1e-4, atol=1e-5)
    with_eot = sentence_features(model, SENTENCES[:1], pooling="mean", layers=[1])
    hidden = _hidden(model, [EOT, *encode(SENTENCES[0])])
    np.testing.assert_allclose(with_eot.values[0], hidden[1][0, 1:].mean(0).numpy(), rtol=1e-4, atol=1e-5)


def test_bad_requests_are_refused(model):
    with pytest.raises(ValueError, match="pooling"):
        sentence_features(model, SENTENCES, pooling="max")
    with pytest.raises(ValueError, match=r"layers \[3\]"):
        sentence_features(model, SENTENCES, layers=[0, 3])
    with pytest.raises(ValueError, match="sentence 1 .* no tokens"):
        sentence_features(model, ["ok", ""])
    with pytest.raises(ValueError, match="block_size"):
        sentence_features(model, ["word " * 100])


def test_one_extractor_for_sentences_and_token_windows(model):
    """Pooled sentence vectors and unpooled token windows come from the same forward: the last token's pooled state
    is the unpooled state at that position, and the mean is the mean over the kept positions."""
    windows = torch.from_numpy(np.random.default_rng(1).integers(0, 50257, size=(3, 12)))
    every = layer_states(model, windows, [0, 2], batch_size=2)  # [n, T, L, C]
    assert every.shape == (3, 12, 2, model.config.n_embd) and every.dtype == np.float32
    last = layer_states(model, windows.tolist(), [0, 2], pooling="last", batch_size=2)
    np.testing.assert_array_equal(last, every[:, -1])
    mean = layer_states(model, windows.tolist(), [0, 2], pooling="mean", first=1, batch_size=2)
    np.testing.assert_allclose(mean, every[:, 1:].mean(1), rtol=1e-5, atol=1e-6)
    feats = token_features(model, windows, layers=[0, 2], batch_size=2)
    np.testing.assert_array_equal(feats.values, every.reshape(36, -1))
    with pytest.raises(ValueError, match=r"sequences of one length, got lengths \[2, 3\]"):
        layer_states(model, [[1, 2], [1, 2, 3]], [0])
    with pytest.raises(ValueError, match="pooling must be one of"):
        layer_states(model, windows, [0], pooling="max")


def test_token_ids_outside_the_vocabulary_are_refused(model):
    """An id the embedding cannot look up is named before the forward (not an IndexError or a CUDA assert)."""
    windows = torch.zeros(2, 8, dtype=torch.long)
    windows[1, 3] = model.config.vocab_size
    with pytest.raises(ValueError, match=f"token id {model.config.vocab_size} is outside .*vocab_size"):
        token_features(model, windows)
