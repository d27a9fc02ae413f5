"""Files that survive a kill: atomic writes and directory swaps, locks that keep one writer per run, writability
checks, and content digests (of files, tensors and records)."""
