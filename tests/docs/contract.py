"""What each shell command of the docs needs to run here, and what it must give.

The table is keyed by the command exactly as the pages show it (tests/docs/doc_commands.py
extracts them): a command added to a page fails test_every_doc_command_is_in_the_table until it
is classified here, and an entry whose command left the pages fails too. An entry either says
why it is not run (`skip`), or how: `run` is the command with what this machine needs added
(the shared MNIST copy, offline; small limits where the command would take minutes), `needs`
the prepared files it reads, `exit` its exit code, `out` the shape of its stdout, `files` what it
must leave behind, and `data`/`slow` whether it needs ../shared/data/mnist (such runs take
seconds each: they are behind the slow marker).
"""

from __future__ import annotations

from dataclasses import dataclass, field

DATA = "--data-dir ../shared/data/mnist --offline"
FASHION = "--data-dir ../shared/data/fashion-mnist --offline"
SMALL = f"{DATA} --set data.limit_train=1000 --epochs 1"  # seconds, not minutes


@dataclass(frozen=True)
class Entry:
    run: str | None = None  # None: the doc command as it is
    skip: str | None = None  # why it is not run here
    needs: tuple[str, ...] = ()  # prepared files (tests/docs/sandbox.py makes them)
    exit: int = 0
    out: str = "any"  # jsonl:EVENT, json, yaml, svg, png, text:SUBSTRING, empty, csv, any
    files: tuple[str, ...] = ()
    data: bool = False
    slow: bool = False
    env: dict[str, str] = field(default_factory=dict)
    # (command, option): run only once `bptrain COMMAND --help` lists OPTION; for options that
    # other changes of this session add (the test skips, saying so, until they are merged)
    option: tuple[str, str] | None = None
    # "self": the command is a server: started, its URL awaited on stderr, stopped with Ctrl-C
    # (then `exit` is 130). "client": the command talks to `bptrain serve runs/cnn.npz --port 0`,
    # started for it, at the address the page's examples call 127.0.0.1:8000.
    server: str | None = None


def _data(run: str, **kw) -> Entry:
    return Entry(run=run, data=True, slow=True, **kw)


NEEDS_MACHINES = "needs other machines (MPI hosts)"
SLURM = "part of the Slurm job script; needs Slurm and NFS"
POSTGRES = "needs a PostgreSQL server"


def _client(**kw) -> Entry:
    return Entry(needs=("runs/cnn.npz", "digit.png"), server="client", data=True, slow=True, **kw)


def _server(run: str) -> Entry:
    return Entry(run=run, needs=("runs/cnn.npz",), server="self", exit=130, data=True, slow=True)


