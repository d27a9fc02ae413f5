"""The CPU paths side by side, in one run: tokens/s of the training step eager fp32, eager bf16 autocast, compiled fp32
and compiled bf16 (``train.compile``, ``train.autocast_cpu``), and HellaSwag scoring fp32 vs bf16.

    nice -n 19 python bench/cpu_paths.py                                  # tiny and cpu presets, 100 items
    python bench/cpu_paths.py --presets tiny --steps 3 --limit 20         # a quick look

bf16 pays on a CPU with native bf16 matmuls (AVX512-BF16 / AMX: ``lscpu`` flags avx512_bf16, amx_bf16); elsewhere
it is emulated and slower. The training step is ``train_throughput.time_steps`` (the package's ``train_step`` on
in-memory random tokens, dense, median over timed steps after untimed warm-up ones, which include compiling);
scoring is ``hellaswag.evaluate`` under ``autocast_context(..., cpu=True)`` after one untimed batch.
"""
from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_throughput import time_steps  # noqa: E402

from genprune_nb.config import get_preset, override  # noqa: E402
from genprune_nb.evals import hellaswag  # noqa: E402
from genprune_nb.launch import DistContext  # noqa: E402
from genprune_nb.model.gpt import GPT  # noqa: E402
from genprune_nb.model.lm import autocast_context  # noqa: E402

MODES = {"eager fp32": [], "eager bf16": ["train.autocast_cpu=true"], "compiled fp32": ["train.compile=true"],
         "compiled bf16": ["train.compile=true", "train.autocast_cpu=true"]}


def cpu_flags() -> str:
    """The CPU's bf16 features as /proc/cpuinfo names them (empty where it does not say)."""
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    except (OSError, StopIteration):
        return "unknown"
    return " ".join(f for f in flags.split() if "bf16" in f or f.startswith("amx")) or "none"


def training(preset_name: str, steps: int, warmup: int, repeats: int) -> None:
    ctx = DistContext(device=torch.device("cpu"))
    base = get_preset(preset_name)
    cfg = base.train
    print(f"\ntraining step, preset {preset_name}: L={base.model.n_layer} C={base.model.n_embd} vocab "
          f"{base.model.vocab_size}, batch {cfg.batch_size}x{cfg.seq_len} (micro {cfg.micro_batch_size})")
    print(f"{'mode':14s} {'s/step':>8s} {'tokens/s':>10s} {'vs eager fp32':>14s}   runs (s/step)")
    eager = None
    for mode, sets in MODES.items():
        try:
            runs = [time_steps(override(base, sets), ctx, None, steps, warmup) for _ in range(repeats)]
        except Exception as e:  # e.g. inductor without a C++ compiler: say so and go on
            print(f"{mode:14s} failed: {type(e).__name__}: {str(e).splitlines()[0][:100]}")
            continue
        t = statistics.median(runs)
        eager = eager or t
        print(f"{mode:14s} {t:8.4f} {cfg.tokens_per_step / t:10,.0f} {eager / t:13.2f}x   "
              + " ".join(f"{v:.4f}" for v in runs))


def scoring(preset_name: str, limit: int, batch_size: int, repeats: int) -> None:
    preset = get_preset(preset_name)
    questions = [hellaswag.question(item, "authors", preset.model.tokenizer) for item in hellaswag.load(limit=limit)]
    tokens = sum(len(r) for q in questions for r in q.requests)
    torch.manual_seed(0)
    model = GPT(preset.model).eval()
    print(f"\nHellaSwag scoring, preset {preset_name}: {len(questions)} items, {tokens:,} tokens, batch {batch_size}")
    print(f"{'mode':14s} {'s':>8s} {'tokens/s':>10s} {'vs fp32':>8s}   runs (s)   accuracy")
    fp32 = None
    for mode, cpu in (("fp32", False), ("bf16", True)):
        with autocast_context(torch.device("cpu"), "bfloat16", cpu=cpu):
            hellaswag.evaluate(model, questions[: max(1, batch_size // 4)], batch_size=batch_size)  # warm-up
            runs, rows = [], []
            for _ in range(repeats):
                t0 = time.perf_counter()
                rows = hellaswag.evaluate(model, questions, batch_size=batch_size)
                runs.append(time.perf_counter() - t0)
        t = statistics.median(runs)
        fp32 = fp32 or t
        print(f"{mode:14s} {t:8.3f} {tokens / t:10,.0f} {fp32 / t:7.2f}x   " + " ".join(f"{v:.3f}" for v in runs)
              + f"   acc {rows[0]['value']:.4f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--presets", nargs="+", default=["tiny", "cpu"])
    ap.add_argument("--steps", type=int, default=5, help="timed training steps per run")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps per run (compiling, allocator)")
    ap.add_argument("--repeats", type=int, default=3, help="runs per mode")
    ap.add_argument("--limit", type=int, default=100, help="HellaSwag items scored (0: skip scoring)")
    ap.add_argument("--batch-size", type=int, default=64, help="sequences per scoring forward")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads, bf16 flags: "
          f"{cpu_flags()}, torch {torch.__version__}")
    for name in args.presets:
        training(name, args.steps, args.warmup, args.repeats)
    for name in args.presets if args.limit else []:
        scoring(name, args.limit, args.batch_size, args.repeats)


if __name__ == "__main__":
    main()
