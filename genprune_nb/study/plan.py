"""What a study will cost before it runs: GPU memory, compute time, tokens of L and S, disk, and launch commands.

``plan_study(preset, gpus=8, gpu="h100")`` returns a :class:`Plan` of pandas tables (the CLI's ``genprune plan``
prints them). Every number is a formula of the preset, stated where it is computed:

- Memory per GPU (data parallel: every rank holds the whole model). Weights, gradients and, with more than one GPU,
  DDP's gradient buckets are fp32 (4 B per weight each); AdamW's two moments 8 B per weight; the masks of a masked
  run are held in the weights' dtype (``optim.WeightMask``: 4 B per masked weight); bf16 autocast caches a 2-byte
  copy of every matmul weight. Activations saved for backward, per token, in bytes, with b = 2 under bf16 / fp16
  autocast (4 in fp32): per layer ``8C + 16bC + 4h + 8`` with flash / memory-efficient SDPA (the fp32 residual at
  both norms 8C; attention's bf16 norm output, qkv, rotated q and k, output 7bC; the MLP's norm output, c_fc and
  GELU outputs 9bC; the fp32 log-sum-exp 4h; norm statistics 8), plus ``2bhT`` without it (the math backend keeps
  scores and probabilities). The head keeps the final norm's input and rstd, its bf16 input and the fp32 log-probs
  (``4C + 4 + bC + 4V``) plus the ids and targets (16); at the start of backward 12V more are alive (the fp32
  logits ``train_step`` holds, the gradients of log-probs and of logits). With ``train.loss_chunk``
  (``model.chunked_loss``) the head keeps the final norm's input and rstd, the fp32 gradient of its output and the
  ids and targets instead (``8C + 4 + 16``), nothing more at the start of backward, and one chunk's logits (fp32,
  and under autocast their gradients in its dtype: ``4V`` or ``(4 + b)V`` per row of the chunk) and the head
  weight's fp32 gradient (4VC) beside them. These were checked by counting the tensors autograd saves (CPU, bf16
  autocast, eager and ``torch.compile``: the same per layer; the chunked head eager), not on a GPU.
  A run fits when the total, plus 1 GiB of CUDA context and workspaces, is within ``1 - margin`` of the GPU.
- Time: tokens x ``flops_per_token`` / (MFU x peak bf16 FLOP/s x GPUs); validation passes count as forward-only
  (a third of the training FLOPs per token). Default MFU 0.27 (modded-nanogpt's AdamW record; llm.c's GPT-2 124M
  on 8 x H100, ~468k tokens/s per GPU, is ~0.38 of 989 TFLOP/s). Evaluations are not included: their kept
  checkpoints are counted instead.
- Tokens: what the loops read of L and S against what their shards hold (their headers when prepared, else the
  data catalog's shard size, else unknown), at the loader's step granularity (``loader.steps_per_epoch``).
- Disk: every checkpoint a finished study keeps (``model.safetensors``; no finished run keeps ``optimizer.pt``
  moments, ``training.loop``): the outer generations' finals in fp32 for generation 0 and the last (the transmission
  conditions start from them), in ``train.kept_dtype`` for those between (only analysed, ``generations``); their
  other kept steps and every kept step of an inner run, its final one included, in the schedule's ``kept_dtype``
  (they serve evaluations only; see ``generations.inner_keep_steps`` and ``checkpoint.prune_checkpoints``). A
  masked run's checkpoints store the masked weights' survivors only (``checkpoint.pack_weights``): their density's
  share of them, p = (1 - prune_fraction)^g for outer generation g, (1 - prune_fraction)^G for the masked inner
  conditions (grown from the final connectome). A masked
  run's ``masks.safetensors`` (bit-packed, once per run: n / 8 bytes) and every connectome file (entropy-coded:
  H(p) + p bits per weight at density p with balanced signs, p = (1 - prune_fraction)^(g+1)).
"""
from __future__ import annotations

