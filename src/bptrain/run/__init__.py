"""A run's life: its inputs (config, data, the run built from them), the training session,
loading and evaluating a trained model, the gradient check, checkpoints (checkpoint,
checkpoint_schema, checkpoint_read and restore: the only code that knows the file's layout),
where a checkpoint goes (outfile), pictures and tables (artifact), signals and threads."""
