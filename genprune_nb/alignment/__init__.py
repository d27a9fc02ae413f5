"""Alignment with humans: reading times (behavior) and brain responses (neural)."""
