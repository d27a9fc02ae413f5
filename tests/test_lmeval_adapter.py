"""The lm-evaluation-harness adapter: lm-eval, run on the local task configs, scores every item as the package's
native tasks do (same choices, per-choice log-likelihoods within 1e-4); rolling windows and greedy generation
against hand computations; the model args and the command line."""
import dataclasses
from types import SimpleNamespace

import numpy as np
import pytest
import torch

pytest.importorskip("lm_eval")

from lm_eval import simple_evaluate  # noqa: E402
from lm_eval.api.registry import get_model  # noqa: E402
from lm_eval.tasks import TaskManager  # noqa: E402

from genprune_nb.config import ModelConfig, get_preset  # noqa: E402
from genprune_nb.data import catalog  # noqa: E402
from genprune_nb.evals import blimp, hellaswag, mmlu  # noqa: E402
from genprune_nb.evals.lmeval import GenpruneLM, load_model, split_pair, write_task_configs  # noqa: E402
from genprune_nb.evals.multiple_choice import choose  # noqa: E402
from genprune_nb.evals.scorer import Request, score  # noqa: E402
from genprune_nb.model.gpt import GPT  # noqa: E402
from genprune_nb.model.lm import next_token_logprobs, target_logprobs  # noqa: E402
from genprune_nb.study.layout import StudyLayout  # noqa: E402
from genprune_nb.tokenizer import EOT, decode, encode  # noqa: E402
from genprune_nb.training.checkpoint import save_checkpoint  # noqa: E402

N_ITEMS = 4
SUBJECTS = ["astronomy", "virology"]
PARADIGMS = ["anaphor_gender_agreement", "wh_island"]
BLOCK = 2048  # longer than every request below: nothing is truncated
TOL = 1e-4


@pytest.fixture(scope="module")
def model():
    return GPT(ModelConfig(n_layer=2, n_head=2, n_embd=32, block_size=BLOCK), seed=0).eval()


@pytest.fixture(scope="module")
def task_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("lm_tasks")
    names = write_task_configs(folder, subjects=SUBJECTS, paradigms=PARADIGMS)
    assert names == ["genprune_hellaswag", "genprune_mmlu", "genprune_blimp"]
    return folder


def run_lm_eval(model, task_dir, tasks, shots=None):
    """lm-eval's samples by task, each list ordered by doc_id."""
    tasks_here = TaskManager(include_path=str(task_dir), include_defaults=False)  # only the written configs
    result = simple_evaluate(model=GenpruneLM(model, device="cpu", batch_size=16), tasks=tasks, limit=N_ITEMS,
                             num_fewshot=shots, log_samples=True, task_manager=tasks_here)
    return {task: sorted(samples, key=lambda s: s["doc_id"]) for task, samples in result["samples"].items()}


@pytest.fixture(scope="module")
def zero_shot(model, task_dir):
    return run_lm_eval(model, task_dir, ["genprune_hellaswag", "genprune_mmlu", "genprune_blimp"])


@pytest.fixture(scope="module")
def five_shot(model, task_dir):
    return run_lm_eval(model, task_dir, ["genprune_mmlu"], shots=5)


def compare(samples, requests, model, norm_chars=None):
    """(max |dlogL|, choices equal) between lm-eval's samples and the native requests of the same items."""
    assert len(samples) == len(requests) == N_ITEMS
    for group in requests:
        assert all(len(r) <= BLOCK for r in group)
    native = score(model, requests)
    worst, equal = 0.0, True
    for i, (sample, scores) in enumerate(zip(samples, native)):
        lls = [resp[0] for resp in sample["filtered_resps"]]
        assert len(lls) == len(scores)
        worst = max(worst, max(abs(a - s.logprob) for a, s in zip(lls, scores)))
        equal &= int(np.argmax(lls)) == choose(scores, "none")
        assert sample["acc"] == float(choose(scores, "none") == sample["target"])
        if norm_chars is not None:  # lm-eval's acc_norm divides by the choice's characters
            assert sample["acc_norm"] == float(choose(scores, "char", norm_chars[i]) == sample["target"])
    assert worst <= TOL
    assert equal
    return worst


