"""Analyses across checkpoints: representational similarity (CKA) between layers, models and generations, and
data efficiency (tokens to reach a loss, the effective data multiplier)."""
