"""The PyTorch twin of a bptrain run: the same network, data, optimizer and schedule in PyTorch.

    python benchmarks/torch_twin.py cnn --set data.dataset=mnist --data-dir DIR --offline
    python benchmarks/torch_twin.py mlp --seed 1 --set data.limit_train=3000   # one JSON line

`train_twin(config, dataset, seed)` trains a bptrain config (bptrain.config.Config) in PyTorch
and returns its test accuracy, the validation accuracy of every epoch and the wall time.
PyTorch is not a dependency of bptrain: this module imports it only when it trains, and the
command line exits 2 with the install line when it is missing.

What is the same as `bptrain train`, by construction:

- data: bptrain's own `prepare(config, seed, dataset)` draws the validation split (and
  data.limit_train), so both train on the same rows and validate and test on the same images;
  every epoch is reshuffled (from the run's NumPy generator, seeded with the seed, which also
  drives data.augment: bptrain's own Augmenter runs on each gathered NumPy batch);
- layers: built from bptrain's layer objects (defaults filled in): conv2d, affine, flatten,
  relu, sigmoid, tanh, leaky_relu, max_pool2d, avg_pool2d, dropout (inverted, like
  torch's), batch_norm (momentum m -> torch 1 - m, same eps; the running variance is the
  batch's biased one, as bptrain folds it, where nn.BatchNorm would fold the unbiased one).
  An affine layer on image-shaped input gets an nn.Flatten, as bptrain flattens inside it.
  Any other layer raises ValueError naming it;
- initialization: every bptrain initializer is a zero-mean Gaussian whose std comes from
  (fan_in, fan_out): the twin draws N(0, std) with bptrain's own `std()` (conv fan_in
  C*KH*KW, fan_out F*KH*KW), from torch's generator seeded with the seed; biases are zero;
  BatchNorm starts at gamma 1, beta 0;
- loss: softmax_with_loss -> F.cross_entropy, label_smoothing passed through (the same
  (1 - e) * onehot + e / C target);
- optimizer: sgd/momentum/nesterov -> torch.optim.SGD, adam -> Adam (L2 in the gradient, as
  bptrain), adamw -> AdamW (decoupled), adagrad, rmsprop (alpha = rho); weight decay only on
  conv/affine weights, like bptrain (biases and BatchNorm never); clip_norm ->
  clip_grad_norm_. Torch's momentum buffer holds gradients, not lr-scaled steps: with a
  changing lr its SGD-momentum steps differ slightly from bptrain's velocity form;
- schedule: bptrain's own schedule object gives the factor, set before every step:
  lr = base_lr * factor(epoch + step / steps, epochs), exactly as fit() does;
- EMA (train.ema): after every optimizer step, every parameter and BatchNorm running buffer:
  d = min(decay, (1 + n) / (10 + n)), ema = d * ema + (1 - d) * w; validation and test use it;
- restore_best: the test uses the weights (the EMA ones, with an EMA) of the epoch with the
  best validation accuracy (strictly better than every earlier epoch, as bptrain keeps them);
  early_stopping counts stale epochs as bptrain does.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

TORCH_VERSION = "2.13.0"
INSTALL_HINT = f"pip install torch=={TORCH_VERSION}"
MISSING_TORCH = (
    f"PyTorch is not installed; the PyTorch comparison needs it: {INSTALL_HINT} "
    "(it is not a dependency of bptrain)"
)


def torch_available() -> bool:
    """Whether torch can be found (without importing it: that takes a second or two)."""
    import importlib.util

    try:
        return importlib.util.find_spec("torch") is not None
    except (ImportError, ValueError):
        return False


@dataclass
class TwinResult:
    """What a twin run measured."""

    test_accuracy: float
    test_loss: float
    val_accuracy: list[float | None]
    wall_seconds: float  # prepare, build, train, validate and test (not loading the data)
    epoch_seconds: list[float] = field(default_factory=list)  # training only, per epoch
    epochs: int = 0
    best_epoch: int | None = None
    weights: str = "last"  # which weights were tested: last, best or ema
    params: int = 0
    seed: int = 0
    threads: int = 1
    torch_version: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --- the model -------------------------------------------------------------------------------


def _gaussian_std(init: Any, fan_in: int, fan_out: int, where: str) -> float:
    """bptrain's std for this initializer; only the Gaussian ones (every built-in) have a twin."""
    from bptrain.engine.initializers import Initializer

    if type(init).__call__ is not Initializer.__call__:
        raise ValueError(f"no PyTorch twin for the initializer {type(init).__name__} of {where}")
    return float(init.std(fan_in, fan_out))


