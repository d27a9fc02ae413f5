"""Validation loss on the preset's held-out shards, as a benchmark (the evals' view of Figure 1B-i's curve)."""
from __future__ import annotations

from ..loss import preset_val_loss
from ..registry import Benchmark, Evaluator, Settings, register


def _prepare(s: Settings) -> Evaluator:
    if s.preset is None:
        raise ValueError("benchmark 'val_loss' needs the checkpoints' preset (its val shards and sequence length)")
    preset = s.preset
    return lambda model: [preset_val_loss(model, preset, schedule=s.schedule, limit=s.limit)]


register(Benchmark("val_loss", "loss on the preset's val shards (the schedule's val_tokens tokens; limit = sequences)",
                   _prepare, ("loss",), "loss"))
