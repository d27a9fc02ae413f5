"""Configuration: model shape, training recipe and the named presets (smoke .. gpt2-417m).

Defaults follow DESIGN.md §2-§3 (the paper's d12 GPT and its recipe). Every deviation a researcher might
want is a field, never a constant buried in code; ``override`` applies ``section.field=value`` strings
from the command line or a notebook's parameters cell.
"""
from __future__ import annotations

import dataclasses
import decimal
import json
import math
import re
import typing
from dataclasses import dataclass, field
from typing import Any

from .errors import GenpruneError
from .tokenizer import TokenizerError, get_tokenizer, padded_vocab

# The pruning criteria by name, implemented in ``connectome.pruning`` (named here so a preset can be validated).
CRITERIA = ("magnitude", "random", "attribution", "structured")
# How many weights a pruning step removes and which of equal scores go (``connectome.pruning.lowest``): "exact"
# removes round(fraction x n), ties by index; "authors" (the authors' code) prunes the scores strictly below the one
# at sorted position floor(fraction x n), so ties at the threshold survive.
TIE_RULES = ("exact", "authors")
# Where each outer-loop generation reads the large corpus L: "continue" from where the previous one stopped (the
# authors' loader), "restart" from its first token.
OUTER_STREAMS = ("continue", "restart")
# The inner loop's three conditions in the paper's display order (``study.conditions`` serves them to the study and
# the figures; named here, the lowest floor that needs them, so a preset's default can list them).
CONDITIONS = ("Connectome", "RandomConnectome", "NoConnectome")
# What else the outer loop could hand down, on one bandwidth axis with the paper's three (``study.transmission``):
# the last generation's trained weights at the connectome's survivors, those weights dense, and a teacher to distil.
TRANSMISSION_CONDITIONS = ("TrainedSparse", "TrainedDense", "Distilled")
# The preset at the paper's scale (DESIGN.md §2-§3): figures, milestones and released models read the paper's
# model shape, inner steps, tokens per step and token milestones from it rather than from copies.
PAPER_PRESET = "gpt2-124m"
# The dtypes an evaluation-only kept checkpoint may be stored in (``TrainConfig.kept_dtype``).
KEPT_DTYPES = ("float32", "bfloat16")


class ConfigError(GenpruneError, ValueError):
    """A configuration value is invalid; the message names the field and the value."""


