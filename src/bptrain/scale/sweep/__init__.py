"""`bptrain sweep`, hyperparameter search on Optuna. From the command to the workers:

- `main`: the command's work, from the checks to the summing up (`sweep`, `SweepRequest`);
- `spec`, `space`, `spec_configs`: the spec file, its search space, the configs it makes;
- `storage`, `journal`: where the study lives (a journal file that survives a full disk and a
  cut, or a database URL);
- `study`: opening the study before any trial (checkpoints, trials left running);
- `coordinator`: the worker processes (`worker`) and signals; `reporting` and `best_file`:
  what the user sees (records, lines, best.yaml).
"""
