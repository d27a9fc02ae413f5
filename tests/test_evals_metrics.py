"""Every benchmark metric against a hand computation, on a stub model whose next-token log-probs are known."""
import json
import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from genprune_nb.evals import Request, blimp, hellaswag, mmlu, run_task, score
from genprune_nb.evals.multiple_choice import Question, choose
from genprune_nb.evals.scorer import Score
from genprune_nb.tokenizer import EOT, encode

V = 50304


class BigramStub(nn.Module):
    """logit(prev -> next) = unigram[next] + bigram[prev][next], 0 elsewhere; so log P is known in closed form."""

    def __init__(self, unigram=None, bigram=None, block_size=64):
        super().__init__()
        self.config = SimpleNamespace(block_size=block_size, vocab_size=V, tokenizer="gpt2")  # what the scorer reads
        self.unigram = {encode(k)[0] if isinstance(k, str) else k: v for k, v in (unigram or {}).items()}
        self.bigram = {p: {encode(k)[0]: v for k, v in nxt.items()} for p, nxt in (bigram or {}).items()}
        self.anchor = nn.Parameter(torch.zeros(1))  # gives the stub a device

    def forward(self, idx, targets=None):
        B, T = idx.shape
        logits = torch.zeros(B, T, V)
        for tok, b in self.unigram.items():
            logits[..., tok] += b
        for prev, nxt in self.bigram.items():
            hit = (idx == prev).float()
            for tok, b in nxt.items():
                logits[..., tok] += b * hit
        return logits, None

    def logprob(self, prev: int, nxt: int) -> float:
        """log P(nxt | prev) by hand: logit - log(sum of exp over the vocabulary)."""
        row = dict(self.unigram)
        for tok, b in self.bigram.get(prev, {}).items():
            row[tok] = row.get(tok, 0.0) + b
        return row.get(nxt, 0.0) - math.log(V - len(row) + sum(math.exp(b) for b in row.values()))

    def sequence(self, context: list[int], continuation: list[int]) -> float:
        full = context + continuation
        return sum(self.logprob(full[i - 1], full[i]) for i in range(len(context), len(full)))


def hand_pick(values):
    return max(range(len(values)), key=lambda i: (values[i], -i))


def test_score_equals_hand_computation_and_counts_tokens():
    stub = BigramStub(unigram={" cat": 2.0}, bigram={464: {" cat": 3.0}})  # 464 = "The"
    req = Request.from_text("The", "cat sat.")
    assert req.continuation == tuple(encode(" cat sat."))
    (s,), = score(stub, [[req]])
    assert s.n_tokens == 3
    assert s.logprob == pytest.approx(stub.sequence([464], encode(" cat sat.")), abs=1e-4)
    assert s.mean == pytest.approx(s.logprob / 3)


def test_choose_normalisations_and_ties():
    scores = [Score(-6.0, 2), Score(-8.0, 4), Score(-9.0, 2)]
    assert choose(scores, "none") == 0
    assert choose(scores, "token") == 1  # -2 per token
    assert choose(scores, "char", chars=[2, 10, 30]) == 2  # -0.3 per character
    assert choose([Score(-1.0, 1), Score(-1.0, 1)], "none") == 0
    with pytest.raises(ValueError, match="positive length"):
        choose(scores, "char", chars=[1, 0, 1])
    with pytest.raises(ValueError, match="gold index 4"):
        Question((Request((1,), (2,)),), 4, (1,))


# ---- HellaSwag: summed, per-token and per-character choices disagree on purpose ----------------------------------
ENDINGS = ["runs.", "is ripping level tiles off.", "is using wrap.", "stands and lifts the weight over her head."]
HS_STUB = dict(unigram={**{w: 7.5 for w in (" ripping", " level", " tiles")},
                        **{w: 8.0 for w in (" stands", " lifts", " weight", " head")}})