def _batch_norm_class(image: bool) -> type:
    """nn.BatchNorm1d/2d that folds the batch's biased variance into running_var, as bptrain."""
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    base = nn.BatchNorm2d if image else nn.BatchNorm1d

    class BatchNormTwin(base):  # type: ignore[misc, valid-type]
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if not self.training:
                return super().forward(x)
            dims = (0, 2, 3) if x.dim() == 4 else (0,)
            with torch.no_grad():
                var, mean = torch.var_mean(x, dim=dims, correction=0)
                # running = (1 - momentum) * running + momentum * batch, torch's convention
                self.running_mean.lerp_(mean, self.momentum)
                self.running_var.lerp_(var, self.momentum)
            return F.batch_norm(x, None, None, self.weight, self.bias, True, 0.0, self.eps)

    BatchNormTwin.__name__ = base.__name__
    return BatchNormTwin


def twin_modules(network: Any) -> list[Any]:
    """torch modules for a built bptrain Network's layers (shapes and defaults from it)."""
    import torch
    import torch.nn as nn

    modules: list[Any] = []
    shape = tuple(network.input_shape)
    for i, layer in enumerate(network.layers):
        kind = network.layer_name(i)
        where = f"layer {i} ({kind})"
        out_shape = tuple(network.shapes[i])
        if kind == "conv2d":
            kh, kw = layer.kernel
            conv = nn.Conv2d(shape[0], layer.filters, (kh, kw), layer.stride, tuple(layer.pad))
            std = _gaussian_std(layer.init, shape[0] * kh * kw, layer.filters * kh * kw, where)
            with torch.no_grad():
                conv.weight.normal_(0.0, std)
                conv.bias.zero_()
            modules.append(conv)
        elif kind == "affine":
            fan_in = math.prod(shape)
            if len(shape) > 1:  # bptrain's affine flattens its input itself
                modules.append(nn.Flatten())
            linear = nn.Linear(fan_in, layer.units)
            std = _gaussian_std(layer.init, fan_in, layer.units, where)
            with torch.no_grad():
                linear.weight.normal_(0.0, std)
                linear.bias.zero_()
            modules.append(linear)
        elif kind == "flatten":
            modules.append(nn.Flatten())
        elif kind == "relu":
            modules.append(nn.ReLU())
        elif kind == "sigmoid":
            modules.append(nn.Sigmoid())
        elif kind == "tanh":
            modules.append(nn.Tanh())
        elif kind == "leaky_relu":
            modules.append(nn.LeakyReLU(layer.alpha))
        elif kind == "max_pool2d":
            modules.append(nn.MaxPool2d(layer.size, layer.stride))
        elif kind == "avg_pool2d":
            modules.append(nn.AvgPool2d(layer.size, layer.stride))
        elif kind == "dropout":
            modules.append(nn.Dropout(layer.rate))
        elif kind == "batch_norm":
            if len(shape) not in (1, 3):
                raise ValueError(f"no PyTorch twin for {where} on {len(shape)}-D input")
            norm = _batch_norm_class(len(shape) == 3)(
                shape[0], eps=layer.eps, momentum=1.0 - layer.momentum
            )
            modules.append(norm)
        else:
            raise ValueError(
                f"no PyTorch twin for {where}: benchmarks/torch_twin.py maps conv2d, affine, "
                "flatten, relu, sigmoid, tanh, leaky_relu, max_pool2d, avg_pool2d, dropout and "
                "batch_norm"
            )
        shape = out_shape
    return modules


def twin_model(network: Any) -> Any:
    """nn.Sequential twin of a bptrain Network; its weights are drawn from torch's generator."""
    import torch.nn as nn

    return nn.Sequential(*twin_modules(network))


def twin_loss(network: Any) -> Callable[..., Any]:
    """loss(scores, labels) for the network's loss layer."""
    import torch.nn.functional as F

    loss = network.loss_layer
    if loss.name != "softmax_with_loss":
        raise ValueError(f"no PyTorch twin for the loss {loss.name!r} (only softmax_with_loss)")
    smoothing = float(getattr(loss, "label_smoothing", 0.0) or 0.0)

    def compute(scores: Any, labels: Any) -> Any:
        return F.cross_entropy(scores, labels, label_smoothing=smoothing)

    return compute


def _decayed(module: Any, name: str) -> bool:
    """Weight decay applies to conv and affine weights only, as bptrain's decays() says."""
    import torch.nn as nn

    return name == "weight" and isinstance(module, (nn.Conv2d, nn.Linear))