import dataclasses
import fnmatch
import math
import os
import shlex
from dataclasses import dataclass
from typing import Any, Sequence

import pandas as pd

from ..config import KEPT_DTYPES, Preset, TrainConfig
from ..data import catalog
from ..data.loader import steps_per_epoch, tokens_per_step
from ..data.shards import ShardError, find_shards, read_header
from ..errors import GenpruneError
from ..model.gpt import PEAK_FLOPS, flops_per_token, matmul_weights
from ..stats import binary_entropy
from ..training.checkpoint import FULL_PRECISION
from .conditions import BASELINE
from .generations import inner_keep_steps, parse_condition

GiB = 2 ** 30
DEFAULT_MFU = 0.27  # modded-nanogpt's AdamW GPT-2 record (PyTorch); llm.c reaches ~0.38 on 8 x H100
DEFAULT_MARGIN = 0.10  # of the GPU's memory, for allocator fragmentation and what the estimate leaves out
CUDA_OVERHEAD = 1 * GiB  # CUDA context, cuBLAS / NCCL workspaces
SMALL_FILES = 16 * 2 ** 10  # per checkpoint: config.json, state.json, rng.pt
TOKEN_BYTES = 2  # uint16 token ids in a shard
WEIGHT_BYTES = dict(zip(KEPT_DTYPES, (4, 2)))  # bytes per stored weight, by ``kept_dtype``
RDZV_PORT = 29500


class PlanError(GenpruneError, ValueError):
    """A plan cannot be made from these inputs; the message names the bad one."""


@dataclass(frozen=True)
class GPU:
    """An accelerator: its memory as nvidia-smi reports it, and its peak dense bf16 FLOP/s (``gpt.PEAK_FLOPS``)."""

    name: str
    memory_bytes: int
    device_key: str | None  # the ``PEAK_FLOPS`` key (a part of torch's device name); None: CPU

    @property
    def peak_flops(self) -> float | None:
        return PEAK_FLOPS[self.device_key] if self.device_key else None

    @property
    def is_cuda(self) -> bool:
        return self.device_key is not None


def _host_memory() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 0


_MiB = 2 ** 20
GPUS: dict[str, GPU] = {g.name: g for g in [
    GPU("h100", 81_559 * _MiB, "H100"),  # SXM, 80 GB HBM3
    GPU("h200", 143_771 * _MiB, "H200"),
    GPU("a100-80gb", 81_920 * _MiB, "A100"),
    GPU("a100-40gb", 40_960 * _MiB, "A100"),
    GPU("l4", 23_034 * _MiB, "L4"),
    GPU("a10", 23_028 * _MiB, "A10"),
    GPU("4090", 24_564 * _MiB, "4090"),
    GPU("cpu", _host_memory(), None),  # this machine's memory; no peak FLOP/s: pass peak_flops
]}


def get_gpu(name: str) -> GPU:
    """The named accelerator; an unknown name is refused with the list of known ones."""
    try:
        return GPUS[name.lower()]
    except KeyError:
        raise PlanError(f"unknown --gpu {name!r}; choose one of {', '.join(GPUS)}") from None


# --- weights and memory ------------------------------------------------------------------------------------------

def weight_count(preset: Preset) -> int:
    """Unique weights of the GPT: the blocks' 12 C^2 each, ``wte`` and an untied ``lm_head`` (V x C each)."""
    m = preset.model
    embeddings = m.vocab_size * m.n_embd * (1 if m.tie_embeddings else 2)
    return m.n_layer * 12 * m.n_embd ** 2 + embeddings


def masked_weight_count(preset: Preset) -> int:
    """Weights a masked run holds masks for: every 2-D weight (all of them in this GPT), without ``wte`` and
    ``lm_head`` when ``outer.prune_embeddings`` is false."""
    m = preset.model
    if preset.outer.prune_embeddings:
        return weight_count(preset)
    return m.n_layer * 12 * m.n_embd ** 2