def test_hellaswag_matches_the_native_lm_eval_style(model, zero_shot):
    questions = [hellaswag.question(item, "lm-eval") for item in hellaswag.load(limit=N_ITEMS)]
    samples = zero_shot["genprune_hellaswag"]
    assert [s["target"] for s in samples] == [q.gold for q in questions]
    worst = compare(samples, [q.requests for q in questions], model, [q.chars for q in questions])
    print(f"\nhellaswag: {N_ITEMS} items, max |dlogL| {worst:.2e}")


@pytest.mark.parametrize("shots", [0, 5])
def test_mmlu_matches_the_native_letters_format(model, zero_shot, five_shot, shots):
    root = catalog.locate("mmlu")
    for subject in SUBJECTS:
        items = mmlu.read_csv(root / "test" / f"{subject}_test.csv", subject)[:N_ITEMS]
        examples = mmlu.read_csv(root / "dev" / f"{subject}_dev.csv", subject)[:shots]
        questions = [mmlu.question(item, "letters", examples) for item in items]
        samples = (five_shot if shots else zero_shot)[f"genprune_mmlu_{subject}"]
        assert [s["target"] for s in samples] == [q.gold for q in questions]
        worst = compare(samples, [q.requests for q in questions], model)
        print(f"\nmmlu {shots}-shot {subject}: {N_ITEMS} items, max |dlogL| {worst:.2e}")


def test_blimp_matches_the_native_blimp_lmeval(model, zero_shot):
    for paradigm in PARADIGMS:
        pairs = blimp.read_paradigm(catalog.locate("blimp") / f"{paradigm}.jsonl", N_ITEMS)
        sep = blimp.LMEVAL.separator
        requests = [(Request.sentence(p.good, sep), Request.sentence(p.bad, sep)) for p in pairs]
        samples = zero_shot[f"genprune_blimp_{paradigm}"]
        assert all(s["target"] == 0 for s in samples)
        worst = compare(samples, requests, model)
        native = blimp.evaluate(model, {paradigm: pairs}, blimp.LMEVAL)[-1]  # the paradigm's row
        assert native["value"] == pytest.approx(np.mean([s["acc"] for s in samples]))
        print(f"\nblimp {paradigm}: {N_ITEMS} pairs, max |dlogL| {worst:.2e}")


def test_split_pair_follows_lm_eval():
    assert split_pair("", "The cat.") == Request((EOT,), tuple(encode("The cat.")))
    assert split_pair("Answer:", " A") == Request(tuple(encode("Answer:")), tuple(encode(" A")))
    assert split_pair("Answer: ", "A") == split_pair("Answer:", " A")  # trailing space moves to the continuation


def test_loglikelihood_and_is_greedy_by_hand():
    small = GPT(ModelConfig(n_layer=1, n_head=2, n_embd=16, block_size=32), seed=1).eval()
    lm = GenpruneLM(small, device="cpu", batch_size=2)
    context = encode("The quick brown fox")
    top = [*context]
    for _ in range(3):  # the model's own greedy continuation, by hand
        top.append(int(small(torch.tensor([top]))[0][0, -1].argmax()))
    chosen = Request(tuple(context), tuple(top[len(context):]))
    other = Request(tuple(context), (*top[len(context):-1], (top[-1] + 1) % 50257))
    (greedy, not_greedy), = score(small, [[chosen, other]], greedy=True)
    assert greedy.greedy is True and not_greedy.greedy is False
    lp = next_token_logprobs(small, torch.tensor([top]))[0]
    assert greedy.logprob == pytest.approx(lp[-3:].sum().item(), abs=1e-5)
    (ll, is_greedy), = lm.loglikelihood([SimpleNamespace(args=("The quick brown fox", " jumps"))])
    ids = encode("The quick brown fox jumps")
    assert ll == pytest.approx(next_token_logprobs(small, torch.tensor([ids]))[0][-1].item(), abs=1e-5)


