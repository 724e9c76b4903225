"""Speed benchmark: bptrain's training epochs against PyTorch eager and against its own GEMMs.

    make bench                 # or: python benchmarks/speed.py [--repeats 5]
    make bench ARGS="--threads 1"    # 1 BLAS/PyTorch thread only (default: 1 and 2)

Times one training epoch (batch 100, float32) of each network below, median of --repeats runs,
with bptrain's real network, optimizer, metrics and a progress bar (drawn to /dev/null);
evaluation throughput; loading the dataset from the cache; peak memory of a full-size training
run. When PyTorch is installed (not a dependency: `pip install torch==2.13.0`), the same networks
run in PyTorch eager in a worker process of its own, epochs of the two taking turns (a slow
spell of a shared machine then hits both), and the table shows bptrain time / PyTorch time.
Uses the real Fashion-MNIST beside the repository when present, random data of the same shape
otherwise. `--threads 1,2` (the default) times every network at each thread count in turn
(NumPy's BLAS through threadpoolctl, bptrain's compiled loops, torch.set_num_threads), one
table per count; 0 keeps the environment's (OPENBLAS_NUM_THREADS, ...). The JSON records the
count of each pass.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from bptrain.accel import kernels
from bptrain.config import load_config
from bptrain.engine.network import Network
from bptrain.engine.optimizers import OPTIMIZERS
from bptrain.engine.train import FitHooks, FitOptions, fit
from bptrain.run.parts import PARTS
from common import ROOT, fashion_dir, machine, median_time, mnist_shaped, write_json

AFFINE = "affine"
# The environment the PyTorch worker starts with: this process's before bptrain's compiled
# loops load (they set OMP_WAIT_POLICY for their own runtime, not for PyTorch's).
WORKER_ENV = dict(os.environ)


@dataclass
class Runner:
    """A network's epoch, which returns its own wall time, and what to measure after."""

    epoch: Callable[[], float]
    finish: Callable[[int], dict]


def timed(fn: Callable[[], object]) -> Callable[[], float]:
    """fn, returning the seconds it took."""

    def run() -> float:
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start

    return run


@dataclass
class Bench:
    """One network to time: bptrain specs, its optimizer, how many samples make an 'epoch'."""

    name: str
    layers: list[dict]
    optimizer: dict
    samples: int
    target: float | None  # bptrain time / PyTorch time must be at most this
    results: dict = field(default_factory=dict)


def _preset(name: str) -> tuple[list[dict], dict]:
    cfg = load_config(name, parts=PARTS).config
    return list(cfg.model.layers), dict(cfg.optimizer)


def benches() -> list[Bench]:
    mlp_layers, mlp_opt = _preset("mlp")
    cnn_layers, cnn_opt = _preset("cnn")
    deep_cnn_layers, deep_cnn_opt = _preset("cnn-deep")
    sigmoid = [
        dict(spec, type="sigmoid") if spec["type"] == "relu" else spec for spec in mlp_layers
    ]
    deep = [
        {"type": "flatten"},
        {"type": AFFINE, "units": 100},
        {"type": "relu"},
        {"type": AFFINE, "units": 100},
        {"type": "relu"},
        {"type": AFFINE, "units": 10},
    ]
    return [
        Bench("mlp preset: 784-50-10 ReLU", mlp_layers, mlp_opt, 60000, 0.67),
        Bench("784-50-10 sigmoid (the seed's)", sigmoid, mlp_opt, 60000, 0.67),
        Bench("784-100-100-10 ReLU", deep, mlp_opt, 60000, 0.85),
        Bench("cnn preset: SimpleConvNet", cnn_layers, cnn_opt, 10000, 0.7),
        Bench("cnn-deep preset: 2 conv+BN blocks", deep_cnn_layers, deep_cnn_opt, 5000, 0.7),
    ]


# --- bptrain ---------------------------------------------------------------------------------


class _NullProgress:
    """bptrain's real progress bar, drawn into /dev/null so its cost is counted."""

    def __init__(self) -> None:
        from tqdm import tqdm

        self.sink = open(os.devnull, "w")  # noqa: SIM115 (lives as long as the benchmark)
        self.bar = tqdm(total=10**9, file=self.sink, unit="batch", mininterval=0.1)

    def __call__(self, state, steps, loss) -> None:
        self.bar.update(1)
        if state.step % 20 == 0:
            self.bar.set_postfix_str(f"loss {loss:.4f}", refresh=False)


