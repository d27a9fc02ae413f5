import numpy as np
import pytest
import torch

from genprune_nb.config import get_preset
from genprune_nb.model.gpt import GPT
from genprune_nb.model.features import sentence_features
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
