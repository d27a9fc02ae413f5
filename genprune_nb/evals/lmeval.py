"""lm-evaluation-harness adapter: this package's models as lm-eval's model ``genprune``, and offline task configs.

Importing this module (it needs the ``lmeval`` extra) registers :class:`GenpruneLM` under the name ``genprune``;
lm-eval has no plug-in discovery for models, so the command ``genprune-lm-eval`` (lm-eval's own CLI, after this
import) is the way to reach it from a shell::

    genprune-lm-eval --model genprune --model_args checkpoint=runs/tiny/train --tasks genprune_hellaswag \\
        --include_path lm_tasks --batch_size 32

and ``simple_evaluate(model="genprune", model_args="...")`` or ``simple_evaluate(model=GenpruneLM(...))`` from
Python. Log-likelihoods go through :func:`genprune_nb.evals.scorer.score`, so lm-eval's numbers are the package's;
text is encoded and decoded by the model's own tokenizer (``model.config.tokenizer``), EOT included.

:func:`write_task_configs` writes lm-eval task YAMLs for HellaSwag, MMLU and BLiMP that read the data catalog's
local files (no Hugging Face hub) with lm-eval's prompts: ``genprune_hellaswag``, ``genprune_mmlu`` (group;
0-shot, or ``--num_fewshot 5`` from dev) and ``genprune_blimp`` (group of ``genprune_blimp_<paradigm>``).
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import datasets
import torch
import yaml
from lm_eval.api.model import LM
from lm_eval.api.registry import register_model
from lm_eval.models.utils import handle_stop_sequences, normalize_gen_kwargs
from lm_eval.utils import get_rolling_token_windows, make_disjoint_window
from torch import nn

from ..data import catalog
from ..launch import default_device
from ..model.lm import autocast_context, model_device, model_tokenizer
from ..progress import tqdm
from ..study.layout import StudyLayout
from ..study.released import load_released
from ..tokenizer import Tokenizer, get_tokenizer
from . import blimp, hellaswag, mmlu
from .runner import checkpoint_ref
from .scorer import BATCH_SIZE, Request, score

MODEL_NAME = "genprune"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
MAX_GEN_TOKS = 256  # lm-eval's default for generate_until


def load_model(
    *,
    checkpoint: str | Path | None = None,
    preset: str | None = None,
    condition: str | None = None,
    seed: int = 0,
    step: int | None = None,
    run_root: str | Path | None = None,
    released: str | Path | None = None,
    device: str | torch.device = "cpu",
) -> nn.Module:
    """The GPT named by exactly one source, in eval mode on ``device``.

    ``checkpoint``: a checkpoint directory or a run directory (its latest); ``preset`` + ``condition`` (+ ``seed``,
    ``run_root``, ``step``; default the run's last kept step): an inner-loop run of a study; ``released``: a folder
    in the hub layout (or a released model's name / repo id, downloaded with the ``hub`` extra).
    """
    given = [name for name, value in (("checkpoint", checkpoint), ("preset", preset), ("released", released))
             if value is not None]
    if len(given) != 1:
        raise ValueError(f"give exactly one of checkpoint=, preset= (with condition=) or released=; "
                         f"got {given or 'none'}")
    if checkpoint is not None:
        return checkpoint_ref(checkpoint).load_model(device)
    if released is not None:
        return load_released(released, device)
    if condition is None:
        raise ValueError(f"preset={preset!r} needs condition= (an inner-loop condition of the study)")
    study = StudyLayout.of(preset, run_root)
    refs = [r for r in study.model_refs(conditions=[condition]) if r.seed == int(seed)]
    if step is not None:
        refs = [r for r in refs if r.step == int(step)]
    if not refs:
        kept = sorted({(r.seed, r.step) for r in study.model_refs(conditions=[condition])})
        raise FileNotFoundError(f"no checkpoint of condition {condition!r} seed {seed}"
                                f"{'' if step is None else f' step {step}'} under {study.root / 'inner'}; "
                                f"kept (seed, step): {kept or 'none'}")
    return refs[-1].load_model(device)


def split_pair(context: str, continuation: str, tokenizer: Tokenizer | str = "gpt2") -> Request:
    """lm-eval's token split of a (context, continuation) pair as a :class:`Request`, encoded by ``tokenizer``.

    Whitespace ending the context moves to the continuation; the continuation's tokens are those of the whole text
    after the context's tokens; an empty context becomes ``<|endoftext|>``.
    """
    tok = get_tokenizer(tokenizer)
    kept = context.rstrip()
    context, continuation = kept, context[len(kept):] + continuation
    if not context:
        return Request((tok.eot,), tuple(tok.encode(continuation)))
    head = tok.encode(context)
    return Request(tuple(head), tuple(tok.encode(context + continuation)[len(head):]))


def _int_or_auto(value: Any, name: str) -> int:
    if value in (None, "auto"):
        return BATCH_SIZE
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a positive integer or 'auto', got {value!r}") from None
    if number < 1:
        raise ValueError(f"{name} must be a positive integer or 'auto', got {value!r}")
    return number


@register_model(MODEL_NAME)
class GenpruneLM(LM):
    """lm-eval's view of a genprune GPT: ``loglikelihood`` through the package's scorer, ``loglikelihood_rolling``
    in lm-eval's disjoint windows, greedy ``generate_until``; text goes through the model's tokenizer
    (``text_tokenizer``).

    Model args: one source (``checkpoint=``; ``preset=, condition=, seed=, step=, run_root=``; ``released=``; or a
    loaded ``model=`` from Python), ``device`` (default: cuda if present), ``batch_size`` (sequences per forward;
    'auto' = the scorer's default), ``dtype`` (float32, bfloat16, float16: the weights'; 'auto' keeps them),
    ``max_gen_toks``.
    """

    def __init__(
        self,
        model: nn.Module | None = None,
        *,
        checkpoint: str | None = None,
        preset: str | None = None,
        condition: str | None = None,
        seed: int = 0,
        step: int | None = None,
        run_root: str | None = None,
        released: str | None = None,
        device: str | None = None,
        batch_size: int | str | None = None,
        max_batch_size: int | None = None,
        dtype: str = "auto",
        max_gen_toks: int = MAX_GEN_TOKS,
    ) -> None:
        super().__init__()
        device = torch.device(device) if device else default_device()
        if model is None:
            model = load_model(checkpoint=checkpoint, preset=preset, condition=condition, seed=seed, step=step,
                               run_root=run_root, released=released, device=device)
        elif any(v is not None for v in (checkpoint, preset, released)):
            raise ValueError("pass either a loaded model or checkpoint= / preset= / released=, not both")
        if dtype != "auto":
            if dtype not in DTYPES:
                raise ValueError(f"dtype must be 'auto' or one of {', '.join(DTYPES)}, got {dtype!r}")
            model = model.to(DTYPES[dtype])
        self.model = model.to(device).eval()
        self._device = model_device(self.model)
        self.batch_size = _int_or_auto(batch_size, "batch_size")
        self.max_gen_toks = int(max_gen_toks)
        self.block_size = self.model.config.block_size
        # not ``self.tokenizer``: lm-eval reads that attribute as a Hugging Face tokenizer
        self.text_tokenizer = model_tokenizer(self.model)

    @property
    def tokenizer_name(self) -> str:
        return self.text_tokenizer.name

    # ----------------------------------------------------------------------------------------- log-likelihoods

    def score_requests(self, requests: Sequence[Request], desc: str) -> list[tuple[float, bool]]:
        """(summed log-prob, is greedy) of every request; requests sharing a context share a group (a forward)."""
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, request in enumerate(requests):
            groups.setdefault(request.context, []).append(i)
        members = list(groups.values())
        scores = score(self.model, [[requests[i] for i in group] for group in members], batch_size=self.batch_size,
                       progress=self.rank == 0, desc=desc, greedy=True)
        out: list[tuple[float, bool]] = [(0.0, False)] * len(requests)
        for group, group_scores in zip(members, scores):
            for i, s in zip(group, group_scores):
                out[i] = (s.logprob, bool(s.greedy))
        return out

    def loglikelihood(self, requests: list, disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        pairs = [split_pair(*r.args, tokenizer=self.text_tokenizer) for r in requests]
        results = self.score_requests(pairs, "lm-eval loglikelihood")
        for r, result in zip(requests, results):
            self.cache_hook.add_partial("loglikelihood", r.args, result)
        return results

    def rolling_windows(self, text: str) -> list[Request]:
        """lm-eval's disjoint rolling windows of ``text`` (first one after ``<|endoftext|>``), each a Request.

        Windows predict ``block_size`` tokens and read ``block_size`` (the scorer's truncation rule, as HFLM).
        """
        tokens = self.text_tokenizer.encode(text)
        windows = get_rolling_token_windows(token_list=tokens, prefix_token=self.text_tokenizer.eot,
                                            max_seq_len=self.block_size, context_len=1)
        return [Request(tuple(ctx), tuple(cont)) for ctx, cont in map(make_disjoint_window, windows)]

    def loglikelihood_rolling(self, requests: list, disable_tqdm: bool = False) -> list[float]:
        windows = [self.rolling_windows(r.args[0]) for r in requests]
        flat = [w for ws in windows for w in ws]
        scores = score(self.model, [[w] for w in flat], batch_size=self.batch_size, progress=self.rank == 0,
                       desc="lm-eval rolling")
        out, start = [], 0
        for r, ws in zip(requests, windows):
            total = sum(s.logprob for (s,) in scores[start : start + len(ws)])
            start += len(ws)
            out.append(total)
            self.cache_hook.add_partial("loglikelihood_rolling", r.args, total)
        return out

    # ----------------------------------------------------------------------------------------- generation

    @torch.no_grad()
    def greedy(self, context: str, until: Sequence[str], max_gen_toks: int) -> str:
        """Greedy continuation of ``context``: at most ``max_gen_toks`` tokens, cut before the first stop string
        (and at ``<|endoftext|>``); the context keeps its last ``block_size - max_gen_toks`` tokens."""
        if max_gen_toks >= self.block_size:
            raise ValueError(f"max_gen_toks {max_gen_toks} leaves no context in the model's block of "
                             f"{self.block_size} tokens")
        tok = self.text_tokenizer
        ids = (tok.encode(context) or [tok.eot])[-(self.block_size - max_gen_toks):]
        x = torch.tensor([ids], dtype=torch.long, device=self._device)
        new: list[int] = []
        text = ""
        for _ in range(max_gen_toks):
            with autocast_context(self._device, "bfloat16"):
                logits, _ = self.model(x[:, -self.block_size:])
            token = int(logits[0, -1, : tok.n_vocab].argmax())  # never a padding row of the embedding
            if token == tok.eot:
                break
            new.append(token)
            x = torch.cat([x, torch.tensor([[token]], device=self._device)], dim=1)
            text = tok.decode(new)
            if any(stop and stop in text for stop in until):
                break
        for stop in until:
            if stop:
                text = text.split(stop)[0]
        return text

    def generate_until(self, requests: list, disable_tqdm: bool = False) -> list[str]:
        out = []
        for r in tqdm(requests, desc="lm-eval generate", disable=disable_tqdm or self.rank != 0):
            context, gen_kwargs = r.args
            kwargs = normalize_gen_kwargs(dict(gen_kwargs), self.max_gen_toks)
            if kwargs.get("do_sample") or kwargs.get("temperature", 0.0) > 0:
                raise ValueError(f"the genprune model generates greedily only; got gen_kwargs {gen_kwargs}")
            eos = self.text_tokenizer.decode([self.text_tokenizer.eot])
            until = handle_stop_sequences(kwargs.get("until"), eos=eos)
            text = self.greedy(context, until, int(kwargs["max_gen_toks"]))
            self.cache_hook.add_partial("generate_until", r.args, text)
            out.append(text)
        return out


def main(argv: Sequence[str] | None = None) -> None:
    """lm-eval's command line with the ``genprune`` model registered (the ``genprune-lm-eval`` command)."""
    import sys

    from lm_eval.__main__ import cli_evaluate

    if argv is not None:
        sys.argv = [sys.argv[0], *argv]
    cli_evaluate()


# --------------------------------------------------------------------------------------------- local task configs


def hellaswag_dataset(*, data_file: str, **_: Any) -> datasets.DatasetDict:
    """HellaSwag docs from a local jsonl, with the ``query`` / ``choices`` / ``gold`` fields of lm-eval's own
    ``process_docs`` (so its preprocessing, not the package's, makes the prompts)."""
    from lm_eval.tasks.hellaswag.utils import process_docs

    docs = [{"activity_label": item.activity_label, "ctx_a": item.ctx_a, "ctx_b": item.ctx_b, "ctx": item.ctx,
             "endings": list(item.endings), "label": item.label} for item in hellaswag.load(data_file)]
    return datasets.DatasetDict({"validation": process_docs(datasets.Dataset.from_list(docs))})


def mmlu_dataset(*, test_file: str, dev_file: str, mmlu_subject: str, **_: Any) -> datasets.DatasetDict:
    """One MMLU subject's test and dev questions from local CSVs, in lm-eval's fields (question, choices, answer)."""
    def rows(path: str) -> datasets.Dataset:
        items = mmlu.read_csv(path, mmlu_subject)
        return datasets.Dataset.from_list([{"question": i.question, "subject": i.subject,
                                            "choices": list(i.choices), "answer": i.answer} for i in items])
    return datasets.DatasetDict({"test": rows(test_file), "dev": rows(dev_file)})


def blimp_dataset(*, data_file: str, **_: Any) -> datasets.DatasetDict:
    """One BLiMP paradigm's pairs from a local jsonl."""
    pairs = blimp.read_paradigm(data_file)
    return datasets.DatasetDict({"test": datasets.Dataset.from_list(
        [{"sentence_good": p.good, "sentence_bad": p.bad, "UID": p.paradigm, "linguistics_term": p.phenomenon}
         for p in pairs])})


ACC = {"metric": "acc", "aggregation": "mean", "higher_is_better": True}
ACC_NORM = {"metric": "acc_norm", "aggregation": "mean", "higher_is_better": True}
def lm_eval_template(path: str) -> dict[str, Any]:
    """A task template shipped with lm-eval (``path`` under ``lm_eval/tasks``), so the prompts are its own."""
    import lm_eval.tasks

    with open(Path(lm_eval.tasks.__file__).parent / path, encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def _write_task(folder: Path, config: dict[str, Any], loader: str) -> str:
    """One task YAML whose data come from ``loader`` (a function of this module, lm-eval's ``custom_dataset``)."""
    text = yaml.safe_dump(config, sort_keys=False, allow_unicode=True, width=1000)
    (folder / f"{config['task']}.yaml").write_text(f"{text}custom_dataset: !function {__name__}.{loader}\n",
                                                   encoding="utf-8")
    return config["task"]


def _write_group(folder: Path, group: str, tasks: list[str], weight_by_size: bool) -> str:
    config = {"group": group, "task": tasks, "aggregate_metric_list": [
        {"metric": "acc", "aggregation": "mean", "weight_by_size": weight_by_size}], "metadata": {"version": 1.0}}
    (folder / f"{group}.yaml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return group


def _pick(available: Iterable[str], wanted: Sequence[str] | None, what: str) -> list[str]:
    available = list(available)
    if wanted is None:
        return available
    unknown = [w for w in wanted if w not in available]
    if unknown:
        raise ValueError(f"unknown {what} {unknown}; choose from {', '.join(available)}")
    return list(wanted)


def write_task_configs(
    out_dir: str | Path,
    benchmarks: Sequence[str] = ("hellaswag", "mmlu", "blimp"),
    *,
    subjects: Sequence[str] | None = None,
    paradigms: Sequence[str] | None = None,
    hellaswag_file: str | Path | None = None,
    mmlu_root: str | Path | None = None,
    blimp_root: str | Path | None = None,
) -> list[str]:
    """Write lm-eval task YAMLs reading the local data files; return the task / group names to pass to lm-eval.

    The prompts are lm-eval's: HellaSwag's preprocessed query and endings (``acc``, ``acc_norm`` per character),
    MMLU's listed options answered by letter after the subject's description (``--num_fewshot 5``: the first five
    dev questions), BLiMP's two sentences scored after ``<|endoftext|>`` with a leading space. ``subjects`` /
    ``paradigms`` restrict MMLU / BLiMP (default: all); the files default to the data catalog's.
    Use the folder as lm-eval's ``--include_path`` (or ``TaskManager(include_path=...)``).
    """
    unknown = sorted(set(benchmarks) - {"hellaswag", "mmlu", "blimp"})
    if unknown:
        raise ValueError(f"no lm-eval task configs for {unknown}; choose from hellaswag, mmlu, blimp")
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    common = {"output_type": "multiple_choice", "metadata": {"version": 1.0}}
    if "hellaswag" in benchmarks:
        file = Path(hellaswag_file) if hellaswag_file else catalog.locate("hellaswag", "hellaswag_val.jsonl")
        names.append(_write_task(folder, {
            "task": "genprune_hellaswag", "dataset_kwargs": {"data_file": os.fspath(file.resolve())},
            "validation_split": "validation", "doc_to_text": "{{query}}", "doc_to_target": "{{label}}",
            "doc_to_choice": "choices", "metric_list": [ACC, ACC_NORM], **common}, "hellaswag_dataset"))
    if "mmlu" in benchmarks:
        root = Path(mmlu_root) if mmlu_root else catalog.locate("mmlu")
        files = {p.name[: -len("_test.csv")]: p for p in sorted((root / "test").glob("*_test.csv"))}
        if not files:
            raise FileNotFoundError(f"no MMLU files {root}/test/<subject>_test.csv")
        tasks, mmlu_template = [], lm_eval_template("mmlu/default/_default_template_yaml")
        for subject in _pick(files, subjects, "MMLU subjects"):
            dev = root / "dev" / f"{subject}_dev.csv"
            if not dev.is_file():
                raise FileNotFoundError(f"MMLU subject {subject!r} has no dev file {dev}")
            tasks.append(_write_task(folder, {
                "task": f"genprune_mmlu_{subject}", "task_alias": subject,
                "dataset_kwargs": {"test_file": os.fspath(files[subject].resolve()),
                                   "dev_file": os.fspath(dev.resolve()), "mmlu_subject": subject},
                "test_split": "test", "fewshot_split": "dev", "fewshot_config": {"sampler": "first_n"},
                "description": f"The following are multiple choice questions (with answers) about "
                               f"{subject.replace('_', ' ')}.\n\n",
                "doc_to_text": mmlu_template["doc_to_text"], "doc_to_choice": mmlu_template["doc_to_choice"],
                "doc_to_target": mmlu_template["doc_to_target"],
                "metric_list": [ACC], **common}, "mmlu_dataset"))
        names.append(_write_group(folder, "genprune_mmlu", tasks, weight_by_size=True))
    if "blimp" in benchmarks:
        files = {p.stem: p for p in blimp.paradigm_files(blimp_root)}
        template = lm_eval_template("blimp/_template_yaml")
        tasks = [_write_task(folder, {
            "task": f"genprune_blimp_{paradigm}", "task_alias": paradigm,
            "dataset_kwargs": {"data_file": os.fspath(files[paradigm].resolve())}, "test_split": "test",
            **{k: template[k] for k in ("doc_to_text", "doc_to_target", "doc_to_choice", "num_fewshot")},
            "metric_list": [ACC], **common}, "blimp_dataset")
            for paradigm in _pick(files, paradigms, "BLiMP paradigms")]
        names.append(_write_group(folder, "genprune_blimp", tasks, weight_by_size=False))
    return names