def bptrain_runner(bench: Bench, data) -> Runner:
    """One bptrain training epoch of `bench` to time, and its evaluation figures after."""
    x, t, x_test, t_test = data
    rng = np.random.default_rng(0)
    net = Network.from_specs(bench.layers, x.shape[1:], rng=rng, num_classes=10)
    opt = OPTIMIZERS.build(bench.optimizer)
    train = (x[: bench.samples], t[: bench.samples])
    progress = _NullProgress()
    one_epoch = FitOptions(epochs=1, batch_size=100)

    def epoch() -> None:
        fit(net, opt, train, one_epoch, rng=rng, hooks=FitHooks(on_batch=progress))

    def finish(repeats: int) -> dict:
        eval_seconds, _ = median_time(lambda: net.evaluate(x_test, t_test, 1000), repeats)
        return {
            "eval_samples_per_second": x_test.shape[0] / eval_seconds,
            "test_accuracy_after_timing": net.accuracy(x_test, t_test),
        }

    return Runner(timed(epoch), finish)


def time_gemms(bench: Bench, data, repeats: int, threads: int) -> float:
    """The floor: only the matrix products one epoch of this network needs, nothing else,
    as NumPy's matmul on `threads` BLAS threads (bptrain itself may run its products in
    pieces on its own threads with BLAS on one, kernels.products())."""
    x = data[0]
    rng = np.random.default_rng(0)
    net = Network.from_specs(bench.layers, x.shape[1:], rng=rng, num_classes=10)
    batch, steps = 100, bench.samples // 100
    products = []  # (A, B) pairs with the operand layouts the layers use
    first = True
    for layer, out_shape in zip(net.layers, net.shapes, strict=True):
        W = layer.params.get("W")
        if W is None:
            continue
        if W.ndim == 2:  # affine: forward x W, dW = x^T dout, dx = dout W^T
            xa = rng.random((batch, W.shape[0]), dtype=np.float32)
            dout = rng.random((batch, W.shape[1]), dtype=np.float32)
            products += [(xa, W), (xa.T, dout)] + ([] if first else [(dout, W.T)])
        else:  # conv via im2col: cols (N*OH*OW, C*KH*KW) times filters (C*KH*KW, F)
            rows = batch * out_shape[1] * out_shape[2]  # out_shape is (F, OH, OW)
            k = int(np.prod(W.shape[1:]))
            col = rng.random((rows, k), dtype=np.float32)
            wmat = rng.random((k, W.shape[0]), dtype=np.float32)
            dout = rng.random((rows, W.shape[0]), dtype=np.float32)
            products += [(col, wmat), (col.T, dout)] + ([] if first else [(dout, wmat.T)])
        first = False

    def epoch() -> None:
        for _ in range(steps):
            for a, b in products:
                a @ b

    return median_time(epoch, repeats)[0]


# --- PyTorch ---------------------------------------------------------------------------------


def torch_model(bench: Bench, input_shape):
    """The bptrain network as an nn.Sequential: same layers, He-normal weights, zero biases."""
    import torch.nn as nn

    modules, shape = [], tuple(input_shape)
    for spec in bench.layers:
        module, shape = _torch_layer(spec, shape)
        modules.append(module)
    for module in modules:
        if isinstance(module, (nn.Linear, nn.Conv2d)):  # bptrain's init: he (normal, fan in)
            nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
            nn.init.zeros_(module.bias)
    return nn.Sequential(*modules)


