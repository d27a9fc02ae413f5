"""Peak memory and speed of one forward + backward: the plain loss (whole logits) vs the chunked one (train.loss_chunk).

    python bench/chunked_loss.py                                   # tiny preset, micro batches 8x128 and 32x128
    python bench/chunked_loss.py --preset cpu --chunks 256,1024 --shapes 16x128
    python bench/chunked_loss.py --preset gpt2-124m --shapes 32x1024 --chunks 2048,4096,8192   # on a GPU

Each mode runs ``GPT.forward(x, y, loss_chunk=...)`` and ``loss.backward()`` on in-memory random tokens, under the
training autocast of the device (``model.lm.autocast_context``: bf16 on CUDA, none on CPU unless it adds one), with
the parameters' gradients already allocated (they are not activations). Peak memory is what the forward + backward
allocates above what was allocated before it: on CUDA ``torch.cuda.max_memory_allocated``; on CPU the running sum
of the allocator events ``torch.profiler`` records with ``profile_memory=True`` (every tensor allocation and free,
in time order, not RSS). Speed: tokens per second of the forward + backward, runs alternating between modes so
that drift of the machine hits all of them, median over ``--repeats`` (no profiler while timed).
"""
from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from genprune_nb.config import get_preset, override  # noqa: E402
from genprune_nb.launch import default_device  # noqa: E402
from genprune_nb.model.gpt import GPT  # noqa: E402
from genprune_nb.model.lm import autocast_context  # noqa: E402
from genprune_nb.tokenizer import get_tokenizer  # noqa: E402


def step(model: GPT, x: torch.Tensor, y: torch.Tensor, chunk: int, dtype: str) -> None:
    """One forward + backward into the (preallocated) gradients, as ``train_step`` runs it."""
    with autocast_context(x.device, dtype):
        logits, loss = model(x, y, loss_chunk=chunk)
    loss.backward()
    del logits, loss


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_bytes(model: GPT, x: torch.Tensor, y: torch.Tensor, chunk: int, dtype: str) -> int:
    """Bytes the forward + backward allocates at its peak beyond what was allocated before."""
    device = x.device
    if device.type == "cuda":
        sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        step(model, x, y, chunk, dtype)
        sync(device)
        return torch.cuda.max_memory_allocated(device) - before
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step(model, x, y, chunk, dtype)
    events = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events()
                    if e.name() == "[memory]" and e.device_type() == torch.autograd.DeviceType.CPU)
    live = peak = 0
    for _, nbytes in events:
        live += nbytes
        peak = max(peak, live)
    return peak


def seconds(model: GPT, x: torch.Tensor, y: torch.Tensor, chunk: int, dtype: str, steps: int) -> float:
    """Median seconds of ``steps`` forward + backward passes."""
    times = []
    for _ in range(steps):
        sync(x.device)
        t0 = time.perf_counter()
        step(model, x, y, chunk, dtype)
        sync(x.device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def label(chunk: int) -> str:
    return "plain" if chunk == 0 else f"chunk {chunk}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--shapes", default="8x128,32x128", help="micro batch x seq_len, comma separated")
    ap.add_argument("--chunks", default="1024", help="rows per chunk of the chunked modes, comma separated")
    ap.add_argument("--steps", type=int, default=3, help="timed passes per run (median)")
    ap.add_argument("--repeats", type=int, default=3, help="runs per mode, alternating (median of run medians)")
    ap.add_argument("--device", default=None)
    args = ap.parse_args()

    preset = get_preset(args.preset)
    device = torch.device(args.device) if args.device else default_device()
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    dtype = preset.train.autocast_dtype
    chunks = [0] + [int(c) for c in args.chunks.split(",")]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else \
        f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"
    m = preset.model
    print(f"preset {preset.name}: L={m.n_layer} C={m.n_embd} V={m.vocab_size}, torch {torch.__version__}, {name}; "
          f"peak = {'torch.cuda.max_memory_allocated' if device.type == 'cuda' else 'profiler allocator events'}")
    n_vocab = get_tokenizer(m.tokenizer).n_vocab
    for shape in args.shapes.split(","):
        batch, seq = (int(v) for v in shape.lower().split("x"))
        model = GPT(override(preset, {"model.block_size": max(seq, m.block_size)}).model, seed=0).to(device)
        ids = torch.randint(0, n_vocab, (batch, seq + 1), generator=torch.Generator().manual_seed(1))
        x, y = ids[:, :-1].to(device), ids[:, 1:].to(device)
        step(model, x, y, 0, dtype)  # allocates the gradients and warms up
        model.zero_grad(set_to_none=False)
        peaks = {c: peak_bytes(model, x, y, c, dtype) for c in chunks}
        runs: dict[int, list[float]] = {c: [] for c in chunks}
        for _ in range(args.repeats):
            for c in chunks:
                runs[c].append(seconds(model, x, y, c, dtype, args.steps))
        tokens = batch * seq
        plain_t, plain_peak = statistics.median(runs[0]), peaks[0]
        print(f"\nmicro batch {batch}x{seq} ({tokens} rows), logits [{tokens}, {m.vocab_size}] fp32 = "
              f"{tokens * m.vocab_size * 4 / 2**20:,.0f} MiB")
        print(f"{'mode':12s} {'peak MiB':>9s} {'vs plain':>9s} {'tokens/s':>10s} {'time vs plain':>14s}   runs (s)")
        for c in chunks:
            t = statistics.median(runs[c])
            print(f"{label(c):12s} {peaks[c] / 2**20:9.1f} {peaks[c] / plain_peak:9.1%} {tokens / t:10,.0f} "
                  f"{t / plain_t - 1:+14.1%}   " + " ".join(f"{v:.3f}" for v in runs[c]))
    print("\ntarget (issue 17): chunked peak <= 50% of plain at <= +5% time")


if __name__ == "__main__":
    main()
