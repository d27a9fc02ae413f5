"""Every evaluation encodes with the checkpoint's tokenizer: a bytes model (ids = UTF-8 bytes, EOT 256, 320 rows) is
scored on the bytes of each text, by hand, and one evaluator serves models of either tokenizer."""
import ast
import dataclasses
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from genprune_nb.alignment import behavior
from genprune_nb.alignment.reading_times import natural_stories, story_words
from genprune_nb.alignment.surprisal import tokenize_words, word_surprisal_and_tokens
from genprune_nb.config import get_preset
from genprune_nb.evals import Request, Settings, all_benchmarks, blimp, hellaswag, mmlu, prepare, score
from genprune_nb.evals.lmeval import GenpruneLM, split_pair
from genprune_nb.evals.scorer import per_tokenizer
from genprune_nb.model.gpt import GPT
from genprune_nb.model.lm import model_tokenizer, next_token_logprobs
from genprune_nb.report.behavior import token_surprisal_table
from genprune_nb.tokenizer import TokenizerError, get_tokenizer

BYTE_EOT = 256
# smoke-shaped, with a block long enough for a HellaSwag ending in bytes (the scorer refuses a longer continuation)
SHAPE = dataclasses.replace(get_preset("smoke").model, block_size=512)
NOT_HERE = {"val_loss"}  # reads the preset's token shards: tokenizer-checked by the data loader (test_tokenizer_choice)


@pytest.fixture(scope="module")
def byte_model():
    return GPT(dataclasses.replace(SHAPE, tokenizer="bytes", vocab_size=320), seed=0).eval()


@pytest.fixture(scope="module")
def gpt2_model():
    return GPT(SHAPE, seed=1).eval()


def by_hand(model, context: list[int], continuation: list[int]) -> float:
    """Summed log-prob of ``continuation`` after ``context``: one forward over the whole sequence (it fits)."""
    ids = [*context, *continuation]
    assert len(ids) <= model.config.block_size + 1
    return next_token_logprobs(model, torch.tensor([ids]))[0, -len(continuation):].sum().item()


def hand_pick(values):
    return max(range(len(values)), key=lambda i: (values[i], -i))


def test_model_tokenizer_and_requests_in_bytes(byte_model, gpt2_model):
    assert model_tokenizer(byte_model).name == "bytes" and model_tokenizer(gpt2_model).name == "gpt2"
    assert Request.from_text("Hi", "é!", tokenizer="bytes") == Request((72, 105), (32, 195, 169, 33))
    assert Request.sentence("Hi.", tokenizer=get_tokenizer("bytes")) == Request((BYTE_EOT,), (72, 105, 46))
    assert Request.sentence("Hi.", sep=" ", tokenizer="bytes").continuation == (32, 72, 105, 46)
    assert split_pair("", "Hi", "bytes") == Request((BYTE_EOT,), (72, 105))
    assert split_pair("Q: ", "A", "bytes") == Request((81, 58), (32, 65))


def test_an_id_outside_the_model_vocabulary_is_refused(byte_model):
    gpt2_request = Request.from_text("The cat", "sat.")  # GPT-2 ids: far above a 320-row embedding
    with pytest.raises(TokenizerError, match=r"request 1 of group 0 holds token id \d+, outside the model's "
                                             r"vocabulary \(vocab_size 320\)"):
        score(byte_model, [[Request((1,), (2,)), gpt2_request]])
    with pytest.raises(TokenizerError, match="token id 320,"):
        score(byte_model, [[Request((BYTE_EOT,), (5, 320))]])
    with pytest.raises(TokenizerError, match="token id -1,"):
        score(byte_model, [[Request((-1,), (5,))]])
    (s,), = score(byte_model, [[Request((BYTE_EOT,), (5, 319))]])  # the last padded row is still an id it can read
    assert math.isfinite(s.logprob)


def test_padding_is_a_valid_id_and_changes_nothing(byte_model):
    short, long = Request.from_text("A", "b", tokenizer="bytes"), Request.from_text("A long context", "and more",
                                                                                    tokenizer="bytes")
    (a, b), = score(byte_model, [[short, long]])  # the short one is padded in the batch
    assert a.logprob == pytest.approx(by_hand(byte_model, [65], [32, 98]), abs=1e-5)
    assert b.logprob == pytest.approx(by_hand(byte_model, list(b"A long context"), list(b" and more")), abs=1e-5)


