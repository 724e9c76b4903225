"""A run's life: its inputs, the training session, loading and evaluating a model, checkpoints
(the only owner of their format), `--out` names, interrupts and artifacts."""
