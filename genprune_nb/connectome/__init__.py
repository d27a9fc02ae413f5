"""The wiring diagram: pruning criteria that decide which weights survive, the Connectome (signs, masks and
per-tensor scales that re-initialise a GPT) and its compact ternary file format."""
