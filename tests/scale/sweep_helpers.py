"""What the sweep tests share: a spec on the small config, the study behind a run, its records."""

from pathlib import Path

import optuna
import yaml

from bptrain.scale.sweep.storage import Storage
from cli_helpers import records

TRIAL_KEYS = {"event", "number", "params", "value", "state", "epochs", "seconds", "checkpoint"}
SWEEP_KEYS = {"event", "study", "storage", "best_trial", "best_params", "best_value",
              "n_complete", "n_pruned", "n_failed"}  # fmt: skip


def write_spec(folder: Path, config: Path, name: str = "spec", **keys) -> Path:
    spec = {
        "base": str(config),
        "set": {"train.epochs": 3},
        "space": {
            "optimizer.lr": {"log_uniform": [0.01, 0.3]},
            "model.layers[1].units": {"int": [8, 32], "step": 8},
        },
        "trials": 6,
        "seed": 1,
        **keys,
    }
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def study_of(storage: str, name: str):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.load_study(study_name=name, storage=Storage(storage, "://" in storage).open())


def split(stdout: str) -> tuple[list[dict], dict]:
    recs = records(stdout)
    assert recs[-1]["event"] == "sweep" and set(recs[-1]) == SWEEP_KEYS
    assert all(r["event"] == "trial" and set(r) == TRIAL_KEYS for r in recs[:-1])
    return recs[:-1], recs[-1]
