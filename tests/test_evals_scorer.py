"""The log-likelihood engine on the real (smoke) GPT: the token split, batching with padding, truncation."""
import pytest
import torch

from genprune_nb.config import get_preset
from genprune_nb.evals import Request, score
from genprune_nb.model.gpt import GPT
from genprune_nb.model.lm import next_token_logprobs
from genprune_nb.tokenizer import EOT, encode


@pytest.fixture(scope="module")
def gpt():
    torch.manual_seed(0)
    return GPT(get_preset("smoke").model).eval()  # block_size 64


@pytest.mark.parametrize("context, continuation, sep", [
    ("Question: Who wrote it?\n\nAnswer:", "Paris", " "),  # the cloze boundary: ":" then " Paris"
    ("A man is sitting on a roof. he", "is ripping level tiles off.", " "),  # punctuation at the end of each
    ("He said", ", and left.", ""),  # a continuation starting with punctuation, no separator
    ("The price is $", "12.50!", ""),
])
def test_split_is_context_tokens_then_separator_plus_continuation(context, continuation, sep):
    req = Request.from_text(context, continuation, sep)
    assert req.context == tuple(encode(context))
    assert req.continuation == tuple(encode(sep + continuation))
    assert list(req.context + req.continuation) == encode(context + sep + continuation)


def test_split_leading_space_belongs_to_the_continuation():
    req = Request.from_text("Answer:", "Paris")
    assert req.continuation == tuple(encode(" Paris")) == (6342,)  # one token, space included
    assert Request.sentence("The cat.") == Request((EOT,), (464, 3797, 13))  # no leading space after EOT
    assert Request.sentence("The cat.", sep=" ") == Request((EOT,), tuple(encode(" The cat.")))  # lm-eval's
    with pytest.raises(ValueError, match="ends with whitespace"):
        Request.from_text("Answer: ", "Paris")
    with pytest.raises(ValueError, match="at least one context token"):
        Request((), (1,))


def test_score_sums_the_continuation_positions(gpt):
    req = Request.from_text("The quick brown fox", "jumps over the dog.")
    (s,), = score(gpt, [[req]])
    ids = torch.tensor([req.context + req.continuation])
    lp = next_token_logprobs(gpt, ids)[0]
    k = len(req.continuation)
    assert s.n_tokens == k
    assert s.logprob == pytest.approx(lp[-k:].sum().item(), abs=1e-5)


def test_batched_equals_unbatched_with_padding(gpt):
    texts = [("Once upon a time", ["there was a king.", "a cat", "in a land far, far away there lived"]),
             ("Hi", ["there"]),
             ("The weather today is", ["sunny.", "rainy and cold, with a chance of snow later.", "fine", "bad"]),
             ("1 2 3 4 5 6 7 8 9 10 11 12 13 14 15", ["16", "17 18"])]
    groups = [[Request.from_text(c, e) for e in ends] for c, ends in texts]
    one = score(gpt, groups, batch_size=1)
    for batch_size in (3, 64):
        many = score(gpt, groups, batch_size=batch_size)
        assert [[s.n_tokens for s in g] for g in many] == [[s.n_tokens for s in g] for g in one]
        for g_one, g_many in zip(one, many):
            for a, b in zip(g_one, g_many):
                assert b.logprob == pytest.approx(a.logprob, abs=1e-4)
    with pytest.raises(ValueError, match="batch_size"):
        score(gpt, groups, batch_size=0)


def test_left_truncation_keeps_block_size_tokens_of_context_for_every_scored_token(gpt):
    """lm-eval's HFLM rule: the last block_size + 1 tokens, the model reads all but the last (changed from keeping
    the last block_size tokens, which left the scored tokens one token of context short)."""
    long_context = tuple(range(1000, 1100))  # 100 tokens > block_size 64
    cont = (5, 6, 7)
    (s,), = score(gpt, [[Request(long_context, cont)]])
    (t,), = score(gpt, [[Request(long_context[-62:], cont)]])  # 62 + 3 = 65 = block_size + 1: fits whole
    assert s.logprob == pytest.approx(t.logprob, abs=1e-5) and s.n_tokens == 3
    # by hand: a direct forward of the 64 tokens before the last one, log_softmax, gather the continuation
    kept = [*long_context, *cont][-65:]
    with torch.no_grad():
        logits, _ = gpt(torch.tensor([kept[:-1]]))
    logp = torch.log_softmax(logits[0], dim=-1)
    by_hand = sum(logp[t, kept[t + 1]].item() for t in range(64 - 3, 64))
    assert s.logprob == pytest.approx(by_hand, abs=1e-4)
    # a request of exactly block_size + 1 tokens is scored whole: identical to the untruncated computation
    fits = Request(long_context[-61:], cont + (8,))
    (f,), = score(gpt, [[fits]])
    whole = torch.log_softmax(gpt(torch.tensor([list(fits.context + fits.continuation)[:-1]]))[0][0], -1)
    assert f.logprob == pytest.approx(sum(whole[t, (fits.context + fits.continuation)[t + 1]].item()
                                          for t in range(60, 64)), abs=1e-4)


def test_continuation_of_block_size_tokens_is_scored_after_one_context_token(gpt):
    cont = tuple(range(2000, 2064))  # exactly block_size 64
    (s,), = score(gpt, [[Request((1, 2, 3), cont)]])
    ids = torch.tensor([[3, *cont[:-1]]])  # the context's last token, then all but the final continuation token
    with torch.no_grad():
        logp = torch.log_softmax(gpt(ids)[0][0], dim=-1)
    assert s.n_tokens == 64
    assert s.logprob == pytest.approx(sum(logp[t, cont[t]].item() for t in range(64)), abs=1e-3)
    with pytest.raises(ValueError, match="continuation of 65 tokens exceeds the model's block size 64"):
        score(gpt, [[Request((1,), tuple(range(65)))]])
