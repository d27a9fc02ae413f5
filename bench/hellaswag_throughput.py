"""HellaSwag scoring throughput (items/s) of a preset's model shape on this device, random init.

    python bench/hellaswag_throughput.py --preset tiny --limit 200            # CPU
    python bench/hellaswag_throughput.py --preset gpt2-124m --batch-size 256  # a GPU: the full 10,042 items, bf16

Times the package's real path (``hellaswag.evaluate``: the shared scorer on ``next_token_logprobs``) after one
untimed warm-up batch; reading and tokenizing the data is timed apart. Accuracy of a random init is chance.
"""
from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from genprune_nb.config import get_preset, override  # noqa: E402
from genprune_nb.evals import hellaswag  # noqa: E402
from genprune_nb.evals.scorer import BATCH_SIZE  # noqa: E402
from genprune_nb.launch import default_device  # noqa: E402
from genprune_nb.model.gpt import GPT  # noqa: E402


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--set", action="append", default=[], help="config override section.field=value")
    ap.add_argument("--limit", type=int, default=None, help="items (default: all 10,042)")
    ap.add_argument("--batch-size", type=int, default=BATCH_SIZE, help="sequences per forward (4 per item)")
    ap.add_argument("--style", default="authors", choices=["authors", "lm-eval"])
    ap.add_argument("--device", default=None)
    ap.add_argument("--threads", type=int, default=None, help="CPU threads (torch.set_num_threads)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    preset = override(get_preset(args.preset), args.set)
    device = torch.device(args.device) if args.device else default_device()
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    t0 = time.perf_counter()
    items = hellaswag.load(limit=args.limit)
    questions = [hellaswag.question(item, args.style, preset.model.tokenizer) for item in items]
    t_prep = time.perf_counter() - t0
    tokens = sum(len(r) for q in questions for r in q.requests)

    torch.manual_seed(0)
    model = GPT(preset.model).to(device).eval()
    warm = questions[: max(1, args.batch_size // 4)]
    hellaswag.evaluate(model, warm, args.style, batch_size=args.batch_size)
    sync(device)
    t0 = time.perf_counter()
    rows = hellaswag.evaluate(model, questions, args.style, batch_size=args.batch_size)
    sync(device)
    dt = time.perf_counter() - t0

    name = (torch.cuda.get_device_name(device) if device.type == "cuda"
            else f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads")
    m = preset.model
    print(f"preset {preset.name}: L={m.n_layer} C={m.n_embd} block {m.block_size}, torch {torch.__version__}, {name}, "
          f"batch {args.batch_size} sequences, style {args.style}")
    print(f"{len(questions)} items ({tokens:,} tokens in their {4 * len(questions)} sequences) scored in {dt:.2f} s: "
          f"{len(questions) / dt:,.1f} items/s, {tokens / dt:,.0f} tokens/s; data + tokenization {t_prep:.2f} s")
    print(f"full val set (10,042 items) at this rate: {10_042 / (len(questions) / dt):,.0f} s; "
          + ", ".join(f"{r['metric']} {r['value']:.4f}" for r in rows))


if __name__ == "__main__":
    main()
