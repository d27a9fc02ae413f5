"""Scoring only what is read: items/s of three ways to score the same HellaSwag and MMLU 5-shot items.

    python bench/scoring_reads.py --preset tiny --limit 200 --threads 2          # random init, CPU
    python bench/scoring_reads.py --checkpoint runs/tiny/inner/.../step_X --limit 200   # a trained model

(a) ``authors``: the authors' HellaSwag loop, one forward per item with its 4 sequences as a batch of 4 (right
    padded), full logits, log_softmax over the vocabulary at every position, then the ending's tokens gathered;
(b) ``old``: the package's previous scorer: separate sequences, batches of ``--batch-size`` requests, the head at
    every position (the scorer on the model's plain ``forward``);
(c) ``new``: the package's scorer: the head only where a continuation token is predicted, and an item's context
    once (one packed sequence per item, tree attention mask).

Every way reads the same windows (the last block_size + 1 tokens of each request, lm-eval's rule). Each is timed
after an untimed warm-up; the per-item choices (acc on the summed log-prob; HellaSwag acc_norm on the per-token mean)
must be identical. Then a FLOP estimate of the same ratios from the token counts, for this model and for gpt2-124m
shapes (its windows of 1,024 tokens): body (12 C^2 weights per layer and token, 4 n_layer C T attention per token
of a sequence of T) plus head (2 V C per position it meets); padding counted only for (a).
"""
from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from genprune_nb.config import ModelConfig, get_preset, override  # noqa: E402
from genprune_nb.evals import hellaswag, mmlu  # noqa: E402
from genprune_nb.evals.multiple_choice import Question, choose  # noqa: E402
from genprune_nb.evals.runner import checkpoint_ref  # noqa: E402
from genprune_nb.evals.scorer import BATCH_SIZE, Score, packs, score, window  # noqa: E402
from genprune_nb.launch import default_device  # noqa: E402
from genprune_nb.model.gpt import GPT, forward_flops_per_token, matmul_weights  # noqa: E402
from genprune_nb.model.lm import autocast_context  # noqa: E402


class FullLogits(nn.Module):
    """The model behind its plain ``forward`` only: the scorer then reads full logits of one sequence per request."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model, self.config = model, model.config

    def forward(self, idx: torch.Tensor):
        return self.model(idx)


@torch.no_grad()
def authors_loop(model: nn.Module, questions: Sequence[Question]) -> list[list[tuple[float, int]]]:
    """(summed log-prob, tokens) of every choice, one item per forward as the authors' HellaSwag script does."""
    device, block = next(model.parameters()).device, model.config.block_size
    out = []
    for q in questions:
        seqs = [window(r, block) for r in q.requests]
        width = max(len(s) for s in seqs)
        tokens = torch.zeros((len(seqs), width), dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.bool)  # the continuation's tokens
        for i, (s, r) in enumerate(zip(seqs, q.requests)):
            tokens[i, : len(s)] = torch.tensor(s)
            mask[i, len(s) - len(r.continuation) : len(s)] = True
        tokens, mask = tokens.to(device), mask.to(device)
        with autocast_context(device, "bfloat16"):
            logits, _ = model(tokens[:, :-1])
        logp = torch.log_softmax(logits.float(), dim=-1)
        picked = logp.gather(-1, tokens[:, 1:, None])[..., 0] * mask[:, 1:]
        out.append([(float(v), int(n)) for v, n in zip(picked.sum(1).cpu(), mask.sum(1).cpu())])
    return out


def choices(values: list[list[tuple[float, int]]], questions: Sequence[Question], norms: Sequence[str]) -> list:
    """Per item, the chosen index under each normalisation."""
    return [tuple(choose([Score(v, n) for v, n in item], norm, q.chars) for norm in norms)
            for item, q in zip(values, questions)]


def timed(fn: Callable[[], list], device: torch.device, repeats: int) -> tuple[list, float]:
    """fn's result and its best wall time over ``repeats`` runs (after one untimed warm-up run on a few items)."""
    best, result = float("inf"), None
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        result = fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return result, best