def activation_dtype_bytes(schedule: TrainConfig, gpu: GPU) -> int:
    """Bytes of an activation: 2 under bf16 / fp16 autocast (CUDA only), 4 in fp32 (CPU always)."""
    return 2 if gpu.is_cuda and schedule.autocast_dtype != "float32" else 4


def activation_bytes_per_token(preset: Preset, schedule: TrainConfig, gpu: GPU, flash: bool = True) -> dict[str, int]:
    """Bytes held for backward per token (see the module docstring): ``layers`` (all blocks), ``head`` (saved)
    and ``head_backward`` (alive at the start of backward only); the chunked loss's when ``schedule.loss_chunk``."""
    m, b, T = preset.model, activation_dtype_bytes(schedule, gpu), schedule.seq_len
    C, h, V = m.n_embd, m.n_head, m.vocab_size
    layer = 8 * C + 16 * b * C + 4 * h + 8 + (0 if flash else 2 * b * h * T)
    if schedule.loss_chunk:
        return {"layers": m.n_layer * layer, "head": 8 * C + 4 + 16, "head_backward": 0}
    return {"layers": m.n_layer * layer, "head": 4 * C + 4 + b * C + 4 * V + 16, "head_backward": 12 * V}


def loss_chunk_bytes(preset: Preset, schedule: TrainConfig, gpu: GPU, micro_batch: int) -> int:
    """Bytes the chunked loss holds besides the per-token ones: one chunk's logits and their gradients, the head
    weight's fp32 gradient (see the module docstring); 0 with the plain loss."""
    if not schedule.loss_chunk:
        return 0
    m, b = preset.model, activation_dtype_bytes(schedule, gpu)
    rows = min(schedule.loss_chunk, micro_batch * schedule.seq_len)
    return rows * m.vocab_size * (4 + (b if b < 4 else 0)) + 4 * m.vocab_size * m.n_embd


def training_memory(preset: Preset, schedule: TrainConfig, gpu: GPU, gpus: int, *, masked: bool = True,
                    micro_batch: int | None = None, flash: bool = True) -> dict[str, int]:
    """Peak memory of one GPU training ``schedule`` (bytes per component, and ``total``)."""
    n = weight_count(preset)
    micro = micro_batch or schedule.micro_batch_size
    per_token = activation_bytes_per_token(preset, schedule, gpu, flash)
    parts = {
        "weights (fp32)": 4 * n,
        "gradients (fp32)": 4 * n,
        "DDP gradient buckets (fp32)": 4 * n if gpus > 1 else 0,
        "AdamW moments (2 x fp32)": 8 * n,
        "masks (fp32, as WeightMask holds them)": 4 * masked_weight_count(preset) if masked else 0,
        "bf16 weight copies (autocast)": 2 * matmul_weights(preset.model)
        if activation_dtype_bytes(schedule, gpu) == 2 else 0,
        "activations": micro * schedule.seq_len * sum(per_token.values()),
        "loss chunk (logits of one, head gradient)": loss_chunk_bytes(preset, schedule, gpu, micro),
        "CUDA context and workspaces": CUDA_OVERHEAD if gpu.is_cuda else 0,
    }
    return {**parts, "total": sum(parts.values())}


def micro_batches(schedule: TrainConfig, gpus: int) -> list[int]:
    """Micro batches that divide the batch over ``gpus`` (``TrainConfig.grad_accum_steps``), largest first."""
    if schedule.batch_size % gpus:
        return []
    per_gpu = schedule.batch_size // gpus
    return [m for m in range(per_gpu, 0, -1) if per_gpu % m == 0]


