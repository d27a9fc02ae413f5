"""Training throughput of a preset on this device: dense vs masked (26% density) optimizer steps, side by side.

    python bench/train_throughput.py --preset tiny --steps 5 --repeats 5
    python bench/train_throughput.py --preset gpt2-124m --compile        # on a GPU
    python bench/train_throughput.py --preset tiny --autocast-cpu        # bf16 autocast on CPU (bench/cpu_paths.py
                                                                         # compares the CPU paths side by side)

Both modes run the package's real ``train_step`` on in-memory random tokens (no disk I/O), alternating
dense and masked runs so that drift of the machine hits both; the table gives the median over repeats.
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
from genprune_nb.config import get_preset, override  # noqa: E402
from genprune_nb.launch import DistContext, default_device  # noqa: E402
from genprune_nb.model.gpt import GPT, flops_per_token, peak_flops  # noqa: E402
from genprune_nb.tokenizer import get_tokenizer  # noqa: E402
from genprune_nb.training.loop import train_step  # noqa: E402
from genprune_nb.training.optim import WeightMask, build_optimizer  # noqa: E402


def random_masks(model: GPT, density: float, seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {n: torch.rand(p.shape, generator=gen) < density for n, p in model.named_parameters() if p.dim() == 2}


def time_steps(preset, ctx, density: float | None, steps: int, warmup: int) -> float:
    """Seconds per optimizer step (median over ``steps`` after ``warmup`` untimed ones)."""
    cfg = preset.train
    torch.manual_seed(0)
    model = GPT(preset.model).to(ctx.device)
    mask = WeightMask(model, random_masks(model, density)) if density is not None else None
    if mask is not None:
        mask.apply_to_weights()
    net = torch.compile(model) if cfg.compile else model
    optimizer = build_optimizer(model, cfg, ctx.device)
    accum = cfg.grad_accum_steps(1)
    gen = torch.Generator().manual_seed(1)
    n_vocab = get_tokenizer(preset.model.tokenizer).n_vocab  # the ids the preset's tokenizer makes
    batch = torch.randint(0, n_vocab, (cfg.micro_batch_size, cfg.seq_len + 1), generator=gen)
    x, y = batch[:, :-1].to(ctx.device), batch[:, 1:].to(ctx.device)
    times = []
    for i in range(warmup + steps):
        if ctx.device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        train_step(net, optimizer, mask, lambda: (x, y), accum, ctx, cfg)
        if ctx.device.type == "cuda":
            torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def masking_seconds(preset, device: torch.device, density: float, repeats: int = 20) -> float:
    """Seconds per optimizer step spent in the masking itself (gradients before clipping, weights after)."""
    model = GPT(preset.model).to(device)
    mask = WeightMask(model, random_masks(model, density))
    for p in model.parameters():
        p.grad = torch.randn_like(p)
    mask.apply_to_grads()
    mask.apply_to_weights()
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(repeats):
        mask.apply_to_grads()
        mask.apply_to_weights()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / repeats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--set", action="append", default=[], help="config override section.field=value")
    ap.add_argument("--density", type=float, default=0.262, help="mask density of the masked mode (0.8^6)")
    ap.add_argument("--steps", type=int, default=5, help="timed steps per run")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps per run (compile, allocator)")
    ap.add_argument("--repeats", type=int, default=3, help="runs per mode, alternating")
    ap.add_argument("--compile", action="store_true", help="torch.compile (inductor; on CPU it needs a C++ compiler)")
    ap.add_argument("--autocast-cpu", action="store_true", help="bf16 autocast on CPU too (train.autocast_cpu)")
    ap.add_argument("--device", default=None)
    args = ap.parse_args()

    preset = override(get_preset(args.preset), args.set + (["train.compile=true"] if args.compile else [])
                      + (["train.autocast_cpu=true"] if args.autocast_cpu else []))
    device = torch.device(args.device) if args.device else default_device()
    ctx = DistContext(device=device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    cfg = preset.train
    results: dict[str, list[float]] = {"dense": [], "masked": []}
    for _ in range(args.repeats):
        results["dense"].append(time_steps(preset, ctx, None, args.steps, args.warmup))
        results["masked"].append(time_steps(preset, ctx, args.density, args.steps, args.warmup))

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"
    peak = peak_flops(device)
    fpt = flops_per_token(preset.model, cfg.seq_len)
    print(f"preset {preset.name}: {GPT.__name__} L={preset.model.n_layer} C={preset.model.n_embd} "
          f"batch {cfg.batch_size}x{cfg.seq_len} (micro {cfg.micro_batch_size}), torch {torch.__version__}, {name}"
          f"{', compiled' if cfg.compile else ''}{', bf16 autocast on CPU' if cfg.autocast_cpu else ''}")
    print(f"{'mode':8s} {'s/step':>9s} {'tokens/s':>11s} {'MFU':>7s}   runs (s/step)")
    dense = statistics.median(results["dense"])
    for mode, times in results.items():
        t = statistics.median(times)
        tok_s = cfg.tokens_per_step / t
        mfu = f"{fpt * tok_s / peak:7.1%}" if peak else f"{'n/a':>7s}"
        print(f"{mode:8s} {t:9.4f} {tok_s:11,.0f} {mfu}   " + " ".join(f"{v:.4f}" for v in times))
    print(f"masked step overhead: {statistics.median(results['masked']) / dense - 1:+.1%} end to end "
          f"(density {args.density}, target <= +5%; run-to-run spread above)")
    mask_s = masking_seconds(preset, device, args.density)
    print(f"masking ops alone: {mask_s * 1e3:.2f} ms per step = {mask_s / dense:+.2%} of the dense step")


if __name__ == "__main__":
    main()
