"""The study: the outer loop (generations of training and pruning) and the inner loop (conditions x seeds), where
their outputs live, the kept checkpoints, the tidy results table, training curves and the notebook pipeline."""