@pytest.fixture
def hellaswag_file(tmp_path):
    path = tmp_path / "hs.jsonl"
    base = {"activity_label": "Roof shingle removal", "ctx_a": "A man is sitting on a roof.", "ctx_b": "he",
            "ctx": "A man is sitting on a roof. he", "endings": ENDINGS}
    path.write_text("".join(json.dumps({**base, "label": label}) + "\n" for label in (1, 3)))
    return path


def test_hellaswag_metrics_by_hand(hellaswag_file):
    stub = BigramStub(**HS_STUB)
    items = hellaswag.load(hellaswag_file)
    ctx = encode("A man is sitting on a roof. he")
    sums = [stub.sequence(ctx, encode(" " + e)) for e in ENDINGS]
    picks = {"none": hand_pick(sums),
             "token": hand_pick([s / len(encode(" " + e)) for s, e in zip(sums, ENDINGS)]),
             "char": hand_pick([s / len(e) for s, e in zip(sums, ENDINGS)])}
    assert picks == {"none": 0, "token": 1, "char": 3}  # the three conventions really differ here
    rows = hellaswag.evaluate(stub, [hellaswag.question(i, "authors") for i in items], "authors")
    assert rows == [{"metric": "acc", "value": 0.0, "n": 2}, {"metric": "acc_norm", "value": 0.5, "n": 2}]
    # lm-eval: a different context (label + ctx_a + capitalised ctx_b), per-character normalisation
    lm = [hellaswag.question(i, "lm-eval") for i in items]
    assert lm[0].requests[0].context == tuple(encode("Roof shingle removal: A man is sitting on a roof. He"))
    assert lm[0].chars == tuple(len(e) for e in ENDINGS)
    rows = hellaswag.evaluate(stub, lm, "lm-eval")
    assert rows == [{"metric": "acc", "value": 0.0, "n": 2}, {"metric": "acc_norm", "value": 0.5, "n": 2}]
    # the label-3 item is the one per-character normalisation gets right
    (one,) = hellaswag.evaluate(stub, lm[1:], "lm-eval")[1:]
    assert one["value"] == 1.0


def test_hellaswag_lmeval_preprocessing():
    item = hellaswag.Item("Home and Garden", "[header] How to x [title] Do y.", "you should", "",
                          ("[step] Go.",) * 4, 0)
    q = hellaswag.question(item, "lm-eval")
    assert q.requests[0].context == tuple(encode("Home and Garden: How to x. Do y. You should"))
    # a leading tag leaves a leading space, which lm-eval keeps: the continuation is "  Go." (4 characters counted)
    assert q.requests[0].continuation == tuple(encode("  Go.")) and q.chars == (4,) * 4


# ---- MMLU -------------------------------------------------------------------------------------------------------
def write_mmlu(root, split, subject, rows):
    (root / split).mkdir(parents=True, exist_ok=True)
    lines = ["question,choice0,choice1,choice2,choice3,answer"] + [",".join(map(str, r)) for r in rows]
    (root / split / f"{subject}_{split}.csv").write_text("\n".join(lines) + "\n")


@pytest.fixture
def mmlu_root(tmp_path):
    write_mmlu(tmp_path, "test", "alpha", [("Capital of France?", "Paris", "London", "Rome", "Berlin", 0)])
    write_mmlu(tmp_path, "test", "beta_gamma", [("Q1?", "red", "green", "blue", "Paris", 1),
                                                ("Q2?", "Paris", "green", "blue", "red", 2),
                                                ("Q3?", "red", "Paris", "blue", "green", 1)])
    for subject in ("alpha", "beta_gamma"):
        write_mmlu(tmp_path, "dev", subject, [("Two plus two?", "3", "4", "5", "6", 1)])
    return tmp_path