def flops(cfg: ModelConfig, questions: Sequence[Question]) -> dict[str, float]:
    """Forward FLOPs of scoring ``questions`` each way (see the module), windows of ``cfg.block_size``."""
    head = 2.0 * cfg.vocab_size * cfg.n_embd
    body = 2.0 * matmul_weights(cfg) - head

    def sequence(length: int) -> float:  # every position meets the head
        return length * forward_flops_per_token(cfg, length)

    total = {"authors": 0.0, "old": 0.0, "new": 0.0}
    for q in questions:
        windows = [window(r, cfg.block_size) for r in q.requests]
        scored = [len(r.continuation) for r in q.requests]
        width = max(len(w) for w in windows) - 1
        total["authors"] += len(windows) * sequence(width)
        total["old"] += sum(sequence(len(w) - 1) for w in windows)
        for p in packs(windows, scored, cfg.n_embd):
            T, reads = len(p.inputs), sum(s.stop - s.start for s in p.spans)
            total["new"] += T * body + 4.0 * cfg.n_layer * cfg.n_embd * T * T + head * reads
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="tiny", help="model shape of a random init (ignored with --checkpoint)")
    ap.add_argument("--set", action="append", default=[], help="config override section.field=value")
    ap.add_argument("--checkpoint", default=None, help="a trained model's checkpoint (or run) directory")
    ap.add_argument("--limit", type=int, default=100, help="items of each benchmark")
    ap.add_argument("--shots", type=int, default=5, help="MMLU worked examples (letters format)")
    ap.add_argument("--batch-size", type=int, default=BATCH_SIZE, help="requests per forward of (b) and (c)")
    ap.add_argument("--repeats", type=int, default=1, help="timed runs of each way (the best counts)")
    ap.add_argument("--device", default=None)
    ap.add_argument("--threads", type=int, default=None, help="CPU threads (torch.set_num_threads)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device) if args.device else default_device()
    if args.checkpoint:
        model = checkpoint_ref(args.checkpoint).load_model(device)
        source = f"checkpoint {args.checkpoint}"
    else:
        preset = override(get_preset(args.preset), args.set)
        model, source = GPT(preset.model, seed=0).to(device).eval(), f"preset {preset.name}, random init"
    cfg = model.config

    def items(tokenizer: str) -> dict[str, list[Question]]:
        hs = [hellaswag.question(item, "authors", tokenizer) for item in hellaswag.load(limit=args.limit)]
        mm = [q for qs in mmlu.questions("letters", args.shots, args.limit, tokenizer=tokenizer).values() for q in qs]
        return {"hellaswag": hs, f"mmlu {args.shots}-shot": mm}

    benchmarks = items(cfg.tokenizer)
    name = (torch.cuda.get_device_name(device) if device.type == "cuda"
            else f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads")
    print(f"{source}: L={cfg.n_layer} C={cfg.n_embd} V={cfg.vocab_size} block {cfg.block_size}; torch "
          f"{torch.__version__}, {name}; batch {args.batch_size} requests for (b) and (c)")
    ways = {
        "authors": lambda qs: authors_loop(model, qs),
        "old": lambda qs: [[(s.logprob, s.n_tokens) for s in g]
                           for g in score(FullLogits(model), [q.requests for q in qs], batch_size=args.batch_size)],
        "new": lambda qs: [[(s.logprob, s.n_tokens) for s in g]
                           for g in score(model, [q.requests for q in qs], batch_size=args.batch_size)],
    }
    reference = items("gpt2") if cfg.tokenizer != "gpt2" else benchmarks
    gpt2 = get_preset("gpt2-124m").model
    for bench, qs in benchmarks.items():
        norms = ("none", "token") if bench == "hellaswag" else ("none",)
        tokens = sum(len(window(r, cfg.block_size)) - 1 for q in qs for r in q.requests)
        print(f"\n{bench}: {len(qs)} items, {tokens:,} input tokens in their windows")
        rates, picked = {}, {}
        for way, fn in ways.items():
            fn(qs[:2])  # warm-up
            values, dt = timed(lambda: fn(qs), device, args.repeats)
            rates[way], picked[way] = len(qs) / dt, choices(values, qs, norms)
            print(f"  ({'abc'[list(ways).index(way)]}) {way:8s} {dt:8.2f} s  {rates[way]:8.1f} items/s")
        same = all(picked[w] == picked["authors"] for w in ways)
        print(f"  items/s new / authors {rates['new'] / rates['authors']:.2f}x, new / old "
              f"{rates['new'] / rates['old']:.2f}x, old / authors {rates['old'] / rates['authors']:.2f}x; "
              f"per-item choices ({', '.join(norms)}) identical across the three ways: {same}")
        if not same:
            differ = sum(len({picked[w][i] for w in ways}) > 1 for i in range(len(qs)))
            print(f"  WARNING: {differ} of {len(qs)} items chose differently")
        for label, shape, questions in (("this model", cfg, qs), ("gpt2-124m", gpt2, reference[bench])):
            f = flops(shape, questions)
            print(f"  FLOPs per item, {label} shapes: authors {f['authors'] / len(qs):.3g}, old "
                  f"{f['old'] / len(qs):.3g}, new {f['new'] / len(qs):.3g}; authors / new "
                  f"{f['authors'] / f['new']:.2f}x, old / new {f['old'] / f['new']:.2f}x")


if __name__ == "__main__":
    main()