def twin_optimizer(model: Any, optimizer: Any) -> Any:
    """The torch optimizer for a built bptrain optimizer (its attributes, defaults filled in)."""
    import torch

    from bptrain.engine import optimizers as bo

    decay, plain = [], []
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            (decay if _decayed(module, name) else plain).append(param)
    wd = optimizer.weight_decay
    groups = [{"params": decay, "weight_decay": wd}, {"params": plain, "weight_decay": 0.0}]
    lr = optimizer.base_lr
    if isinstance(optimizer, bo.AdamW):
        betas = (optimizer.beta1, optimizer.beta2)
        return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=optimizer.eps)
    if isinstance(optimizer, bo.Adam):
        betas = (optimizer.beta1, optimizer.beta2)
        return torch.optim.Adam(groups, lr=lr, betas=betas, eps=optimizer.eps)
    if isinstance(optimizer, bo.SGD):
        return torch.optim.SGD(
            groups, lr=lr, momentum=optimizer.momentum, nesterov=optimizer.nesterov
        )
    if isinstance(optimizer, bo.AdaGrad):
        return torch.optim.Adagrad(groups, lr=lr, eps=optimizer.eps)
    if isinstance(optimizer, bo.RMSprop):
        return torch.optim.RMSprop(groups, lr=lr, alpha=optimizer.rho, eps=optimizer.eps)
    raise ValueError(f"no PyTorch twin for the optimizer {type(optimizer).__name__}")


class TwinEMA:
    """bptrain's WeightAverage over a torch model: every parameter and float buffer."""

    def __init__(self, model: Any, decay: float) -> None:
        self.decay = float(decay)
        self.updates = 0
        self.model = copy.deepcopy(model)  # starts as the initial weights
        live, average = model.state_dict(), self.model.state_dict()
        names = [k for k, v in live.items() if v.is_floating_point()]
        self.live = [live[k] for k in names]
        self.average = [average[k] for k in names]

    def update(self) -> None:
        import torch

        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        with torch.no_grad():
            torch._foreach_lerp_(self.average, self.live, 1.0 - d)  # avg += (1 - d)(w - avg)
        self.updates += 1


# --- training --------------------------------------------------------------------------------


def _evaluate(model: Any, x: np.ndarray, t: np.ndarray, loss_fn: Any, batch: int) -> tuple:
    """(mean loss, accuracy) in inference mode."""
    import torch

    model.eval()
    loss_sum, correct = 0.0, 0
    with torch.no_grad():
        for start in range(0, x.shape[0], batch):
            xb = torch.from_numpy(np.ascontiguousarray(x[start : start + batch]))
            tb = torch.from_numpy(np.asarray(t[start : start + batch], dtype=np.int64))
            scores = model(xb)
            loss_sum += float(loss_fn(scores, tb)) * len(tb)
            correct += int((scores.argmax(1) == tb).sum())
    n = max(x.shape[0], 1)
    return loss_sum / n, correct / n


def _labels(t: np.ndarray) -> np.ndarray:
    from bptrain.functional import labels_of

    return np.asarray(labels_of(t), dtype=np.int64)