def test_mmlu_cloze_by_hand_item_weighted(mmlu_root):
    stub = BigramStub(unigram={" Paris": 4.0, " green": 1.0})
    by_subject = mmlu.questions("cloze", limit=None, root=mmlu_root)
    q = by_subject["alpha"][0]
    assert q.requests[1] == Request(tuple(encode("Question: Capital of France?\n\nAnswer:")), tuple(encode(" London")))
    rows = mmlu.evaluate(stub, by_subject, "cloze")
    # " Paris" wins everywhere it appears: alpha right; beta Q1 (gold green) wrong, Q2 wrong, Q3 right
    overall = {r["metric"]: r["value"] for r in rows if "subject" not in r}
    assert overall == {"acc": 0.5, "acc_norm": 0.5}  # 2 of 4 items (the subject mean would be 2/3)
    beta = [r for r in rows if r.get("subject") == "beta_gamma" and r["metric"] == "acc"]
    assert beta == [{"metric": "acc", "value": pytest.approx(1 / 3), "n": 3, "subject": "beta_gamma"}]


def test_mmlu_letters_prompt_and_shots(mmlu_root):
    stub = BigramStub(unigram={" B": 3.0})
    q = mmlu.questions("letters", shots=1, root=mmlu_root)["beta_gamma"][0]
    expected = ("The following are multiple choice questions (with answers) about beta gamma.\n\n"
                "Two plus two?\nA. 3\nB. 4\nC. 5\nD. 6\nAnswer: B\n\n"
                "Q1?\nA. red\nB. green\nC. blue\nD. Paris\nAnswer:")
    assert q.requests[2] == Request(tuple(encode(expected)), tuple(encode(" C")))
    rows = mmlu.evaluate(stub, mmlu.questions("letters", shots=0, root=mmlu_root), "letters")
    assert {r["metric"] for r in rows} == {"acc"}
    assert rows[0] == {"metric": "acc", "value": 0.5, "n": 4}  # " B" always: beta Q1 and Q3 right
    with pytest.raises(ValueError, match="1 dev questions, 5 shots"):
        mmlu.questions("letters", shots=5, root=mmlu_root)


# ---- BLiMP ------------------------------------------------------------------------------------------------------
def test_blimp_conditions_on_eot(tmp_path):
    rec = {"sentence_good": "The cat sleeps.", "sentence_bad": "Cat the sleeps.", "UID": "toy",
           "linguistics_term": "word_order"}
    (tmp_path / "toy.jsonl").write_text(json.dumps(rec) + "\n")
    (tmp_path / "other.jsonl").write_text(json.dumps({**rec, "UID": "other", "linguistics_term": "word_order",
                                                      "sentence_good": "Cat the sleeps.",
                                                      "sentence_bad": "The cat sleeps."}) + "\n")
    stub = BigramStub(bigram={EOT: {"The": 5.0}})  # only the document start favours "The"
    good, bad = encode("The cat sleeps."), encode("Cat the sleeps.")
    assert Request.sentence("The cat sleeps.") == Request((EOT,), tuple(good))
    assert stub.sequence([EOT], good) > stub.sequence([EOT], bad)
    assert stub.sequence(good[:1], good[1:]) == stub.sequence(bad[:1], bad[1:])  # without EOT: a tie (wrong)
    rows = blimp.evaluate(stub, blimp.pairs(root=tmp_path))
    assert rows[0] == {"metric": "acc", "value": 0.5, "n": 2}
    assert rows[1] == {"metric": "acc", "value": 0.5, "n": 2, "phenomenon": "word_order"}
    assert rows[2:] == [{"metric": "acc", "value": 0.0, "n": 1, "paradigm": "other", "phenomenon": "word_order"},
                        {"metric": "acc", "value": 1.0, "n": 1, "paradigm": "toy", "phenomenon": "word_order"}]