def _torch_layer(spec: dict, shape: tuple):
    """(module, output shape) for one bptrain layer spec on input `shape` (no batch axis)."""
    import torch.nn as nn

    kind = spec["type"]
    if kind == "flatten":
        return nn.Flatten(), (int(np.prod(shape)),)
    if kind == AFFINE:
        return nn.Linear(int(np.prod(shape)), spec["units"]), (spec["units"],)
    if kind in ("relu", "sigmoid"):
        return (nn.ReLU() if kind == "relu" else nn.Sigmoid()), shape
    if kind == "dropout":
        return nn.Dropout(spec.get("rate", 0.5)), shape
    if kind == "batch_norm":
        # PyTorch's momentum weighs the new batch, bptrain's the running value: 1 - 0.9.
        momentum, eps = 1 - spec.get("momentum", 0.9), spec.get("eps", 1e-5)
        norm = nn.BatchNorm2d if len(shape) == 3 else nn.BatchNorm1d
        return norm(shape[0], eps=eps, momentum=momentum), shape
    if kind == "conv2d":
        k, s = _pair(spec.get("kernel", 3)), spec.get("stride", 1)
        p = spec.get("padding", 0)
        p = ((k[0] - 1) // 2, (k[1] - 1) // 2) if p == "same" else _pair(p)
        size = [(shape[1 + a] + 2 * p[a] - k[a]) // s + 1 for a in (0, 1)]
        return nn.Conv2d(shape[0], spec["filters"], k, s, p), (spec["filters"], *size)
    if kind == "max_pool2d":
        size = spec.get("size", 2)
        stride = spec.get("stride") or size
        out = [(shape[1 + a] - size) // stride + 1 for a in (0, 1)]
        return nn.MaxPool2d(size, stride), (shape[0], *out)
    raise ValueError(f"no PyTorch twin for layer {kind!r}")


def _pair(value) -> tuple[int, int]:
    return tuple(value) if isinstance(value, (list, tuple)) else (value, value)


def torch_runner(bench: Bench, data) -> Runner:
    """The same epoch in PyTorch eager (in the worker process, see TorchWorker)."""
    import torch
    import torch.nn.functional as F

    x, t, x_test, _t_test = data
    X, T = torch.from_numpy(x[: bench.samples]), torch.from_numpy(t[: bench.samples])
    model = torch_model(bench, x.shape[1:])
    kind, lr = bench.optimizer["type"], bench.optimizer.get("lr", 0.01)
    opt = (
        torch.optim.Adam(model.parameters(), lr=lr)
        if kind == "adam"
        else torch.optim.SGD(model.parameters(), lr=lr)
    )
    n = X.shape[0]

    def epoch() -> None:
        model.train()
        perm = torch.randperm(n)
        loss_sum, correct = 0.0, 0
        for start in range(0, n, 100):
            idx = perm[start : start + 100]
            xb, tb = X[idx], T[idx]
            opt.zero_grad(set_to_none=True)
            out = model(xb)
            loss = F.cross_entropy(out, tb)
            loss.backward()
            opt.step()
            loss_sum += loss.item() * len(idx)  # the same per-batch metrics bptrain keeps
            correct += int((out.argmax(1) == tb).sum())

    Xt = torch.from_numpy(x_test)

    def evaluate() -> None:
        model.eval()  # BatchNorm on running statistics, no dropout: as bptrain evaluates
        with torch.no_grad():
            for start in range(0, Xt.shape[0], 1000):
                model(Xt[start : start + 1000]).argmax(1)

    def finish(repeats: int) -> dict:
        eval_seconds, _ = median_time(evaluate, repeats)
        return {
            "version": torch.__version__,
            "threads": torch.get_num_threads(),
            "eval_samples_per_second": Xt.shape[0] / eval_seconds,
        }

    return Runner(timed(epoch), finish)


class TorchWorker:
    """PyTorch in a process of its own, answering one JSON line per request.

    Not in this process: PyTorch brings its own OpenMP runtime, and once it is loaded the
    compiled loops' threads run on it with its settings (threads that spin after each loop,
    not the sleeping ones bptrain asks for): a cnn epoch on two threads took 6 s instead of
    1.2 s. No bptrain user has PyTorch in the process, so neither does the benchmark.
    """

    def __init__(self) -> None:
        import subprocess

        self.process = subprocess.Popen(
            [sys.executable, __file__, "--torch-worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=WORKER_ENV,
        )

    def ask(self, **request) -> dict:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        answer = self.process.stdout.readline()
        if not answer:
            raise RuntimeError(f"the PyTorch worker ended (exit {self.process.wait()})")
        return json.loads(answer)

    def runner(self, bench: Bench, threads: int) -> Runner:
        self.ask(bench=bench.name, threads=threads)
        return Runner(lambda: self.ask(epoch=True)["seconds"], lambda r: self.ask(finish=r))

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.process.wait()


def torch_worker() -> None:
    """The worker's side: requests on stdin, one JSON answer per line on stdout."""
    import torch

    _, data = mnist_shaped()
    named = {b.name: b for b in benches()}
    runner = None
    for line in sys.stdin:
        request = json.loads(line)
        if "bench" in request:
            torch.set_num_threads(max(1, request["threads"]))
            runner, answer = torch_runner(named[request["bench"]], data), {"ready": True}
        elif "epoch" in request:
            answer = {"seconds": runner.epoch()}
        else:
            answer = runner.finish(request["finish"])
        print(json.dumps(answer), flush=True)


def time_interleaved(runners: dict[str, Runner | None], repeats: int) -> dict[str, dict | None]:
    """Each runner's median epoch, the runners taking turns (A B A B ...) after one warm-up
    epoch each: on a shared machine a slow spell then slows both sides, not the one that
    happened to run during it, so their ratio stays fair."""
    active = {name: r for name, r in runners.items() if r is not None}
    times: dict[str, list[float]] = {name: [] for name in active}
    for runner in active.values():
        runner.epoch()
    for _ in range(repeats):
        for name, runner in active.items():
            times[name].append(runner.epoch())
    results: dict[str, dict | None] = {name: None for name in runners}
    for name, runner in active.items():
        results[name] = {
            "seconds": statistics.median(times[name]),
            "runs": times[name],
            **runner.finish(repeats),
        }
    return results


# --- loading and memory ----------------------------------------------------------------------


def time_loading(repeats: int) -> float | None:
    folder = fashion_dir()
    if folder is None:
        return None
    from bptrain.data import load

    return median_time(lambda: load("fashion-mnist", folder, offline=True, quiet=True), repeats)[0]


PEAK_SCRIPT_TORCH = """
import sys, numpy as np, torch, torch.nn as nn, torch.nn.functional as F
sys.path.insert(0, {bench_dir!r})
from common import mnist_shaped
_, (x, t, xt, tt) = mnist_shaped()
X, T = torch.from_numpy(x), torch.from_numpy(t)
model = nn.Sequential(nn.Flatten(), nn.Linear(784, 50), nn.ReLU(), nn.Linear(50, 10))
opt = torch.optim.SGD(model.parameters(), lr=0.1)
perm = torch.randperm(X.shape[0])
for s in range(0, X.shape[0], 100):
    idx = perm[s:s + 100]
    opt.zero_grad(); F.cross_entropy(model(X[idx]), T[idx]).backward(); opt.step()
with torch.no_grad():
    model(torch.from_numpy(xt)).argmax(1)
"""


def peak_mib(command: list[str]) -> float:
    """Peak resident memory (MiB) of a child process, from the kernel's rusage.

    Linux carries the parent's peak into a child's ru_maxrss across fork and exec (even with
    posix_spawn), so main() measures memory first, while this process is still small.
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        pid = os.posix_spawn(
            command[0],
            command,
            dict(os.environ),
            file_actions=[(os.POSIX_SPAWN_DUP2, devnull, 1), (os.POSIX_SPAWN_DUP2, devnull, 2)],
        )
    finally:
        os.close(devnull)
    _, status, usage = os.wait4(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise RuntimeError(f"{command} exited {code}")
    return usage.ru_maxrss / 1024  # ru_maxrss is in KiB on Linux


def measure_memory(has_torch: bool) -> dict:
    folder = fashion_dir()
    with tempfile.TemporaryDirectory() as tmp:
        if folder is not None:
            args = ["--set", "data.dataset=fashion-mnist", "--data-dir", str(folder), "--offline"]
        else:
            from bptrain.data import FILE_NAMES  # noqa: F401  (random data needs IDX files)

            args = _random_idx_args(Path(tmp))
        command = [
            sys.executable,
            "-m",
            "bptrain",
            "-q",
            "train",
            "mlp",
            "--set",
            "train.epochs=1",
            "--out",
            str(Path(tmp) / "m.npz"),
            *args,
        ]
        result = {"bptrain_mib": peak_mib(command)}
    if has_torch:
        script = PEAK_SCRIPT_TORCH.format(bench_dir=str(ROOT / "benchmarks"))
        result["torch_mib"] = peak_mib([sys.executable, "-c", script])
    return result


def _random_idx_args(folder: Path) -> list[str]:
    import gzip
    import struct

    rng = np.random.default_rng(0)
    for prefix, n in (("train", 60000), ("t10k", 10000)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, n).astype(np.uint8)
        for kind, arr in (("images-idx3", images), ("labels-idx1", labels)):
            head = struct.pack(">BBBB", 0, 0, 8, arr.ndim) + struct.pack(
                f">{arr.ndim}I", *arr.shape
            )
            (folder / f"{prefix}-{kind}-ubyte.gz").write_bytes(
                gzip.compress(head + arr.tobytes(), 1)
            )
    return ["--set", "data.dataset=idx", "--data-dir", str(folder), "--offline"]


# --- report ----------------------------------------------------------------------------------


def table(rows: list[Bench], extra: dict) -> str:
    lines = [
        "| network | samples/epoch | bptrain s | PyTorch s | bptrain/PyTorch | target | "
        "GEMM floor s | bptrain/floor |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for b in rows:
        r = b.results
        torch_s = r.get("torch", {}).get("seconds") if r.get("torch") else None
        ratio = r["bptrain"]["seconds"] / torch_s if torch_s else None
        ok = "" if ratio is None else (" ✓" if ratio <= b.target else " ✗")
        lines.append(
            f"| {b.name} | {b.samples:,} | {r['bptrain']['seconds']:.3f} | "
            f"{_f(torch_s)} | {_f(ratio, 2)}{ok} | <= {b.target} | {r['gemm_seconds']:.3f} | "
            f"{r['bptrain']['seconds'] / r['gemm_seconds']:.2f} |"
        )
    lines.append("")
    lines.append("| measure | bptrain | PyTorch |")
    lines.append("|---|---|---|")
    for b in rows:
        r = b.results
        torch_eval = r["torch"]["eval_samples_per_second"] if r.get("torch") else None
        lines.append(
            f"| eval samples/s, {b.name} | {r['bptrain']['eval_samples_per_second']:,.0f}"
            f" | {_f(torch_eval, 0, thousands=True)} |"
        )
    load = extra.get("load_seconds")
    lines.append(f"| load the full dataset from the cache (s) | {_f(load)} | |")
    mem = extra.get("memory", {})
    lines.append(
        f"| peak memory, full-size mlp training run (MiB) | {_f(mem.get('bptrain_mib'), 0)}"
        f" | {_f(mem.get('torch_mib'), 0)} |"
    )
    return "\n".join(lines)


def blas_threads() -> int | None:
    """The thread count NumPy's BLAS runs with now (None when threadpoolctl sees no BLAS)."""
    from threadpoolctl import threadpool_info

    counts = [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]
    return max(counts) if counts else None


def _f(value, digits: int = 3, thousands: bool = False) -> str:
    if value is None:
        return "n/a"
    return f"{value:,.{digits}f}" if thousands else f"{value:.{digits}f}"


def set_threads(count: int) -> None:
    """BLAS (threadpoolctl, and the env for child processes) and PyTorch threads; 0: leave."""
    if count <= 0:
        return
    threadpool_limits(limits=count)  # applies at once, until the next call
    os.environ["OPENBLAS_NUM_THREADS"] = os.environ["OMP_NUM_THREADS"] = str(count)
    # The compiled loops (the fast extra) take BLAS's count when they load; after that they
    # are told, as `bptrain train --threads N` tells them.
    kernels.set_threads(count)


def time_pass(
    names: str | None, data, repeats: int, worker: TorchWorker | None, threads: int
) -> list[Bench]:
    """Every network timed once in bptrain, PyTorch and as bare GEMMs, at the current threads."""
    rows = [b for b in benches() if not names or names in b.name]
    for b in rows:
        torch = worker.runner(b, threads) if worker is not None else None
        runners = {"bptrain": bptrain_runner(b, data), "torch": torch}
        b.results.update(time_interleaved(runners, repeats))
        with threadpool_limits(limits=threads, user_api="blas"):
            b.results["gemm_seconds"] = time_gemms(b, data, repeats, threads)
        print(
            f"{threads} thread(s), {b.name}: {b.results['bptrain']['seconds']:.3f} s, "
            f"torch {_f((b.results['torch'] or {}).get('seconds'))} s",
            file=sys.stderr,
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--only", help="time only networks whose name contains this")
    parser.add_argument(
        "--threads",
        default="1,2",
        help="comma-separated BLAS and PyTorch thread counts, one table each (default 1,2; "
        "0 keeps the environment's)",
    )
    parser.add_argument("--torch-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.torch_worker:
        torch_worker()
        return
    counts = [int(c) for c in args.threads.split(",") if c.strip()]
    set_threads(counts[0])
    # Memory first, before this process imports torch or loads data (see peak_mib).
    memory = measure_memory(importlib.util.find_spec("torch") is not None)
    source, data = mnist_shaped()
    print(f"data: {source}", file=sys.stderr)
    extra = {"load_seconds": time_loading(args.repeats), "memory": memory}
    passes = []
    worker = TorchWorker() if importlib.util.find_spec("torch") is not None else None
    try:
        for count in counts:
            set_threads(count)
            threads = count or blas_threads()
            passes.append((threads, time_pass(args.only, data, args.repeats, worker, threads)))
    finally:
        if worker is not None:
            worker.close()
    report = "\n\n".join(
        f"{threads} BLAS and PyTorch thread(s):\n\n{table(rows, extra)}" for threads, rows in passes
    )
    print(report)
    write_json(
        "speed",
        {
            "when": time.strftime("%Y-%m-%d %H:%M:%S"),
            "data": source,
            "machine": machine(),
            "repeats": args.repeats,
            "passes": [
                {
                    "threads": threads,
                    "networks": {
                        b.name: b.results | {"target": b.target, "samples": b.samples} for b in rows
                    },
                }
                for threads, rows in passes
            ],
            **extra,
        },
    )
    if not args.only:
        print("the docs' tables: python benchmarks/report.py (make bench runs it)", file=sys.stderr)


if __name__ == "__main__":
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    main()