def train_twin(
    config: Any,
    dataset: Any,
    seed: int,
    *,
    threads: int | None = 1,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
) -> TwinResult:
    """Train `config` (a bptrain Config) on `dataset` (bptrain's loaded Dataset) in PyTorch.

    `threads` sets torch.set_num_threads (None leaves it alone). `on_epoch` receives each
    epoch's record (epoch, train_loss, val_accuracy, lr, seconds).
    """
    import torch

    from bptrain.engine.train import steps_per_epoch
    from bptrain.run.inputs import prepare

    started = time.perf_counter()
    if threads:
        torch.set_num_threads(threads)
    run = prepare(config, seed, dataset)  # bptrain's split, schedule, augmenter
    torch.manual_seed(seed)
    model = twin_model(run.network)
    params = sum(p.numel() for p in model.parameters())
    if params != run.network.num_params:
        raise RuntimeError(f"the twin has {params} parameters, bptrain's {run.network.num_params}")
    loss_fn = twin_loss(run.network)
    opt = twin_optimizer(model, run.optimizer)
    base_lr, clip = run.optimizer.base_lr, run.optimizer.clip_norm
    cfg = config.train
    ema = TwinEMA(model, cfg.ema) if getattr(cfg, "ema", None) is not None else None
    judged = ema.model if ema is not None else model  # the weights validation and test use
    x, t = dataset.x_train, _labels(dataset.t_train)
    (x_val, t_val), (x_test, t_test) = run.val, run.test
    t_val, t_test = _labels(t_val), _labels(t_test)
    rng, rows, augmenter = run.rng, run.train_rows, run.augmenter
    epochs, batch = cfg.epochs, cfg.batch_size
    steps = steps_per_epoch(len(rows), batch)
    best_acc, best_epoch, best_state, stale = None, None, None, 0
    val_history: list[float | None] = []
    epoch_seconds: list[float] = []
    epoch = 0
    while epoch < epochs:
        tick = time.perf_counter()
        model.train()
        order = rng.permutation(rows)
        loss_sum = 0.0
        for step in range(steps):
            if run.schedule is not None:
                lr = base_lr * run.schedule.factor(epoch + step / steps, epochs)
                for group in opt.param_groups:
                    group["lr"] = lr
            idx = order[step * batch : (step + 1) * batch]
            xb = x[idx]
            if augmenter is not None:
                xb = augmenter(xb, rng)
            xb = torch.from_numpy(np.ascontiguousarray(xb, dtype=np.float32))
            tb = torch.from_numpy(t[idx])
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(xb), tb)
            value = float(loss.detach())
            if not math.isfinite(value):
                raise FloatingPointError(f"the twin diverged at epoch {epoch + 1}, step {step + 1}")
            loss.backward()
            if clip is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
            opt.step()
            if ema is not None:
                ema.update()
            loss_sum += value * len(idx)
        epoch_seconds.append(time.perf_counter() - tick)
        epoch += 1
        val_acc = None
        if x_val.shape[0] > 0:
            # Batches of 1000, as bptrain's Network.evaluate validates; the test uses
            # train.eval_batch_size, as bptrain's does (neither changes an accuracy).
            _, val_acc = _evaluate(judged, x_val, t_val, loss_fn, 1000)
            if best_acc is None or val_acc > best_acc:
                best_acc, best_epoch, stale = val_acc, epoch, 0
                best_state = copy.deepcopy(judged.state_dict())
            else:
                stale += 1
        val_history.append(val_acc)
        if on_epoch is not None:
            on_epoch(
                {
                    "epoch": epoch,
                    "train_loss": loss_sum / len(rows),
                    "val_accuracy": val_acc,
                    "lr": opt.param_groups[0]["lr"],
                    "seconds": epoch_seconds[-1],
                }
            )
        if cfg.early_stopping is not None and stale >= cfg.early_stopping:
            break
    weights = "ema" if ema is not None else "last"
    if cfg.restore_best and best_state is not None:
        judged.load_state_dict(best_state)
        weights = "best"
    test_loss, test_acc = _evaluate(judged, x_test, t_test, loss_fn, cfg.eval_batch_size)
    return TwinResult(
        test_accuracy=test_acc,
        test_loss=test_loss,
        val_accuracy=val_history,
        wall_seconds=time.perf_counter() - started,
        epoch_seconds=epoch_seconds,
        epochs=epoch,
        best_epoch=best_epoch,
        weights=weights,
        params=params,
        seed=seed,
        threads=torch.get_num_threads(),
        torch_version=torch.__version__,
    )


# --- command line ----------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("config", help="a preset name or config file, as for `bptrain train`")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--seed", type=int, default=None, help="default: the config's seed")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--offline", action="store_true", default=None)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: leave alone)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no per-epoch lines on stderr")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        import torch  # noqa: F401
    except ImportError:
        print(MISSING_TORCH, file=sys.stderr)
        return 2
    from bptrain.run.inputs import DataOptions, config_of, load_dataset

    config = config_of(args.config, args.overrides).config
    seed = args.seed if args.seed is not None else config.seed
    if seed is None:
        seed = 0
    dataset = load_dataset(config, DataOptions(data_dir=args.data_dir, offline=args.offline))

    def log_epoch(record: dict[str, Any]) -> None:
        if not args.quiet:
            val = record["val_accuracy"]
            shown = f"{val:.2%}" if val is not None else "-"
            print(
                f"torch epoch {record['epoch']}: loss {record['train_loss']:.4f}, "
                f"val {shown}, lr {record['lr']:.3g}, {record['seconds']:.1f} s",
                file=sys.stderr,
                flush=True,
            )

    result = train_twin(config, dataset, seed, threads=args.threads or None, on_epoch=log_epoch)
    print(json.dumps({"event": "twin", **result.to_dict()}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