def test_blimp_overall_is_unweighted_mean_over_paradigms(tmp_path):
    def write(uid, term, goods):
        (tmp_path / f"{uid}.jsonl").write_text("".join(
            json.dumps({"sentence_good": g, "sentence_bad": b, "UID": uid, "linguistics_term": term}) + "\n"
            for g, b in goods))
    write("a", "x", [("The dog.", "Dog the.")])  # right
    write("b", "y", [("Dog the.", "The dog.")] * 3)  # wrong x3
    rows = blimp.evaluate(BigramStub(bigram={EOT: {"The": 5.0}}), blimp.pairs(root=tmp_path))
    assert rows[0] == {"metric": "acc", "value": 0.5, "n": 4}  # item-weighted would be 0.25


def test_blimp_lmeval_convention_spaces_the_sentence_and_counts_a_tie_right(tmp_path):
    """lm-eval scores " " + sentence after EOT and takes argmax (a tie goes to the good sentence); BabyLM scores the
    bare sentence and needs good > bad."""
    def write(uid, good, bad):
        (tmp_path / f"{uid}.jsonl").write_text(json.dumps({"sentence_good": good, "sentence_bad": bad, "UID": uid,
                                                           "linguistics_term": "t"}) + "\n")
    write("spaced", "The cat.", "cat The.")  # only " The" (with its space) is favoured after EOT
    write("tied", "A dog.", "dog A.")  # nothing favoured: the same three token log-probs, an exact tie
    stub = BigramStub(bigram={EOT: {" The": 5.0}})
    assert stub.sequence([EOT], encode(" The cat.")) > stub.sequence([EOT], encode(" cat The."))
    assert stub.sequence([EOT], encode("The cat.")) == stub.sequence([EOT], encode("cat The."))
    assert stub.sequence([EOT], encode(" A dog.")) == stub.sequence([EOT], encode(" dog A."))
    by_paradigm = blimp.pairs(root=tmp_path)
    lmeval = blimp.evaluate(stub, by_paradigm, blimp.LMEVAL)
    babylm = blimp.evaluate(stub, by_paradigm)  # the default, the paper's figures
    assert [(r.get("paradigm"), r["value"]) for r in lmeval] == [(None, 1.0), (None, 1.0), ("spaced", 1.0),
                                                                  ("tied", 1.0)]
    assert [(r.get("paradigm"), r["value"]) for r in babylm] == [(None, 0.0), (None, 0.0), ("spaced", 0.0),
                                                                  ("tied", 0.0)]
    assert [set(r) for r in lmeval] == [set(r) for r in babylm]  # the same row layout


def test_language_benchmarks_declare_their_limit_rule():
    from genprune_nb.evals import all_benchmarks

    language = {n: b for n, b in all_benchmarks().items() if n.startswith(("hellaswag", "mmlu", "blimp"))}
    assert {n: b.limit_rule for n, b in language.items()} == {
        "hellaswag": "round_robin", "hellaswag_lmeval": "per_subset", "mmlu": "round_robin",
        "mmlu_lmeval_0shot": "per_subset", "mmlu_lmeval_5shot": "per_subset", "blimp": "round_robin",
        "blimp_lmeval": "per_subset"}
    assert all("limit N =" in b.description for b in language.values())


def test_blimp_lmeval_task_limit_takes_the_first_pairs_of_every_paradigm(external_data_dir):
    stub = BigramStub(bigram={EOT: {" The": 5.0}})
    rows = run_task("blimp_lmeval", stub, limit=1)
    paradigms = [r for r in rows if "paradigm" in r]
    assert len(paradigms) == 67 and {r["n"] for r in paradigms} == {1} and rows[0]["n"] == 67
    assert sum(r["n"] for r in run_task("blimp", stub, limit=3) if "paradigm" in r) == 3  # round-robin: 3 in all


def test_run_task_registry_with_stub():
    with pytest.raises(ValueError, match="unknown benchmark 'hellaswog'"):
        run_task("hellaswog", BigramStub())
    with pytest.raises(ValueError, match="needs the checkpoints' preset"):
        run_task("val_loss", BigramStub())
