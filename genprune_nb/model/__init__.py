"""The GPT (DESIGN.md §2) and what running it as a language model needs: autocast, next-token log-probabilities,
validation loss, and hidden states by layer for sentences and token windows (the one feature extractor)."""