def fitting_micro_batch(preset: Preset, schedule: TrainConfig, gpu: GPU, gpus: int, *, margin: float = DEFAULT_MARGIN,
                        masked: bool = True, flash: bool = True) -> int | None:
    """The largest valid micro batch whose memory fits ``gpu`` with ``margin`` to spare; None if none does."""
    usable = (1 - margin) * gpu.memory_bytes
    return next((m for m in micro_batches(schedule, gpus)
                 if training_memory(preset, schedule, gpu, gpus, masked=masked, micro_batch=m, flash=flash)["total"]
                 <= usable), None)


# --- compute --------------------------------------------------------------------------------------------------

def validation_passes(schedule: TrainConfig, at_start: bool) -> int:
    """Validations of one run: every ``val_every`` steps, after the last step, and at step 0 if it is kept."""
    if not schedule.val_tokens:
        return 0
    every = schedule.steps // schedule.val_every if schedule.val_every else 0
    last = 0 if schedule.val_every and schedule.steps % schedule.val_every == 0 else 1
    return every + last + (1 if at_start else 0)


def run_flops(preset: Preset, schedule: TrainConfig, at_start: bool) -> tuple[int, int, float]:
    """(training tokens, validation tokens, FLOPs) of one run; validation is forward only (1/3 of training)."""
    per_token = flops_per_token(preset.model, schedule.seq_len)
    train_tokens = schedule.steps * schedule.tokens_per_step
    val_tokens = validation_passes(schedule, at_start) * schedule.val_tokens
    return train_tokens, val_tokens, per_token * (train_tokens + val_tokens / 3)


def seconds(flops: float, gpu: GPU, gpus: int, mfu: float, peak_flops: float | None = None) -> float | None:
    """Wall-clock seconds of ``flops`` at ``mfu`` of the peak, data parallel over ``gpus``; None without a peak."""
    peak = peak_flops or gpu.peak_flops
    return flops / (mfu * peak * gpus) if peak else None


# --- tokens ---------------------------------------------------------------------------------------------------

def shard_token_counts(preset: Preset, corpus: str) -> tuple[list[int] | None, str]:
    """Token counts of the shards a corpus (``large`` or ``small``) selects, and where they come from: the prepared
    shards' headers, else the data catalog's shard size, else (None, "unknown")."""
    data, patterns = preset.data, preset.data.patterns(corpus)
    try:
        return [read_header(p).n_tokens for p in find_shards(data.tokens_dir, patterns)], "shard headers"
    except FileNotFoundError:
        pass
    except ShardError as e:
        return None, f"unknown ({e})"
    try:
        dataset = catalog.get(data.corpus)
    except (KeyError, ValueError, GenpruneError):
        return None, "unknown"
    if not dataset.shard_tokens:
        return None, "unknown (prepare the corpus first)"
    names = [n for n in (*dataset.files, *dataset.extra_files) if any(fnmatch.fnmatchcase(n, p) for p in patterns)]
    return ([dataset.shard_tokens] * len(names), "catalog") if names else (None, "unknown")


def token_needs(preset: Preset, gpus: int) -> pd.DataFrame:
    """Tokens the study reads of L and S against what their shards give at the loader's step size."""
    outer, train, inner = preset.outer, preset.train, preset.inner_train
    continuing = preset.data.outer_stream == "continue"
    per_generation = train.steps * train.tokens_per_step
    inner_runs = len(preset.inner.conditions) * len(preset.inner.seeds)
    rows = []
    for corpus, schedule, read, distinct, note in [
        ("L (large)", train, outer.generations * per_generation, per_generation * (outer.generations if continuing
                                                                                    else 1),
         f"{outer.generations} generations x {train.steps} steps x {train.tokens_per_step:,} tokens"
         + ("" if continuing else ", each generation from L's first token")),
        ("S (small)", inner, inner_runs * inner.steps * inner.tokens_per_step, inner.steps * inner.tokens_per_step,
         f"{inner_runs} runs x {inner.steps} steps x {inner.tokens_per_step:,} tokens, each run reading S afresh"),
    ]:
        counts, source = shard_token_counts(preset, "large" if corpus.startswith("L") else "small")
        step = tokens_per_step(schedule.micro_batch_size, schedule.seq_len, gpus)
        available = steps_per_epoch(counts, step) * step if counts is not None else None
        rows.append({"corpus": corpus, "tokens read": read, "tokens per pass needed": distinct,
                     "shards": len(counts) if counts is not None else None,
                     "tokens available": available, "source": source,
                     "passes": distinct / available if available else None, "reading": note})
    return pd.DataFrame(rows)