def test_rolling_windows_score_every_token_once_with_lm_eval_context():
    small = GPT(ModelConfig(n_layer=1, n_head=2, n_embd=16, block_size=16), seed=2).eval()
    lm = GenpruneLM(small, device="cpu")
    text = "One two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen " * 2
    t = encode(text)
    window = small.config.block_size  # lm-eval's window: block_size predicted tokens, block_size read
    assert len(t) > 2 * window  # three windows, the last one short
    expected = 0.0
    for a in range(0, len(t), window):
        b = min(a + window, len(t))
        seq = [EOT, *t[:b]] if a == 0 else t[b - window - 1 : b]
        lp = target_logprobs(small, torch.tensor([seq[:-1]]), torch.tensor([seq[1:]]))[0]
        expected += lp[-(b - a):].sum().item()
    got, = lm.loglikelihood_rolling([SimpleNamespace(args=(text,))])
    assert got == pytest.approx(expected, abs=1e-4)
    short = "A short text."
    got, = lm.loglikelihood_rolling([SimpleNamespace(args=(short,))])
    (s,), = score(small, [[Request((EOT,), tuple(encode(short)))]])
    assert got == pytest.approx(s.logprob, abs=1e-5)


def test_generate_until_is_greedy_and_stops():
    small = GPT(ModelConfig(n_layer=1, n_head=2, n_embd=16, block_size=64), seed=3).eval()
    lm = GenpruneLM(small, device="cpu")
    context = "Once upon a time"
    ids = encode(context)
    for _ in range(6):  # greedy by hand
        ids.append(int(small(torch.tensor([ids]))[0][0, -1].argmax()))
    new = ids[len(encode(context)):]
    assert EOT not in new
    full = decode(new)

    def generate(**kwargs):
        return lm.generate_until([SimpleNamespace(args=(context, {"do_sample": False, **kwargs}))])[0]

    assert generate(until=[], max_gen_toks=6) == full
    assert generate(until=[], max_gen_toks=2) == decode(new[:2])
    stop = decode(new[3:5])
    assert generate(until=[stop], max_gen_toks=6) == full.split(stop)[0]
    with pytest.raises(ValueError, match="greedily"):
        generate(until=[], do_sample=True, temperature=1.0)


def test_model_args_load_checkpoints_studies_and_released(tmp_path, model):
    preset = dataclasses.replace(get_preset("smoke"), model=model.config)
    study = StudyLayout(tmp_path / "study")
    save_checkpoint(study.inner_run("Connectome", 1), 5, model=model, preset=preset, state={"tokens": 10})
    run = study.inner_run("Connectome", 1)
    weights = model.transformer.wte.weight
    for loaded in (load_model(checkpoint=run), load_model(preset="smoke", condition="Connectome", seed=1,
                                                          run_root=study.root)):
        assert torch.equal(loaded.transformer.wte.weight, weights)
    with pytest.raises(FileNotFoundError, match="seed 0"):
        load_model(preset="smoke", condition="Connectome", seed=0, run_root=study.root)
    with pytest.raises(ValueError, match="exactly one"):
        load_model(checkpoint=run, released=tmp_path)
    lm = get_model("genprune").create_from_arg_string(f"checkpoint={run},dtype=float32",
                                                      {"batch_size": "8", "device": "cpu"})
    assert isinstance(lm, GenpruneLM) and lm.batch_size == 8
    with pytest.raises(ValueError, match="batch_size"):
        GenpruneLM(model, batch_size="many")


@pytest.mark.slow  # lm-eval's command line indexes its ~10,000 built-in task files first
def test_command_line_runs_a_local_task(tmp_path, task_dir, model, capsys):
    from genprune_nb.evals.lmeval import main

    run = tmp_path / "run"
    save_checkpoint(run, 1, model=model, preset=dataclasses.replace(get_preset("smoke"), model=model.config))
    main(["--model", "genprune", "--model_args", f"checkpoint={run}", "--device", "cpu", "--tasks",
          f"genprune_blimp_{PARADIGMS[0]}", "--include_path", str(task_dir), "--limit", "2"])
    out = capsys.readouterr().out
    assert f"|{PARADIGMS[0]}|" in out and f"checkpoint': '{run}'" in out  # the results table, the model args