@pytest.mark.parametrize("name", sorted(set(all_benchmarks()) - NOT_HERE))
def test_every_benchmark_scores_a_bytes_model(byte_model, name):
    sizes = {"limit": 2, "stories": (1,), "max_words": 40, "n_sentences": 40}
    rows = prepare(name, Settings(sizes, options={"n_boot": 10}))(byte_model)
    assert rows and all(math.isfinite(r["value"]) for r in rows if r["metric"] != "brainscore")


def hellaswag_by_hand(model, item, tokenizer):
    tok = get_tokenizer(tokenizer)
    context = tok.encode(item.ctx)
    sums = [by_hand(model, context, tok.encode(" " + e)) for e in item.endings]
    means = [s / len(tok.encode(" " + e)) for s, e in zip(sums, item.endings)]
    return {"acc": float(hand_pick(sums) == item.label), "acc_norm": float(hand_pick(means) == item.label)}, sums


def test_hellaswag_on_bytes_by_hand(byte_model):
    item = hellaswag.load(limit=1)[0]
    expected, sums = hellaswag_by_hand(byte_model, item, "bytes")
    question = hellaswag.question(item, "authors", "bytes")
    assert question.requests[0] == Request(tuple(item.ctx.encode()), tuple((" " + item.endings[0]).encode()))
    scores, = score(byte_model, [question.requests])
    assert [s.logprob for s in scores] == pytest.approx(sums, abs=1e-4)
    assert [s.n_tokens for s in scores] == [len((" " + e).encode()) for e in item.endings]  # bytes, space included
    rows = prepare("hellaswag", Settings({"limit": 1}))(byte_model)
    assert {r["metric"]: r["value"] for r in rows} == expected


def test_mmlu_cloze_on_bytes_by_hand(byte_model):
    (subject, selection), = mmlu.select(limit=1).items()
    item = selection.items[0]
    context = list(f"Question: {item.question}\n\nAnswer:".encode())
    sums = [by_hand(byte_model, context, list((" " + c).encode())) for c in item.choices]
    means = [s / len((" " + c).encode()) for s, c in zip(sums, item.choices)]
    scores, = score(byte_model, [mmlu.question(item, "cloze", tokenizer="bytes").requests])
    assert [s.logprob for s in scores] == pytest.approx(sums, abs=1e-4)
    rows = prepare("mmlu", Settings({"limit": 1}))(byte_model)
    overall = {r["metric"]: r["value"] for r in rows if "subject" not in r}
    assert overall == {"acc": float(hand_pick(sums) == item.answer), "acc_norm": float(hand_pick(means) == item.answer)}


@pytest.mark.parametrize("task, convention", [("blimp", blimp.BABYLM), ("blimp_lmeval", blimp.LMEVAL)])
def test_blimp_on_bytes_by_hand(byte_model, task, convention):
    by_paradigm = blimp.pairs(limit=1)  # round robin: the first pair of the first paradigm
    (pair,), = by_paradigm.values()
    good, bad = (by_hand(byte_model, [BYTE_EOT], list((convention.separator + s).encode()))
                 for s in (pair.good, pair.bad))
    (g, b), = score(byte_model, blimp.requests(by_paradigm, convention, "bytes"))
    assert (g.logprob, b.logprob) == pytest.approx((good, bad), abs=1e-4)
    rows = blimp.evaluate(byte_model, by_paradigm, convention)  # requests built here, with the model's tokenizer
    assert rows[0]["value"] == float(convention.right(good, bad))
    if task == "blimp":
        assert prepare(task, Settings({"limit": 1}))(byte_model)[0]["value"] == rows[0]["value"]


def test_one_evaluator_scores_models_of_either_tokenizer(byte_model, gpt2_model, monkeypatch):
    items = hellaswag.load(limit=3)
    evaluator = prepare("hellaswag", Settings({"limit": 3}))  # data read once
    scored = []

    def recording_score(model, groups, **kwargs):
        scored.append(groups)
        return score(model, groups, **kwargs)

    monkeypatch.setattr(hellaswag, "score", recording_score)
    for model, tokenizer in [(gpt2_model, "gpt2"), (byte_model, "bytes"), (gpt2_model, "gpt2")]:
        hand = [hellaswag_by_hand(model, item, tokenizer)[0] for item in items]
        expected = {m: sum(h[m] for h in hand) / len(hand) for m in ("acc", "acc_norm")}
        assert {r["metric"]: r["value"] for r in evaluator(model)} == pytest.approx(expected)
        tok = get_tokenizer(tokenizer)
        assert [r.continuation for r in scored[-1][0]] == [tuple(tok.encode(" " + e)) for e in items[0].endings]
        assert scored[-1][2][1].context == tuple(tok.encode(items[2].ctx))


