"""Configuration: model shape, training recipe and the named presets (smoke .. gpt2-417m).

Defaults follow DESIGN.md §2-§3 (the paper's d12 GPT and its recipe). Every deviation a researcher might
want is a field, never a constant buried in code; ``override`` applies ``section.field=value`` strings
from the command line or a notebook's parameters cell.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the field and the value."""


@dataclass(frozen=True)
class ModelConfig:
    """Shape of the GPT (DESIGN.md §2)."""

    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    block_size: int = 1024
    vocab_size: int = 50304  # GPT-2's 50,257 padded to a multiple of 64
    tie_embeddings: bool = False  # the authors' model has an untied lm_head
    rope_base: float = 10000.0
    norm_eps: float = 1e-6
    init_std: float = 0.02

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
        if self.vocab_size < 50257:
            raise ConfigError(
                f"model.vocab_size={self.vocab_size} is smaller than the GPT-2 vocabulary (50257)"
            )

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head


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
    seed: int = 1337
    compile: bool = False  # torch.compile, CUDA only
    autocast_dtype: str = "bfloat16"  # CUDA autocast; CPU runs in fp32

    def __post_init__(self) -> None:
        for name in ("batch_size", "micro_batch_size", "seq_len", "steps"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ConfigError(f"train.{name} must be a positive integer, got {value!r}")
        for name in ("warmup_steps", "decay_steps", "val_every", "checkpoint_every", "val_tokens", "keep_last"):
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
    """Which corpus a preset trains on and where its token shards live."""

    corpus: str = "english_prose"  # a data-catalog name (genprune_nb.data.catalog)
    tokens_dir: str = "data/tokens/english_prose"  # holds {shard_prefix}_val_*.bin and {shard_prefix}_train_*.bin
    shard_prefix: str = "english_prose"
    val_documents: int = 30  # first documents of the corpus held out for validation when preparing from text


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    model: ModelConfig
    train: TrainConfig
    data: DataConfig = field(default_factory=DataConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Preset":
        train = dict(d["train"])
        train["keep_checkpoints"] = tuple(train.get("keep_checkpoints", ()))
        return cls(
            name=d["name"],
            description=d.get("description", ""),
            model=ModelConfig(**d["model"]),
            train=TrainConfig(**train),
            data=DataConfig(**d.get("data", {})),
        )


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in [
        Preset(
            "smoke",
            "seconds on CPU; for tests",
            ModelConfig(n_layer=2, n_head=2, n_embd=32, block_size=64),
            TrainConfig(batch_size=8, micro_batch_size=4, seq_len=64, steps=20, lr=3e-3, warmup_steps=5,
                        decay_steps=10, val_every=10, val_tokens=2048, checkpoint_every=10, log_every=5),
        ),
        Preset(
            "tiny",
            "the CPU demo: ~5 minutes on a 2-core laptop (the 50k-vocabulary head dominates the cost)",
            ModelConfig(n_layer=4, n_head=4, n_embd=128, block_size=256),
            TrainConfig(batch_size=16, micro_batch_size=8, seq_len=128, steps=200, lr=3e-3, warmup_steps=20,
                        decay_steps=80, val_every=50, val_tokens=16_384, checkpoint_every=100, log_every=10),
        ),
        Preset(
            "small",
            "one GPU, minutes",
            ModelConfig(n_layer=6, n_head=6, n_embd=384, block_size=512),
            TrainConfig(batch_size=128, micro_batch_size=64, seq_len=512, steps=2000, lr=0.0018,
                        warmup_steps=100, decay_steps=700, val_every=100, val_tokens=524_288,
                        checkpoint_every=500),
        ),
        Preset(
            "gpt2-124m",
            "the paper's d12 model and recipe (one outer generation: 7,000 steps of 524,288 tokens)",
            ModelConfig(),
            TrainConfig(),
            DataConfig(corpus="fineweb10B", tokens_dir="data/tokens/fineweb10B", shard_prefix="fineweb", val_documents=0),
        ),
        Preset(
            "gpt2-417m",
            "the paper's scaled-up run, GPT-2-medium shape (24 layers, 16 heads, width 1024)",
            ModelConfig(n_layer=24, n_head=16, n_embd=1024),
            TrainConfig(micro_batch_size=16),
            DataConfig(corpus="fineweb10B", tokens_dir="data/tokens/fineweb10B", shard_prefix="fineweb", val_documents=0),
        ),
    ]
}


def get_preset(name: str) -> Preset:
    """Return the named preset; an unknown name is refused with the list of known ones."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}") from None


def _parse_value(text: str, current: Any) -> Any:
    if isinstance(current, bool):
        if text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(text)
    if isinstance(current, int):
        return int(float(text)) if "e" in text.lower() else int(text)
    if isinstance(current, float):
        return float(text)
    if isinstance(current, tuple):
        return tuple(int(v) for v in text.split(",") if v.strip()) if text.strip() else ()
    return text


def override(preset: Preset, assignments: list[str] | dict[str, Any]) -> Preset:
    """Return ``preset`` with ``section.field=value`` assignments applied (sections: model, train, data)."""
    items = assignments.items() if isinstance(assignments, dict) else [_split(a) for a in assignments]
    sections = {"model": preset.model, "train": preset.train, "data": preset.data}
    changes: dict[str, dict[str, Any]] = {name: {} for name in sections}
    for key, value in items:
        section, _, name = key.partition(".")
        if section not in sections or not name:
            raise ConfigError(f"override {key!r}: expected section.field with section in {sorted(sections)}")
        obj = sections[section]
        if name not in {f.name for f in dataclasses.fields(obj)}:
            raise ConfigError(f"override {key!r}: {section} has no field {name!r}")
        current = getattr(obj, name)
        if isinstance(value, str):
            try:
                value = _parse_value(value, current)
            except ValueError:
                raise ConfigError(f"override {key!r}: cannot read {value!r} as {type(current).__name__}") from None
        changes[section][name] = value
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
