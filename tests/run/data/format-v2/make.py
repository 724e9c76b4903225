"""How format-v2/ was made, with bptrain at commit ed0f9ee (before run/ was split):

    PYTHONPATH=<ed0f9ee>/src:tests python tests/run/data/format-v2/make.py tests/run/data/format-v2

A tiny idx dataset (6x6 images, 4 classes), a finished run (`complete.npz`: BatchNorm, Adam,
EMA and best weights) and the same run stopped in its second epoch after 2 steps
(`midway.npz`, with the shuffled sample order), both format version 2.
"""

import subprocess
import sys
from pathlib import Path

import yaml
from bptrain.run.experiment import DataOptions, config_of, load_dataset, prepare  # ed0f9ee

from bptrain.engine.train import fit
from bptrain.run import checkpoint
from conftest import make_idx_dataset

out = Path(sys.argv[1])
data = make_idx_dataset(out / "data", n_train=200, n_test=60, classes=4, seed=7, size=6)
config = {
    "seed": 11,
    "data": {"dataset": "idx", "validation": 40},
    "model": {
        "layers": [
            {"type": "flatten"},
            {"type": "affine", "units": 6},
            {"type": "batch_norm"},
            {"type": "relu"},
            {"type": "affine", "units": 4},
        ],
        "loss": {"type": "softmax_with_loss"},
    },
    "optimizer": {"type": "adam", "lr": 0.01},
    "train": {"epochs": 3, "batch_size": 32, "ema": 0.9},
}
(out / "run.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
subprocess.run(
    [
        sys.executable,
        "-m",
        "bptrain",
        "-q",
        "train",
        str(out / "run.yaml"),
        "--data-dir",
        str(data),
        "--out",
        str(out / "complete.npz"),
    ],
    check=True,
    stdout=subprocess.DEVNULL,
)

loaded = config_of(str(out / "run.yaml"))
dataset = load_dataset(loaded.config, DataOptions(data_dir=str(data)))
run = prepare(loaded.config, 11, dataset)
run.name = loaded.name


def stop() -> bool:  # after the second epoch's second step, as a Ctrl-C would
    return run.state.epoch == 1 and run.state.step == 2


state = fit(
    run.network,
    run.optimizer,
    run.all_train,
    rows=run.train_rows,
    epochs=3,
    batch_size=32,
    rng=run.rng,
    val=run.val,
    state=run.state,
    stop_requested=stop,
)
checkpoint.save(
    out / "midway.npz",
    run.network,
    run.optimizer,
    state,
    run.rng,
    run.info,
    metrics=state.history[-1] if state.history else {},
)
print(state.epoch, state.step)