# --- disk -----------------------------------------------------------------------------------------------------

def connectome_bits_per_weight(density: float) -> float:
    """Entropy of a ternary pattern at ``density`` with balanced signs: H(p) for where, 1 bit per survivor's sign."""
    return binary_entropy(density) + density


def checkpoint_bytes(preset: Preset, *, optimizer: bool, dtype: str = "float32", density: float = 1.0) -> int:
    """One checkpoint: weights in ``dtype`` (of a run masked at ``density``, the masked weights' survivors only,
    ``checkpoint.pack_weights``), fp32 AdamW moments if kept (of every weight), and the small files (a masked run's
    masks are stored once per run: ``masks_bytes``)."""
    n, masked = weight_count(preset), masked_weight_count(preset)
    stored = n - masked + round(density * masked)
    return WEIGHT_BYTES[dtype] * stored + (8 * n if optimizer else 0) + SMALL_FILES


def masks_bytes(preset: Preset) -> int:
    """A masked run's ``masks.safetensors`` data: one bit per masked weight (``checkpoint.pack_masks``)."""
    return math.ceil(masked_weight_count(preset) / 8)


def _kept(keep: Sequence[int], steps: int) -> int:
    """Checkpoints a finished run keeps: its kept steps (within the run) and its last step."""
    return len({s for s in keep if 0 <= s <= steps} | {steps})