@dataclass(frozen=True)
class ModelConfig:
    """Shape of the GPT (DESIGN.md §2)."""

    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    block_size: int = 1024
    vocab_size: int = padded_vocab("gpt2")  # GPT-2's 50,257 padded to a multiple of 64: 50,304
    tie_embeddings: bool = False  # the authors' model has an untied lm_head
    rope_base: float = 10000.0
    norm_eps: float = 1e-6
    init_std: float = 0.02
    # the tokenizer (genprune_nb.tokenizer) of the model's data and evaluations; a bytes model takes
    # vocab_size=padded_vocab("bytes") (320). Configs written before this field read as gpt2.
    tokenizer: str = "gpt2"

    def __post_init__(self) -> None:
        for name in ("n_layer", "n_head", "n_embd", "block_size", "vocab_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ConfigError(f"model.{name} must be a positive integer, got {value!r}")
        if self.n_embd % self.n_head:
            raise ConfigError(
                f"model.n_embd={self.n_embd} is not divisible by model.n_head={self.n_head}"
            )
        if self.head_dim % 2:
            raise ConfigError(
                f"head dimension n_embd/n_head = {self.head_dim} must be even for rotary embeddings"
            )
        try:
            n_vocab = get_tokenizer(self.tokenizer).n_vocab
        except TokenizerError as e:
            raise ConfigError(f"model.tokenizer: {e}") from None
        if self.vocab_size < n_vocab:
            raise ConfigError(f"model.vocab_size={self.vocab_size} is smaller than the vocabulary of model.tokenizer="
                              f"{self.tokenizer!r} ({n_vocab} ids)")

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    def recorded_fields(self) -> dict[str, Any]:
        """The fields as run and checkpoint fingerprints record them: the tokenizer only when it is not gpt2, so
        that the fingerprints of models made before the field existed (all GPT-2) stay the same."""
        fields = dataclasses.asdict(self)
        if fields["tokenizer"] == "gpt2":
            del fields["tokenizer"]
        return fields


@dataclass(frozen=True)
class TrainConfig:
    """One training run: batch geometry, optimizer, schedule, logging (DESIGN.md §3)."""

    batch_size: int = 512  # sequences per optimizer step, summed over devices and micro-steps
    micro_batch_size: int = 32  # sequences per forward on one device
    seq_len: int = 1024
    steps: int = 7000
    lr: float = 0.0018
    warmup_steps: int = 250
    decay_steps: int = 1750  # linear decay to min_lr over the last decay_steps
    min_lr_ratio: float = 0.0
    weight_decay: float = 0.1  # the paper's value (the authors' code ran with torch's default 0.01)
    beta1: float = 0.9
    beta2: float = 0.95
    adam_eps: float = 1e-8
    grad_clip: float = 1.0
    val_every: int = 250  # 0 disables; validation also runs after the last step
    val_tokens: int = 1_638_400  # the paper's val curves use ~1.64M tokens
    checkpoint_every: int = 1000  # 0: only at the end
    keep_checkpoints: tuple[int, ...] = ()  # steps whose checkpoints are never deleted
    keep_last: int = 2  # rolling checkpoints kept besides ``keep_checkpoints``
    log_every: int = 10
    seed: int = 1337  # model init (when not given) and, with ``shuffle``, the order of the training data
    shuffle: bool = False  # visit each shard's batches in a seeded order (sequential, as DESIGN.md §4, if False)
    compile: bool = False  # torch.compile (inductor; on CPU it needs a C++ compiler)
    autocast_dtype: str = "bfloat16"  # CUDA autocast; CPU runs in fp32 unless autocast_cpu
    autocast_cpu: bool = False  # autocast_dtype on CPU too (bf16 is fast where the CPU has it natively: AVX512-BF16)
    # dtype of the kept checkpoints (``keep_checkpoints``) once they serve evaluations only; the resumable ones stay
    # float32 (``checkpoint.to_evaluation``). bfloat16 halves their weights on disk
    kept_dtype: str = "float32"
    # positions per chunk of the training and validation loss (model.chunked_loss: the [micro batch x seq_len, vocab]
    # logits never exist whole); 0: the plain head and cross-entropy. The same loss up to fp rounding (which can still
    # flip a tie at a pruning threshold); at tiny's shapes on CPU 17-32% of the plain path's peak memory and faster
    # (bench/chunked_loss.py).
    loss_chunk: int = 1024

    def __post_init__(self) -> None:
        for name in ("batch_size", "micro_batch_size", "seq_len", "steps"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ConfigError(f"train.{name} must be a positive integer, got {value!r}")
        for name in ("warmup_steps", "decay_steps", "val_every", "checkpoint_every", "val_tokens", "keep_last",
                     "loss_chunk"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                raise ConfigError(f"train.{name} must be a non-negative integer, got {value!r}")
        if self.warmup_steps + self.decay_steps > self.steps:
            raise ConfigError(
                f"train.warmup_steps ({self.warmup_steps}) + train.decay_steps ({self.decay_steps}) "
                f"exceed train.steps ({self.steps})"
            )
        if self.lr <= 0:
            raise ConfigError(f"train.lr must be positive, got {self.lr!r}")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ConfigError(f"train.min_lr_ratio must lie in [0, 1], got {self.min_lr_ratio!r}")
        if self.autocast_dtype not in ("bfloat16", "float16", "float32"):
            raise ConfigError(f"train.autocast_dtype must be bfloat16, float16 or float32, got {self.autocast_dtype!r}")
        if self.kept_dtype not in KEPT_DTYPES:
            raise ConfigError(f"train.kept_dtype must be one of {KEPT_DTYPES}, got {self.kept_dtype!r}")

    def grad_accum_steps(self, world_size: int) -> int:
        """Micro-steps per optimizer step so that micro x world x accum = batch_size."""
        per_step = self.micro_batch_size * world_size
        if self.batch_size % per_step:
            raise ConfigError(
                f"train.batch_size={self.batch_size} is not divisible by "
                f"micro_batch_size ({self.micro_batch_size}) x world size ({world_size})"
            )
        return self.batch_size // per_step

    @property
    def tokens_per_step(self) -> int:
        return self.batch_size * self.seq_len


@dataclass(frozen=True)
class DataConfig:
    """The three disjoint corpora of a study: L (outer loop), S (inner loop) and val, as token shards.

    Offline presets tokenize a text corpus from the data catalog by documents: the first ``val_documents`` are
    val, the next ``small_documents`` are S, the rest L. FineWeb presets select downloaded shards by pattern
    (the paper: S = 100M tokens = one shard, L = 4B tokens = 40 shards).
    """

    corpus: str = "english_prose"  # a data-catalog name (genprune_nb.data.catalog)
    tokens_dir: str = "data/tokens/english_prose"
    shard_prefix: str = "english_prose"  # shards are {prefix}_{val,small,train}_NNNNNN.bin
    val_documents: int = 30
    small_documents: int = 15
    val_files: tuple[str, ...] = ("{prefix}_val_*.bin",)  # glob patterns in tokens_dir
    large_files: tuple[str, ...] = ("{prefix}_train_*.bin",)
    small_files: tuple[str, ...] = ("{prefix}_small_*.bin",)
    outer_stream: str = "continue"  # OUTER_STREAMS; "restart": every generation replays L from its first token

    def __post_init__(self) -> None:
        if self.outer_stream not in OUTER_STREAMS:
            raise ConfigError(f"data.outer_stream must be one of {OUTER_STREAMS}, got {self.outer_stream!r}")

    def patterns(self, corpus: str) -> list[str]:
        """Glob patterns of one corpus: ``val``, ``large`` (L) or ``small`` (S)."""
        if corpus not in ("val", "large", "small"):
            raise ConfigError(f"corpus must be val, large or small, got {corpus!r}")
        return [p.format(prefix=self.shard_prefix) for p in getattr(self, f"{corpus}_files")]


_FINEWEB = DataConfig(
    corpus="fineweb10B", tokens_dir="data/tokens/fineweb10B", shard_prefix="fineweb", val_documents=0,
    small_documents=0, val_files=("fineweb_val_000000.bin",), small_files=("fineweb_train_000001.bin",),
    large_files=("fineweb_train_00000[2-9].bin", "fineweb_train_0000[1-3][0-9].bin", "fineweb_train_00004[01].bin"),
)


@dataclass(frozen=True)
class OuterConfig:
    """The outer loop ("evolution"): generations of training, pruning and signed-constant re-init."""

    generations: int = 6
    prune_fraction: float = 0.2  # of each tensor's surviving weights, per generation
    criterion: str = "magnitude"  # magnitude (paper), random, attribution or structured (connectome.pruning)
    attribution_batches: int = 8  # micro-batches of L over which attribution / structured sum |w * dL/dw|
    group_sparsity: float = 0.0  # structured only: lambda of the group lasso on MLP units while training
    scope: str = "layer"  # "layer": per tensor (paper); "global": one threshold over all tensors
    prune_embeddings: bool = True  # also prune wte and lm_head (the authors' exemption is commented out); if False
    # they stay dense, outside the connectome, and every generation and inner run draws them from the random init
    ties: str = "authors"  # TIE_RULES: "authors" (floor, strict threshold: ties survive) or "exact" (round, by index)
    reinit: str = "constant"  # "constant": +-reinit_constant; "init_std": +- each tensor's init std (Zhou 2019)
    reinit_constant: float = 0.02
    sign_source: str = "trained"  # "trained": sign of the trained weight; "init": sign at the first init

    def __post_init__(self) -> None:
        if self.generations < 1:
            raise ConfigError(f"outer.generations must be >= 1, got {self.generations}")
        if not 0.0 < self.prune_fraction < 1.0:
            raise ConfigError(f"outer.prune_fraction must lie in (0, 1), got {self.prune_fraction}")
        if self.criterion not in CRITERIA:
            raise ConfigError(f"outer.criterion must be one of {CRITERIA}, got {self.criterion!r}")
        if self.attribution_batches < 1:
            raise ConfigError(f"outer.attribution_batches must be >= 1, got {self.attribution_batches}")
        if self.group_sparsity < 0:
            raise ConfigError(f"outer.group_sparsity must be >= 0, got {self.group_sparsity}")
        for name, allowed in (("scope", ("layer", "global")), ("reinit", ("constant", "init_std")),
                              ("sign_source", ("trained", "init")), ("ties", TIE_RULES)):
            if getattr(self, name) not in allowed:
                raise ConfigError(f"outer.{name} must be one of {allowed}, got {getattr(self, name)!r}")


@dataclass(frozen=True)
class InnerConfig:
    """The inner loop ("development"): conditions x seeds trained on the small corpus S."""

    conditions: tuple[str, ...] = CONDITIONS
    seeds: tuple[int, ...] = (0, 1, 2)
    keep_every: int = 100  # keep a checkpoint every this many steps (and at step 0) for the evaluations
    token_milestones: tuple[int, ...] = ()  # also keep checkpoints where these many tokens have been seen
    # Distilled: loss (1 - alpha) CE + alpha T^2 KL(teacher^T || student^T) (``training.distill``); the T^2 factor
    # (Hinton et al. 2015, section 2) keeps the soft term's gradients at scale. T = 2 and an even weight are this
    # package's defaults, fixed before any run (a sweep over them is the user's choice, not tuned here)
    distill_alpha: float = 0.5
    distill_temperature: float = 2.0
    distill_teacher: str = ""  # a checkpoint (step_* folder, or a run folder: its latest); "": outer generation 0's

    def __post_init__(self) -> None:
        if not self.conditions or not self.seeds:
            raise ConfigError("inner.conditions and inner.seeds must not be empty")
        if self.keep_every < 0:
            raise ConfigError(f"inner.keep_every must be >= 0, got {self.keep_every}")
        if not 0.0 <= self.distill_alpha <= 1.0:
            raise ConfigError(f"inner.distill_alpha must lie in [0, 1], got {self.distill_alpha!r}")
        if not self.distill_temperature > 0:
            raise ConfigError(f"inner.distill_temperature must be positive, got {self.distill_temperature!r}")


@dataclass(frozen=True)
class EvalConfig:
    """How much of each evaluation the notebooks run by default (0 / empty = everything), and which outer-budget sweep
    notebook 08 trains by default (empty: none, since a sweep costs several outer loops).

    CPU presets take a quick look; the paper-scale presets score everything. A notebook parameter that is not
    None overrides the preset's value.
    """

    limit: int = 0  # benchmark items per task (notebook 03)
    stories: tuple[int, ...] = ()  # Natural Stories ids (notebook 04)
    max_words: int = 0  # first words of each story (notebook 04)
    n_sentences: int = 0  # fMRI sentences (notebook 05)
    cka_tokens: int = 10_000  # val tokens whose representations CKA compares (notebook 06)
    scaling_sweep: str = ""  # the sweep notebook 08 runs by default ("short", "long"); "": none unless asked
    # the transmission conditions notebook 09 trains by default (TRANSMISSION_CONDITIONS); empty: 09 runs only when
    # asked (genprune reproduce --only 09), since it adds conditions x seeds inner runs
    bandwidth: tuple[str, ...] = ()

    def pick(self, name: str, value: Any = None) -> Any:
        """``value`` if given, else this preset's budget for ``name``; None (everything) for 0 or empty."""
        chosen = getattr(self, name) if value is None else value
        return (list(chosen) if isinstance(chosen, tuple) else chosen) or None


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    model: ModelConfig
    train: TrainConfig  # a plain run and each outer-loop generation
    inner_train: TrainConfig  # each inner-loop run
    data: DataConfig = field(default_factory=DataConfig)
    outer: OuterConfig = field(default_factory=OuterConfig)
    inner: InnerConfig = field(default_factory=InnerConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Preset":
        """Inverse of ``to_dict`` (JSON turns tuples into lists; they are turned back)."""
        sections = {name: _from_dict(kind, d.get(name, {})) for name, kind in _SECTIONS.items()}
        return cls(name=d["name"], description=d.get("description", ""), **sections)


def _from_dict(kind: type, values: dict[str, Any]):
    fields = {f.name: f for f in dataclasses.fields(kind)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(f"{kind.__name__} has no field(s) {unknown}")
    return kind(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


_SECTIONS = {"model": ModelConfig, "train": TrainConfig, "inner_train": TrainConfig, "data": DataConfig,
             "outer": OuterConfig, "inner": InnerConfig, "eval": EvalConfig}

PRESETS: dict[str, Preset] = {
    p.name: p
    for p in [
        Preset(
            "smoke",
            "seconds on CPU; for tests",
            ModelConfig(n_layer=2, n_head=2, n_embd=32, block_size=64),
            TrainConfig(batch_size=8, micro_batch_size=4, seq_len=64, steps=20, lr=3e-3, warmup_steps=5,
                        decay_steps=10, val_every=10, val_tokens=2048, checkpoint_every=10, log_every=5),
            TrainConfig(batch_size=8, micro_batch_size=8, seq_len=64, steps=10, lr=3e-3, warmup_steps=2,
                        decay_steps=6, val_every=5, val_tokens=2048, checkpoint_every=0, log_every=5, shuffle=True),
            outer=OuterConfig(generations=2),
            inner=InnerConfig(seeds=(0, 1), keep_every=5),
            eval=EvalConfig(limit=4, stories=(1,), max_words=40, n_sentences=40, cka_tokens=512,
                            bandwidth=TRANSMISSION_CONDITIONS),
        ),
        Preset(
            "tiny",
            "the CPU demo: the whole study in ~15 minutes on 2 cores (the 50k-vocabulary head dominates the cost)",
            ModelConfig(n_layer=4, n_head=4, n_embd=128, block_size=256),
            TrainConfig(batch_size=8, micro_batch_size=8, seq_len=128, steps=64, lr=3e-3, warmup_steps=8,
                        decay_steps=24, val_every=32, val_tokens=16_384, checkpoint_every=32, log_every=8,
                        kept_dtype="bfloat16"),
            TrainConfig(batch_size=8, micro_batch_size=8, seq_len=128, steps=48, lr=3e-3, warmup_steps=6,
                        decay_steps=42, val_every=12, val_tokens=16_384, checkpoint_every=0, log_every=8,
                        shuffle=True, kept_dtype="bfloat16"),
            inner=InnerConfig(seeds=(0, 1), keep_every=24),
            eval=EvalConfig(limit=50, stories=(1,), max_words=300, n_sentences=300, cka_tokens=4096),
        ),
        Preset(
            "cpu",
            "the science on 2 CPU cores (make demo): a byte-level GPT on the English prose corpus, the whole study (6 "
            "generations, 3 conditions x 5 seeds, evaluations, criteria, outer-budget sweep, bandwidth) in ~38 minutes",
            ModelConfig(n_layer=4, n_head=4, n_embd=128, block_size=256, tokenizer="bytes",
                        vocab_size=padded_vocab("bytes")),
            # loss_chunk=0: a 320-row head's logits are small, chunking saves neither memory nor time here
            # (bench/chunked_loss.py), and the plain path reproduces RESULTS.md bit for bit (the chunked one rounds
            # differently, which flips ties at the pruning threshold from generation 2 on)
            TrainConfig(batch_size=16, micro_batch_size=16, seq_len=128, steps=150, lr=2e-3, warmup_steps=15,
                        decay_steps=50, val_every=50, val_tokens=32_768, checkpoint_every=50, log_every=10,
                        loss_chunk=0),
            TrainConfig(batch_size=16, micro_batch_size=16, seq_len=128, steps=100, lr=2e-3, warmup_steps=10,
                        decay_steps=90, val_every=10, val_tokens=32_768, checkpoint_every=0, log_every=10,
                        shuffle=True, loss_chunk=0),
            DataConfig(tokens_dir="data/tokens/english_prose_bytes"),
            inner=InnerConfig(seeds=(0, 1, 2, 3, 4), keep_every=50),
            eval=EvalConfig(limit=50, stories=(1,), max_words=300, n_sentences=300, cka_tokens=4096,
                            scaling_sweep="short", bandwidth=TRANSMISSION_CONDITIONS),
        ),
        Preset(
            "small",
            "one GPU, minutes: the paper's recipe shape on the offline English prose corpus",
            ModelConfig(n_layer=6, n_head=6, n_embd=384, block_size=512),
            TrainConfig(batch_size=64, micro_batch_size=64, seq_len=512, steps=300, lr=0.0018, warmup_steps=40,
                        decay_steps=100, val_every=50, val_tokens=262_144, checkpoint_every=100, kept_dtype="bfloat16"),
            TrainConfig(batch_size=64, micro_batch_size=64, seq_len=512, steps=100, lr=0.0018, warmup_steps=12,
                        decay_steps=88, val_every=10, val_tokens=262_144, checkpoint_every=0, shuffle=True,
                        kept_dtype="bfloat16"),
            DataConfig(small_documents=40),
            inner=InnerConfig(keep_every=10),
        ),
        Preset(
            "gpt2-124m",
            "the paper's d12 model and recipe: 6 generations x 7,000 steps on L, 2,000 inner steps on S",
            ModelConfig(),
            TrainConfig(kept_dtype="bfloat16"),
            TrainConfig(steps=2000, warmup_steps=250, decay_steps=1750, val_every=100, checkpoint_every=0,
                        shuffle=True, kept_dtype="bfloat16"),
            _FINEWEB,
            inner=InnerConfig(token_milestones=(25_000_000, 50_000_000, 75_000_000, 100_000_000, 250_000_000,
                                                500_000_000, 750_000_000, 1_000_000_000)),
        ),
        Preset(
            "gpt2-417m",
            "the paper's scaled-up run, GPT-2-medium shape (24 layers, 16 heads, width 1024)",
            ModelConfig(n_layer=24, n_head=16, n_embd=1024),
            TrainConfig(micro_batch_size=16, kept_dtype="bfloat16"),
            TrainConfig(micro_batch_size=16, steps=2000, warmup_steps=250, decay_steps=1750, val_every=100,
                        checkpoint_every=0, shuffle=True, kept_dtype="bfloat16"),
            _FINEWEB,
        ),
    ]
}


def get_preset(name: str) -> Preset:
    """Return the named preset; an unknown name is refused with the list of known ones."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}") from None


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")
# an integer, or scientific notation of a whole number (1e3, 2.5e6: token counts); never a fraction such as 2.0
_INTEGER = re.compile(r"^[+-]?(\d[\d_]*|\d+(\.\d+)?[eE]\+?\d{1,2})$")


def _field_types(kind: type) -> dict[str, Any]:
    """The declared type of every field of a config section (``int``, ``tuple[int, ...]``, ...)."""
    return typing.get_type_hints(kind)


def _parse_value(value: Any, kind: Any) -> Any:
    """``value`` (a string from the command line, or a Python object from a notebook) as the type ``kind``.

    Nothing is coerced silently: ``1e-3`` or ``2.0`` for an int, ``3.5`` for an int, ``maybe`` for a bool and
    ``a,b`` for a tuple of ints are refused (ValueError with the reason); a string is parsed by the field's type.
    """
    if typing.get_origin(kind) is tuple:
        item = typing.get_args(kind)[0]
        items = [v.strip() for v in value.split(",") if v.strip()] if isinstance(value, str) else value
        if not isinstance(items, (list, tuple)):
            raise ValueError(f"expected a list, got {type(value).__name__}")
        parsed = []
        for i, v in enumerate(items):
            try:
                parsed.append(_parse_value(v, item))
            except ValueError as e:
                raise ValueError(f"item {i} ({v!r}): {e}") from None
        return tuple(parsed)
    if kind is bool:
        if isinstance(value, int) and value in (0, 1):  # bool is an int
            return bool(value)
        if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
            return value.strip().lower() in _TRUE
        raise ValueError(f"expected a bool ({'/'.join(_TRUE)} or {'/'.join(_FALSE)})")
    if kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and _INTEGER.match(value.strip()):
            number = decimal.Decimal(value.strip().replace("_", ""))
            if number == number.to_integral_value():
                return int(number)
        raise ValueError("expected an integer")
    if kind is float:
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                raise ValueError("expected a number") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError("expected a number")
        if not math.isfinite(value):
            raise ValueError("expected a finite number")
        return float(value)
    if kind is str:
        if isinstance(value, str):
            return value
        raise ValueError("expected a string")
    raise ValueError(f"fields of type {kind} cannot be overridden")


def override(preset: Preset, assignments: list[str] | dict[str, Any]) -> Preset:
    """Return ``preset`` with ``section.field=value`` assignments applied (sections: see ``_SECTIONS``)."""
    items = assignments.items() if isinstance(assignments, dict) else [_split(a) for a in assignments]
    sections = {name: getattr(preset, name) for name in _SECTIONS}
    changes: dict[str, dict[str, Any]] = {name: {} for name in sections}
    for key, value in items:
        section, _, name = key.partition(".")
        if section not in sections or not name:
            raise ConfigError(f"override {key!r}: expected section.field with section in {sorted(sections)}")
        obj = sections[section]
        if name not in {f.name for f in dataclasses.fields(obj)}:
            raise ConfigError(f"override {key!r}: {section} has no field {name!r}")
        kind = _field_types(type(obj))[name]
        try:
            changes[section][name] = _parse_value(value, kind)
        except ValueError as e:
            raise ConfigError(f"override {key}={value!r}: {e}") from None
    # all changes of a section at once, so interdependent fields (steps vs warmup) validate together
    return dataclasses.replace(
        preset, **{name: dataclasses.replace(obj, **changes[name]) for name, obj in sections.items()}
    )


def _split(assignment: str) -> tuple[str, str]:
    key, sep, value = assignment.partition("=")
    if not sep:
        raise ConfigError(f"override {assignment!r}: expected section.field=value")
    return key.strip(), value.strip()


def dumps(preset: Preset) -> str:
    return json.dumps(preset.to_dict(), indent=2, sort_keys=True)