def test_per_tokenizer_builds_once_per_tokenizer(byte_model, gpt2_model):
    built = []

    def build(tokenizer):
        built.append(tokenizer.name)
        return tokenizer.encode("é")

    encoded = per_tokenizer(build)
    assert encoded(byte_model) == [195, 169] and encoded(gpt2_model) == get_tokenizer("gpt2").encode("é")
    assert encoded(byte_model) is encoded(byte_model)
    assert built == ["bytes", "gpt2"]


def test_word_surprisal_of_a_bytes_model_is_the_sum_of_its_bytes(byte_model):
    words, text = ["The", "café", "sat."], "The café sat."
    ids, owner = tokenize_words(words, " ", "bytes")
    assert ids == list(text.encode())
    counts = [len(w.encode()) + (i > 0) for i, w in enumerate(words)]  # the separator's byte belongs to the word
    assert owner.tolist() == [i for i, n in enumerate(counts) for _ in range(n)]
    bits = -next_token_logprobs(byte_model, torch.tensor([[BYTE_EOT, *ids]]))[0].double().numpy() / math.log(2)
    expected = [bits[a:b].sum() for a, b in zip(np.cumsum([0, *counts[:-1]]), np.cumsum(counts))]
    surprisal, n_tokens = word_surprisal_and_tokens(byte_model, words)
    np.testing.assert_allclose(surprisal, expected, rtol=1e-5)
    assert n_tokens.tolist() == counts == [3, 6, 5]


def test_reading_time_token_counts_are_the_models(byte_model, gpt2_model):
    rts = natural_stories([1], max_words=12)
    (_, words, seps), = story_words(rts)
    as_bytes = behavior.surprisal_for(byte_model, rts)["n_tokens"].values
    assert as_bytes.tolist() == [len((s + w).encode()) for s, w in zip(seps, words)]
    as_gpt2 = behavior.surprisal_for(gpt2_model, rts)["n_tokens"].values
    assert as_gpt2.sum() == len(get_tokenizer("gpt2").encode("".join(s + w for s, w in zip(seps, words))))
    assert as_gpt2.sum() < as_bytes.sum()
    table = token_surprisal_table(byte_model, rts, n_words=2)
    tokens = [ast.literal_eval(t) for t in table["token"]]  # one row per byte
    assert "".join(tokens) == seps[0] + words[0] + seps[1] + words[1] and len(tokens) == sum(as_bytes[:2])


def test_lmeval_adapter_on_a_bytes_model_equals_the_scorer(byte_model):
    lm = GenpruneLM(byte_model, device="cpu", batch_size=2)
    assert lm.tokenizer_name == "bytes"
    pairs = [("The quick brown fox", " jumps"), ("Answer:", " B"), ("", "Hello")]
    got = lm.loglikelihood([SimpleNamespace(args=p) for p in pairs])
    expected = [score(byte_model, [[split_pair(c, x, "bytes")]])[0][0].logprob for c, x in pairs]
    assert [ll for ll, _ in got] == pytest.approx(expected, abs=1e-5)
    assert got[0][0] == pytest.approx(by_hand(byte_model, list(b"The quick brown fox"), list(b" jumps")), abs=1e-5)
    assert got[2][0] == pytest.approx(by_hand(byte_model, [BYTE_EOT], list(b"Hello")), abs=1e-5)
    text = "A short text."
    rolling, = lm.loglikelihood_rolling([SimpleNamespace(args=(text,))])
    assert rolling == pytest.approx(by_hand(byte_model, [BYTE_EOT], list(text.encode())), abs=1e-5)


def test_lmeval_generation_never_picks_a_padding_row():
    """Real ids 0..256 get logit 0, padding rows 300 / 301 get +-h.w (one of them > 0): greedy must still pick id 0."""
    model = GPT(dataclasses.replace(SHAPE, tokenizer="bytes", vocab_size=320), seed=2).eval()
    with torch.no_grad():
        w = torch.randn(model.config.n_embd)
        model.lm_head.weight.zero_()
        model.lm_head.weight[300], model.lm_head.weight[301] = w, -w
    assert int(model(torch.tensor([list(b"Once")]))[0][0, -1].argmax()) in (300, 301)
    lm = GenpruneLM(model, device="cpu")
    out, = lm.generate_until([SimpleNamespace(args=("Once", {"until": [], "max_gen_toks": 3, "do_sample": False}))])
    assert out == "\x00\x00\x00"
