"""Training one run: the loop (accumulation, DDP, validation, resume), the masked AdamW step, the learning-rate
schedule, checkpoints, the metrics log and the fingerprint that decides whether a run may continue."""
