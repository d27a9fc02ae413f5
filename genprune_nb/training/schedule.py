"""Learning-rate schedule: linear warmup, hold at the peak, linear decay over the last steps (DESIGN.md §3)."""
from __future__ import annotations

from ..config import TrainConfig


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Learning rate for optimizer step ``step`` (0-based) of a run of ``cfg.steps`` steps.

    Warmup: ``lr * (step + 1) / warmup_steps``; decay: the multiplier falls linearly from 1 to ``min_lr_ratio``
    over the last ``decay_steps`` (reaching ``min_lr_ratio + (1 - min_lr_ratio) / decay_steps`` at the last step).
    """
    if not 0 <= step < cfg.steps:
        raise ValueError(f"step {step} outside the run's 0..{cfg.steps - 1}")
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    decay_start = cfg.steps - cfg.decay_steps
    if step < decay_start:
        return cfg.lr
    remaining = (cfg.steps - step) / cfg.decay_steps
    return cfg.lr * (cfg.min_lr_ratio + (1.0 - cfg.min_lr_ratio) * remaining)