TABLE: dict[str, Entry] = {
    # --- docs/export.md --------------------------------------------------------------------
    "pip install 'bptrain[export]' onnxruntime": Entry(
        skip="installs packages (the dev extra has them)"
    ),
    "bptrain export runs/my.npz --out my.onnx": _data(
        "bptrain export runs/my.npz --out my.onnx",
        needs=("runs/my.npz",),
        out="jsonl:export",
        files=("my.onnx",),
    ),
    "python examples/run_in_onnxruntime.py my.onnx pixels.npy": _data(
        "python examples/run_in_onnxruntime.py my.onnx pixels.npy",
        needs=("my.onnx", "pixels.npy"),
        out="json",
    ),
    "bptrain export runs/my.npz --out my.safetensors": _data(
        "bptrain export runs/my.npz --out my.safetensors",
        needs=("runs/my.npz",),
        out="jsonl:export",
        files=("my.safetensors",),
    ),
    "python examples/load_in_pytorch.py my.safetensors pixels.npy": _data(
        "python examples/load_in_pytorch.py my.safetensors pixels.npy",
        needs=("my.safetensors", "pixels.npy"),
        out="json",
    ),
    "bptrain train mlp --init-from my.safetensors --epochs 2": _data(
        f"bptrain train mlp --init-from my.safetensors {SMALL}",
        needs=("my.safetensors",),
        out="jsonl:summary",
    ),
    "bptrain train mlp --init-from my.safetensors --epochs 0 --out runs/imported.npz": _data(
        f"bptrain train mlp --init-from my.safetensors --epochs 0 --out runs/imported.npz {DATA}",
        needs=("my.safetensors",),
        out="jsonl:summary",
        files=("runs/imported.npz",),
    ),
    "pip install 'bptrain[tensorboard]'": Entry(skip="installs packages (the dev extra has them)"),
    "bptrain train mlp --tensorboard runs/tb": _data(
        f"bptrain train mlp --tensorboard runs/tb {SMALL}",
        out="jsonl:summary",
        files=("runs/tb",),
    ),
    "tensorboard --logdir runs/tb": Entry(skip="a server: TensorBoard serves until stopped"),
    "bptrain sweep examples/sweep-mlp.yaml --tensorboard runs/tb": _data(
        f"bptrain sweep examples/sweep-mlp.yaml --tensorboard runs/tb --workers 2 --trials 2 "
        f"{DATA}",
        out="jsonl:sweep",
        files=("runs/tb/trial-0000",),
    ),
    # --- docs/learn.md ---------------------------------------------------------------------
    "bptrain graph shop --format html --out shop.html": Entry(
        out="jsonl:graph", files=("shop.html",)
    ),
    "bptrain graph runs/cnn.npz --batch 20 --out cnn.html": _data(
        "bptrain graph runs/cnn.npz --batch 20 --out cnn.html",
        needs=("runs/cnn.npz",),
        out="jsonl:graph",
        files=("cnn.html",),
    ),
    "bptrain check examples/seed_layers.py": Entry(exit=1, out="jsonl:check"),
    "bptrain check examples/seed_layers.py:Relu --as relu": Entry(exit=1, out="jsonl:check"),
    "bptrain check examples/seed_layers_fixed.py": Entry(out="jsonl:check"),
    "bptrain train examples/own-layers.yaml --out runs/own.npz": _data(
        f"bptrain train examples/own-layers.yaml --out runs/own.npz {SMALL}",
        out="jsonl:summary",
        files=("runs/own.npz",),
        option=("eval", "--layers"),
    ),
    "bptrain gradcheck examples/own-layers.yaml": Entry(
        out="jsonl:gradcheck", option=("eval", "--layers")
    ),
    "bptrain eval runs/own.npz --layers examples/seed_layers_fixed.py": _data(
        f"bptrain eval runs/own.npz --layers examples/seed_layers_fixed.py {DATA}",
        needs=("runs/own.npz",),
        out="jsonl:eval",
        option=("eval", "--layers"),
    ),
    # --- README.md -------------------------------------------------------------------------
    "make train": Entry(
        skip="creates .venv and trains 18 epochs: `bptrain train` below runs the same command"
    ),
    "make test": Entry(skip="this test suite itself (CI runs it through .ci/run)"),
    "bptrain train": _data(f"bptrain train {SMALL}", out="jsonl:summary"),
    "bptrain train cnn --set train.epochs=3": _data(
        f"bptrain train cnn --set train.epochs=3 {DATA} --set data.limit_train=300 --epochs 1",
        out="jsonl:summary",
    ),
    "bptrain train my.yaml --out runs/my.npz": _data(
        f"bptrain train my.yaml --out runs/my.npz {SMALL}",
        needs=("my.yaml",),
        out="jsonl:summary",
        files=("runs/my.npz",),
    ),
    "cat my.yaml | bptrain train -": _data(
        f"cat my.yaml | bptrain train - {SMALL}", needs=("my.yaml",), out="jsonl:summary"
    ),
    "bptrain train --resume runs/my.npz": _data(
        f"bptrain train --resume runs/my.npz {DATA}", needs=("runs/my.npz",), out="jsonl:summary"
    ),
    "bptrain train --resume runs/my.npz --set train.epochs=20": _data(
        f"bptrain train --resume runs/my.npz --set train.epochs=2 {DATA}",
        needs=("runs/my.npz",),
        out="jsonl:epoch",
    ),
    "bptrain train mlp --print-config": Entry(out="yaml"),
    "bptrain eval runs/my.npz --split test": _data(
        f"bptrain eval runs/my.npz --split test {DATA}", needs=("runs/my.npz",), out="jsonl:eval"
    ),
    "bptrain gradcheck cnn": Entry(out="jsonl:gradcheck", slow=True),
    "bptrain download --dataset fashion-mnist": _data(
        f"bptrain download --dataset fashion-mnist {FASHION}", out="jsonl:download"
    ),
    "bptrain presets": Entry(out="jsonl:presets"),
    "bptrain summary cnn": Entry(out="text:Total params"),
    "bptrain graph shop --out shop.svg": Entry(out="jsonl:graph", files=("shop.svg",)),
    "bptrain plot runs/my.npz --out curves.png": _data(
        "bptrain plot runs/my.npz --out curves.png",
        needs=("runs/my.npz",),
        out="jsonl:plot",
        files=("curves.png",),
    ),
    "bptrain predict runs/my.npz my-digit.png": _data(
        "bptrain predict runs/my.npz my-digit.png",
        needs=("runs/my.npz", "my-digit.png"),
        out="jsonl:prediction",
    ),
    "bptrain serve runs/cnn.npz --open": Entry(
        skip="opens a browser and serves until stopped "
        "(tests/serve/ run the page in a real Chromium)"
    ),
    "bptrain sweep examples/sweep-mlp.yaml --workers 2": _data(
        f"bptrain sweep examples/sweep-mlp.yaml --workers 2 --trials 2 {DATA}",
        out="jsonl:sweep",
        files=("runs/sweep-mlp/best.yaml",),
    ),
    "mpiexec -n 2 bptrain train cnn": _data(
        f"mpiexec -n 2 bptrain train cnn {DATA} --set data.limit_train=300 --epochs 1",
        out="jsonl:summary",
    ),
    "bptrain train mlp | jq -c 'select(.event == \"epoch\") | [.epoch, .val_accuracy]'": _data(
        f'bptrain train mlp {SMALL} | jq -c \'select(.event == "epoch") | [.epoch, '
        ".val_accuracy]'",
        out="json",
    ),
    'bptrain train mlp | jq -r \'select(.event == "epoch") | [.epoch, .train_loss, .val_loss] '
    "| @csv'": _data(
        f'bptrain train mlp {SMALL} | jq -r \'select(.event == "epoch") | [.epoch, .train_loss,'
        " .val_loss] | @csv'",
        out="csv",
    ),
    'bptrain train mlp --target-accuracy 0.97 && echo "good enough"': _data(
        f'bptrain train mlp {SMALL} --target-accuracy 0.97 && echo "good enough"',
        exit=1,
        out="jsonl:summary",
    ),  # one small epoch misses 0.97: exit 1, and no echo
    'eval "$(_BPTRAIN_COMPLETE=bash_source bptrain)"': Entry(
        run='eval "$(_BPTRAIN_COMPLETE=bash_source bptrain)" && complete -p bptrain',
        out="text:complete",
    ),
    # --- docs/accuracy.md ------------------------------------------------------------------
    "OPENBLAS_NUM_THREADS=1 bptrain train speedrun --target-accuracy 0.99 | tail -1 | jq "
    "'{test_accuracy, wall_seconds, seconds_to_target}'": _data(
        f"OPENBLAS_NUM_THREADS=1 bptrain train speedrun {DATA} --target-accuracy 0.99 | tail -1"
        " | jq '{test_accuracy, wall_seconds, seconds_to_target}'",
        out="json",
    ),
    "OPENBLAS_NUM_THREADS=1 bptrain train cnn-deep --data-dir ../shared/data/mnist "
    "--offline": _data(
        f"OPENBLAS_NUM_THREADS=1 bptrain train cnn-deep {DATA} "
        "--set data.limit_train=200 --epochs 1",
        out="jsonl:summary",
    ),
    # --- docs/commands.md ------------------------------------------------------------------
    "bptrain predict runs/cnn.npz my-digit.jpg photos/": _data(
        "bptrain predict runs/cnn.npz my-digit.jpg photos/",
        needs=("runs/cnn.npz", "my-digit.jpg", "photos"),
        out="jsonl:prediction",
    ),
    "bptrain predict runs/cnn.npz scan.png --top-k 3 --save-preprocessed seen/": _data(
        "bptrain predict runs/cnn.npz scan.png --top-k 3 --save-preprocessed seen/",
        needs=("runs/cnn.npz", "scan.png"),
        out="jsonl:prediction",
        files=("seen",),
    ),
    "find photos -name '*.png' | bptrain predict runs/cnn.npz --files-from -": _data(
        "find photos -name '*.png' | bptrain predict runs/cnn.npz --files-from -",
        needs=("runs/cnn.npz", "photos"),
        out="jsonl:prediction",
    ),
    "find photos -name '*.png' -print0 | bptrain predict runs/cnn.npz -0 --files-from -": _data(
        "find photos -name '*.png' -print0 | bptrain predict runs/cnn.npz -0 --files-from -",
        needs=("runs/cnn.npz", "photos"),
        out="jsonl:prediction",
        option=("predict", "--null"),
    ),
    "cat digit.png | bptrain predict runs/cnn.npz -": _data(
        "cat digit.png | bptrain predict runs/cnn.npz -",
        needs=("runs/cnn.npz", "digit.png"),
        out="jsonl:prediction",
    ),
    "bptrain eval runs/cnn.npz --images my-digits/": _data(
        "bptrain eval runs/cnn.npz --images my-digits/",
        needs=("runs/cnn.npz", "my-digits"),
        out="jsonl:eval",
    ),
    "bptrain graph shop --out docs/graph-shop.svg": Entry(
        needs=("docs",), out="jsonl:graph", files=("docs/graph-shop.svg",)
    ),
    "bptrain graph shop-oranges --out docs/graph-shop-oranges.svg": Entry(
        needs=("docs",), out="jsonl:graph", files=("docs/graph-shop-oranges.svg",)
    ),
    "bptrain graph sigmoid --out docs/graph-sigmoid.svg": Entry(
        needs=("docs",), out="jsonl:graph", files=("docs/graph-sigmoid.svg",)
    ),
    "bptrain graph shop --set apple.price=120 --set tax=1.08 --format png > shop.png": Entry(
        out="empty", files=("shop.png",)
    ),
    "bptrain graph sigmoid --x -2 --set dout=0.5 --format json": Entry(out="json"),
    "bptrain train cnn --epochs 2 --out runs/cnn.npz": _data(
        f"bptrain train cnn --epochs 2 --out runs/cnn.npz {DATA} --set data.limit_train=300",
        out="jsonl:summary",
        files=("runs/cnn.npz",),
    ),
    "bptrain graph runs/cnn.npz --batch 100 --out docs/graph-cnn.svg": _data(
        f"bptrain graph runs/cnn.npz --batch 100 --out docs/graph-cnn.svg {DATA}",
        needs=("runs/cnn.npz", "docs"),
        out="jsonl:graph",
        files=("docs/graph-cnn.svg",),
    ),
    "bptrain graph cnn-deep --format mermaid": Entry(out="text:flowchart"),
    "bptrain train mlp | tee run.jsonl | jq -c 'select(.event == \"epoch\")'": _data(
        f"bptrain train mlp {SMALL} | tee run.jsonl | jq -c 'select(.event == \"epoch\")'",
        out="jsonl:epoch",
        files=("run.jsonl",),
    ),
    "bptrain plot run.jsonl --out curves.svg": _data(
        "bptrain plot run.jsonl --out curves.svg",
        needs=("run.jsonl",),
        out="jsonl:plot",
        files=("curves.svg",),
    ),
    "bptrain train mlp | bptrain plot - --out curves.png": _data(
        f"bptrain train mlp {SMALL} | bptrain plot - --out curves.png",
        out="jsonl:plot",
        files=("curves.png",),
    ),
    "bptrain plot runs/a.npz runs/b.npz --label 'lr 0.1' --label 'lr 0.5' --out compare.pdf": _data(
        "bptrain plot runs/a.npz runs/b.npz --label 'lr 0.1' --label 'lr 0.5' --out compare.pdf",
        needs=("runs/a.npz", "runs/b.npz"),
        out="jsonl:plot",
        files=("compare.pdf",),
    ),
    "bptrain eval runs/my.npz > eval.jsonl && bptrain plot eval.jsonl --out confusion.png": _data(
        f"bptrain eval runs/my.npz {DATA} > eval.jsonl && bptrain plot eval.jsonl "
        "--out confusion.png",
        needs=("runs/my.npz",),
        out="jsonl:plot",
        files=("eval.jsonl", "confusion.png"),
    ),
    "mkdir -p runs/docs": Entry(out="empty", files=("runs/docs",)),
    "bptrain train mlp --data-dir ../shared/data/mnist --offline --out runs/docs/mlp.npz -q > "
    "runs/docs/mlp.jsonl": _data(
        "mkdir -p runs/docs && bptrain train mlp --data-dir ../shared/data/mnist --offline "
        "--out runs/docs/mlp.npz -q --set data.limit_train=1000 --epochs 1 > runs/docs/mlp.jsonl",
        out="empty",
        files=("runs/docs/mlp.npz", "runs/docs/mlp.jsonl"),
    ),
    "bptrain train mlp-deep --epochs 15 --data-dir ../shared/data/mnist --offline --out "
    "runs/docs/mlp-deep.npz -q > runs/docs/mlp-deep.jsonl": _data(
        "mkdir -p runs/docs && bptrain train mlp-deep --epochs 15 --data-dir "
        "../shared/data/mnist --offline --out runs/docs/mlp-deep.npz -q "
        "--set data.limit_train=300 --epochs 1 > runs/docs/mlp-deep.jsonl",
        out="empty",
        files=("runs/docs/mlp-deep.npz",),
    ),
    "bptrain eval runs/docs/mlp-deep.npz -q > runs/docs/mlp-deep-eval.jsonl": _data(
        f"bptrain eval runs/docs/mlp-deep.npz -q {DATA} > runs/docs/mlp-deep-eval.jsonl",
        needs=("runs/docs/mlp-deep.npz",),
        out="empty",
        files=("runs/docs/mlp-deep-eval.jsonl",),
    ),
    "bptrain plot runs/docs/mlp.npz runs/docs/mlp-deep.npz --out docs/curves.png "
    "--overwrite": _data(
        "bptrain plot runs/docs/mlp.npz runs/docs/mlp-deep.npz --out docs/curves.png --overwrite",
        needs=("runs/docs/mlp.npz", "runs/docs/mlp-deep.npz", "docs"),
        out="jsonl:plot",
        files=("docs/curves.png",),
    ),
    "bptrain plot runs/docs/mlp-deep-eval.jsonl --out docs/confusion.png --overwrite": _data(
        "bptrain plot runs/docs/mlp-deep-eval.jsonl --out docs/confusion.png --overwrite",
        needs=("runs/docs/mlp-deep-eval.jsonl", "docs"),
        out="jsonl:plot",
        files=("docs/confusion.png",),
    ),
    "pip install 'bptrain[serve]'": Entry(skip="installs packages (the dev extra has them)"),
    "bptrain train cnn --epochs 2": _data(
        f"bptrain train cnn --epochs 2 {DATA} --set data.limit_train=300", out="jsonl:summary"
    ),
    "bptrain serve runs/cnn.npz --port 0": _server("bptrain serve runs/cnn.npz --port 0"),
    "bptrain serve runs/cnn.npz --host 0.0.0.0": _server(
        "bptrain serve runs/cnn.npz --host 0.0.0.0 --port 0"  # a free port, not 8000
    ),
    "curl -s --data-binary @digit.png -H 'Content-Type: image/png' "
    "http://127.0.0.1:8000/api/predict": _client(out="jsonl:prediction"),
    "curl -s --data-binary @digit.png -H 'Content-Type: image/png' "
    "'http://127.0.0.1:8000/api/predict?details=1&class=3'": _client(out="jsonl:prediction"),
    "curl -s -H 'Content-Type: application/json' -d '{\"image\": "
    '"data:image/png;base64,iVBO..."}\' http://127.0.0.1:8000/api/predict': _client(out="json"),
    "curl -s http://127.0.0.1:8000/api/model": _client(out="jsonl:model"),
    # --- docs/scale.md ---------------------------------------------------------------------
    "bptrain sweep examples/sweep-mlp.yaml --workers 2 --data-dir ../shared/data/mnist "
    "--offline": _data(
        f"bptrain sweep examples/sweep-mlp.yaml --workers 2 --trials 2 {DATA}",
        out="jsonl:sweep",
        files=("runs/sweep-mlp/best.yaml",),
    ),
    "bptrain train runs/sweep-mlp/best.yaml --threads 1": _data(
        f"bptrain train runs/sweep-mlp/best.yaml --threads 1 {DATA}",
        needs=("runs/sweep-mlp",),
        out="jsonl:summary",
    ),
    "bptrain sweep examples/sweep-mlp.yaml --trials 30": _data(
        f"bptrain sweep examples/sweep-mlp.yaml --trials 3 {DATA}",
        needs=("runs/sweep-mlp",),
        out="jsonl:sweep",
    ),  # the study goes on: 2 trials there, one more here
    'bptrain sweep my-sweep.yaml | jq -c \'select(.event == "trial") | [.number, .value, '
    ".params]'": _data(
        f'bptrain sweep my-sweep.yaml {DATA} | jq -c \'select(.event == "trial") | [.number, '
        ".value, .params]'",
        needs=("my-sweep.yaml",),
        out="json",
    ),
    "bptrain sweep sweep-mlp.yaml --out /nfs/sweeps/mlp --workers 4 --data-dir /data/mnist "
    "--offline": Entry(skip="needs other machines sharing an NFS folder"),
    "pip install 'bptrain[sweep]' psycopg2-binary": Entry(skip=POSTGRES),
    "createdb -h db.example sweeps": Entry(skip=POSTGRES),
    "export PGPASSWORD=...": Entry(skip=POSTGRES),
    "bptrain sweep sweep-mlp.yaml --storage postgresql://me@db.example/sweeps --study mlp-v1 "
    "--out /scratch/$USER/mlp --workers 4": Entry(skip=POSTGRES),
    "set -euo pipefail": Entry(skip=SLURM),
    "mkdir -p results": Entry(skip=SLURM),
    "exec bptrain sweep sweep-mlp.yaml --storage /nfs/sweeps/mlp.journal --study mlp-v1 --out "
    '/nfs/sweeps/mlp --workers "$SLURM_CPUS_PER_TASK" --data-dir /nfs/data/mnist --offline > '
    '"results/task-$SLURM_ARRAY_TASK_ID.jsonl"': Entry(skip=SLURM),
    "mpiexec -n 2 bptrain train cnn --out runs/cnn.npz": _data(
        f"mpiexec -n 2 bptrain train cnn --out runs/cnn.npz {DATA} --set data.limit_train=300 "
        "--epochs 1",
        out="jsonl:summary",
        files=("runs/cnn.npz",),
    ),
    "mpiexec -n 8 -hosts a:4,b:4 bptrain train cnn-deep": Entry(skip=NEEDS_MACHINES),
    "srun -n 16 --mpi=pmi2 bptrain train cnn-deep --out /nfs/runs/deep.npz": Entry(
        skip="needs Slurm"
    ),
}