def disk_usage(preset: Preset) -> pd.DataFrame:
    """Disk of a finished study, item by item: checkpoints, connectome files, token shards; and, not counted in the
    total, the rolling checkpoints (with optimizer moments) a run holds while it trains."""
    outer, train, inner = preset.outer, preset.train, preset.inner_train
    G = outer.generations
    n_masked, mask_file = masked_weight_count(preset), masks_bytes(preset)
    kept_outer = _kept(train.keep_checkpoints, train.steps)
    rows = []
    for g in range(G):
        density = (1 - outer.prune_fraction) ** g  # of the masks generation g trains under (none for 0)
        transmitted = g in (0, G - 1)  # the transmission conditions start from them: float32
        final, why = (FULL_PRECISION, "no optimizer state") if transmitted else (train.kept_dtype, "analysed only")
        rows.append(("outer", f"final checkpoint, generation {g} ({final}, density {density:.3f}; {why})", 1,
                     checkpoint_bytes(preset, optimizer=False, dtype=final, density=density)))
        if kept_outer > 1:
            rows.append(("outer", f"{kept_outer - 1} earlier kept checkpoints, generation {g} ({train.kept_dtype}, "
                                  f"density {density:.3f})", kept_outer - 1,
                         checkpoint_bytes(preset, optimizer=False, dtype=train.kept_dtype, density=density)))
    rows.append(("outer", "masks, generations 1.. (1 bit per weight, once per run)", G - 1, mask_file))
    for g in range(G):
        density = (1 - outer.prune_fraction) ** (g + 1)
        rows.append(("outer", f"connectome file, generation {g} (density {density:.3f}, "
                              f"{connectome_bits_per_weight(density):.3f} bits/weight)",
                     1 + (g == G - 1), math.ceil(n_masked * connectome_bits_per_weight(density) / 8)))
    kept_inner = len(inner_keep_steps(preset))
    grown = (1 - outer.prune_fraction) ** G  # the final connectome's density: every masked inner run's
    for condition in preset.inner.conditions:
        is_masked = parse_condition(condition, outer.criterion)[0] != BASELINE
        runs = len(preset.inner.seeds)
        density = grown if is_masked else 1.0
        rows.append(("inner", f"{condition}: {kept_inner} kept checkpoints per run, final included "
                              f"({inner.kept_dtype}, density {density:.3f}) x {runs} runs", kept_inner * runs,
                     checkpoint_bytes(preset, optimizer=False, dtype=inner.kept_dtype, density=density)))
        if is_masked:
            rows.append(("inner", f"{condition}: masks (1 bit per weight, once per run) x {runs} runs", runs,
                         mask_file))
    for corpus, label in (("large", "L"), ("small", "S")):
        counts, source = shard_token_counts(preset, corpus)
        if counts is not None:
            rows.append(("data", f"{label} token shards ({source})", len(counts),
                         TOKEN_BYTES * sum(counts) // len(counts) + 1024))
    frame = pd.DataFrame(rows, columns=["part", "item", "count", "bytes each"])
    frame["bytes"] = frame["count"] * frame["bytes each"]
    rolling = pd.DataFrame([
        ("while training", f"outer: up to {train.keep_last} rolling checkpoints of the running generation",
         train.keep_last if train.checkpoint_every else 1, checkpoint_bytes(preset, optimizer=True)),
        ("while training", f"inner: up to {inner.keep_last} rolling checkpoints of the running run",
         inner.keep_last if inner.checkpoint_every else 0, checkpoint_bytes(preset, optimizer=True)),
    ], columns=["part", "item", "count", "bytes each"])
    rolling["bytes"] = rolling["count"] * rolling["bytes each"]
    return pd.concat([frame, rolling[rolling["count"] > 0]], ignore_index=True)


# --- launch commands ----------------------------------------------------------------------------------------------

def launch_commands(preset_name: str, overrides: Sequence[str], gpus: int, gpus_per_node: int = 8,
                    hours: float | None = None) -> dict[str, str]:
    """Shell commands running the study on ``gpus`` GPUs: ``prepare`` (once, on one node), ``train`` (one GPU:
    plain genprune; one node: torchrun --standalone; several: torchrun with c10d rendezvous on every node) and a Slurm
    ``sbatch`` script (``hours``: the estimated study time, padded by half for its time limit)."""
    if gpus < 1:
        raise PlanError(f"--gpus must be at least 1, got {gpus}")
    per_node = min(gpus, gpus_per_node)
    if gpus % per_node:
        raise PlanError(f"--gpus {gpus} is not a multiple of --gpus-per-node {gpus_per_node}")
    nodes = gpus // per_node
    args = " ".join(["--preset", shlex.quote(preset_name), *(f"--set {shlex.quote(o)}" for o in overrides)])
    module = "-m genprune_nb.cli"
    if gpus == 1:
        launch = ["genprune"]
    elif nodes == 1:
        launch = [f"torchrun --standalone --nproc_per_node={per_node} {module}"]
    else:
        launch = [f"torchrun --nnodes={nodes} --nproc_per_node={per_node} --rdzv_id=genprune --rdzv_backend=c10d "
                  f"--rdzv_endpoint=$HEAD_NODE:{RDZV_PORT} {module}"]
    train = "\n".join(f"{launch[0]} {step} {args}" for step in ("outer", "inner"))
    if nodes > 1:
        train = f"# on each of the {nodes} nodes (HEAD_NODE: the address of one of them)\n" + train
    limit = max(1, math.ceil(1.5 * hours)) if hours else 24
    srun = (f'srun torchrun --nnodes "$SLURM_NNODES" --nproc_per_node {per_node} --rdzv_id "$SLURM_JOB_ID" '
            f'--rdzv_backend c10d --rdzv_endpoint "$head_node:{RDZV_PORT}" {module}')
    slurm = "\n".join([
        "#!/bin/bash",
        f"#SBATCH --job-name=genprune-{preset_name}",
        f"#SBATCH --nodes={nodes}",
        "#SBATCH --ntasks-per-node=1",
        f"#SBATCH --gpus-per-node={per_node}",
        f"#SBATCH --cpus-per-task={4 * per_node}",
        f"#SBATCH --time={limit}:00:00",
        "set -euo pipefail",
        'head_node=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)',
        "# resumable: resubmitting the script continues where a run stopped",
        f"{srun} outer {args} --no-progress",
        f"{srun} inner {args} --no-progress",
    ])
    return {"prepare": f"genprune prepare {args}", "train": train, "slurm": slurm}


# --- the plan -------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Plan:
    """What a study of ``preset`` costs on ``gpus`` x ``gpu`` (tables in bytes, tokens, FLOPs and seconds)."""

    preset: Preset
    gpu: GPU
    gpus: int
    mfu: float
    peak_flops: float | None
    memory: pd.DataFrame  # component x (outer generation, inner run): bytes per GPU
    micro_batch: pd.DataFrame  # per run kind: micro batch, fits, largest fitting one
    compute: pd.DataFrame  # outer generation, inner run, study: tokens, FLOPs, hours
    tokens: pd.DataFrame  # L and S: read vs available
    disk: pd.DataFrame  # item, count, bytes each, bytes
    commands: dict[str, str]
    warnings: list[str]
    notes: list[str]  # what the estimates leave out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the settings, every table as records, the commands and the warnings."""
        def records(frame: pd.DataFrame) -> list[dict]:
            return [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
                    for row in frame.reset_index().to_dict("records")]

        return {"preset": self.preset.name, "gpu": dataclasses.asdict(self.gpu), "gpus": self.gpus, "mfu": self.mfu,
                "peak_flops": self.peak_flops, "flops_per_token": flops_per_token(self.preset.model,
                                                                                  self.preset.train.seq_len),
                "weights": weight_count(self.preset), "memory": records(self.memory),
                "micro_batch": records(self.micro_batch), "compute": records(self.compute),
                "tokens": records(self.tokens), "disk": records(self.disk), "commands": self.commands,
                "warnings": self.warnings, "notes": self.notes}


def _run_kinds(preset: Preset) -> dict[str, tuple[TrainConfig, bool]]:
    """Schedule and whether it holds masks, per run kind (masks: any generation after the first, any inner
    condition but NoConnectome)."""
    inner_masked = any(parse_condition(c, preset.outer.criterion)[0] != BASELINE
                       for c in preset.inner.conditions)
    return {"outer generation": (preset.train, preset.outer.generations > 1),
            "inner run": (preset.inner_train, inner_masked)}


def plan_study(preset: Preset, *, gpus: int = 1, gpu: str | GPU = "h100", mfu: float = DEFAULT_MFU,
               margin: float = DEFAULT_MARGIN, flash: bool = True, peak_flops: float | None = None,
               overrides: Sequence[str] = (), gpus_per_node: int = 8) -> Plan:
    """The plan of ``preset`` (already overridden; ``overrides`` are only repeated in the launch commands)."""
    gpu = get_gpu(gpu) if isinstance(gpu, str) else gpu
    if gpus < 1:
        raise PlanError(f"--gpus must be at least 1, got {gpus}")
    if not 0 < mfu <= 1:
        raise PlanError(f"--mfu must lie in (0, 1], got {mfu}")
    if not 0 <= margin < 1:
        raise PlanError(f"memory margin must lie in [0, 1), got {margin}")
    warnings: list[str] = []
    memory, fits = {}, []
    usable = (1 - margin) * gpu.memory_bytes
    for kind, (schedule, masked) in _run_kinds(preset).items():
        memory[kind] = training_memory(preset, schedule, gpu, gpus, masked=masked, flash=flash)
        best = fitting_micro_batch(preset, schedule, gpu, gpus, margin=margin, masked=masked, flash=flash)
        fit = memory[kind]["total"] <= usable
        fits.append({"run": kind, "micro batch": schedule.micro_batch_size, "fits": fit, "largest fitting": best,
                     "grad accumulation": schedule.batch_size // (schedule.micro_batch_size * gpus)
                     if schedule.batch_size % (schedule.micro_batch_size * gpus) == 0 else None})
        section = "train" if kind == "outer generation" else "inner_train"
        if schedule.batch_size % (schedule.micro_batch_size * gpus):
            warnings.append(f"{kind}: {section}.batch_size={schedule.batch_size} is not divisible by "
                            f"micro_batch_size ({schedule.micro_batch_size}) x {gpus} GPUs: the run would refuse "
                            "to start" + (f"; micro batch {best} fits" if best else ""))
        elif not fit:
            need = memory[kind]["total"] / GiB
            advice = (f"--set {section}.micro_batch_size={best} fits" if best else
                      "no micro batch fits: use a larger GPU or more memory-saving settings")
            warnings.append(f"{kind}: {need:.1f} GiB per GPU does not fit {gpu.name} ({gpu.memory_bytes / GiB:.1f} "
                            f"GiB, {usable / GiB:.1f} usable with a {margin:.0%} margin) at micro batch "
                            f"{schedule.micro_batch_size}; {advice}")
    memory_frame = pd.DataFrame(memory)

    peak = peak_flops or gpu.peak_flops
    if peak is None:
        warnings.append(f"{gpu.name} has no known peak FLOP/s: times are unknown (pass --peak-tflops)")
    runs = {"outer generation": preset.outer.generations,
            "inner run": len(preset.inner.conditions) * len(preset.inner.seeds)}
    rows = []
    for kind, (schedule, _) in _run_kinds(preset).items():
        train_tokens, val_tokens, flops = run_flops(preset, schedule, at_start=kind == "inner run")
        secs = seconds(flops, gpu, gpus, mfu, peak)
        rows.append({"phase": kind, "runs": runs[kind], "train tokens per run": train_tokens,
                     "val tokens per run": val_tokens, "FLOPs per token": flops_per_token(preset.model,
                                                                                          schedule.seq_len),
                     "FLOPs per run": flops, "hours per run": secs / 3600 if secs is not None else None,
                     "hours": secs * runs[kind] / 3600 if secs is not None else None})
    total_hours = None if peak is None else sum(r["hours"] for r in rows)
    checkpoints = runs["inner run"] * len(inner_keep_steps(preset))
    notes = [f"the study's time leaves out the evaluations of its {checkpoints} kept inner checkpoints (forward "
             "only; see BENCHMARKS.md) and the pruning between generations (seconds)"]
    rows.append({"phase": "study", "runs": sum(runs.values()),
                 "train tokens per run": None, "val tokens per run": None, "FLOPs per token": None,
                 "FLOPs per run": None, "hours per run": None, "hours": total_hours})
    compute = pd.DataFrame(rows)

    tokens = token_needs(preset, gpus)
    large = tokens.iloc[0]
    if large["tokens available"] is not None and not pd.isna(large["tokens available"]) \
            and large["tokens per pass needed"] > large["tokens available"]:
        warnings.append(f"the outer loop reads {int(large['tokens per pass needed']):,} tokens of L but L holds "
                        f"{int(large['tokens available']):,}: it wraps to L's first token "
                        f"({large['passes']:.2f} passes); add shards to data.large_files")
    for _, row in tokens.iterrows():
        if row["tokens available"] is None or pd.isna(row["tokens available"]):
            warnings.append(f"{row['corpus']}: tokens available are {row['source']}")
    return Plan(preset, gpu, gpus, mfu, peak, memory_frame, pd.DataFrame(fits).set_index("run"), compute, tokens,
                disk_usage(preset), launch_commands(preset.name, overrides, gpus, gpus_per_node, total_hours),
                warnings, notes)
