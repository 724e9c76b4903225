"""`bptrain summary`: the Keras-style model summary, built from the network alone (no data).

Everything is computed here from the network's public parts (its layers, their params and
buffers, the shapes it inferred); `Network.summary` gives the rows, which the graph and the
serve page use too.

Parameter memory is the trained arrays' size. Activation memory per sample is measured, not
estimated: a forward pass in training mode on a small random batch, then the bytes of every
array the layers keep for their backward (inputs, masks, im2col buffers, softmax outputs),
counted once per memory block; two batch sizes give the per-sample slope.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import numpy as np

from ..engine.network import Network
from ..registry import short_type

PROBE_BATCHES = (2, 4)  # the memory kept is linear in the batch: two sizes give its slope


def summarize(network: Network, *, name: str, dataset: str, batch_size: int) -> dict[str, Any]:
    """The summary record: rows per layer, totals, memory (bytes)."""
    kept = _kept_per_sample(network)
    rows = [
        {
            "index": row["index"],
            "name": f"{short_type(row['type'])}_{row['index']}",
            "type": row["type"],
            "output_shape": row["output_shape"],
            "params": row["params"],
            "buffers": row["buffers"],
            "activation_bytes_per_sample": kept[row["index"]],
        }
        for row in network.summary()
    ]
    params = sum(row["params"] for row in rows)
    per_sample = sum(kept.values())
    return {
        "event": "model",
        "model": name,
        "dataset": dataset,
        "input_shape": list(network.input_shape),
        "loss": network.loss_layer.name,
        "layers": rows,
        "params": params,
        "buffers": sum(row["buffers"] for row in rows),
        "dtype": str(network.dtype),
        "param_bytes": params * network.dtype.itemsize,
        "activation_bytes_per_sample": per_sample,
        "batch_size": batch_size,
        "activation_bytes_per_batch": per_sample * batch_size,
    }


def table(record: dict[str, Any]) -> str:
    """The record as a table for a terminal."""
    head = ("#", "name", "type", "output shape", "params", "kept/sample")
    rows = [head, ("", "input", "", _shape(record["input_shape"]), "", "")]
    rows += [
        (str(r["index"]), r["name"], short_type(r["type"]), _shape(r["output_shape"]),
         f"{r['params']:,}",
         _bytes(r["activation_bytes_per_sample"]))
        for r in record["layers"]
    ]  # fmt: skip
    rows.append(("", "loss", record["loss"], "", "", ""))
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    align = ("<", "<", "<", "<", ">", ">")
    lines = [
        "  ".join(f"{cell:{a}{w}}" for cell, a, w in zip(row, align, widths, strict=True)).rstrip()
        for row in rows
    ]
    rule = "─" * max(len(line) for line in lines)
    buffers = f" + {record['buffers']:,} buffer values" if record["buffers"] else ""
    footer = [
        f"Total params: {record['params']:,}{buffers} "
        f"({_bytes(record['param_bytes'])} of {record['dtype']})",
        f"Activations kept for backward: {_bytes(record['activation_bytes_per_sample'])} per "
        f"sample, {_bytes(record['activation_bytes_per_batch'])} per batch of "
        f"{record['batch_size']}",
    ]
    title = f"Model: {record['model']} ({record['dataset']})"
    return "\n".join([title, rule, lines[0], rule, *lines[1:], rule, *footer]) + "\n"


def _shape(shape: list[int]) -> str:
    return "(" + ", ".join(map(str, shape)) + (",)" if len(shape) == 1 else ")")


def _bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB"):
        if n < 1024 or unit == "MiB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def _kept_per_sample(network: Network) -> dict[int, int]:
    """Bytes each layer keeps for backward per sample (the loss layer's go to the last)."""
    a, b = (_kept(network, n) for n in PROBE_BATCHES)
    return {i: (b[i] - a[i]) // (PROBE_BATCHES[1] - PROBE_BATCHES[0]) for i in a}


def _kept(network: Network, batch: int) -> dict[int, int]:
    rng = np.random.default_rng(0)
    x = rng.random((batch, *network.input_shape), dtype=np.float64).astype(network.dtype)
    saved = {k: v.copy() for k, v in network.buffers.items()}  # BatchNorm's running stats
    scores = network.predict(x, train=True)
    network.loss_layer.forward(scores, rng.integers(0, scores.shape[1], batch))
    network.assign(saved)
    seen: set[int] = {id(_root(array)) for array in network.arrays.values()}
    seen |= {id(_root(array)) for array in network.grads.values()}
    kept = {}
    owners = [*network.layers, network.loss_layer]
    for i, owner in enumerate(owners):
        total = 0
        for array in _arrays_of(owner):
            root = _root(array)
            if id(root) not in seen:
                seen.add(id(root))
                total += root.nbytes
        at = min(i, len(network.layers) - 1)
        kept[at] = kept.get(at, 0) + total
    return kept


def _arrays_of(owner: Any) -> list[np.ndarray]:
    found = []
    for value in vars(owner).values():
        if isinstance(value, np.ndarray):
            found.append(value)
        elif isinstance(value, (list, tuple)):
            found += [v for v in value if isinstance(v, np.ndarray)]
    # A book-style layer (custom/adapter.py) keeps its caches on the user's object it runs.
    wrapped = getattr(owner, "obj", None)
    if wrapped is not None and hasattr(wrapped, "__dict__"):
        found += _arrays_of(wrapped)
    return found


def _root(array: np.ndarray) -> np.ndarray:
    while isinstance(array.base, np.ndarray):
        array = array.base
    return array


def print_summary(
    source: str | None,
    overrides: tuple[str, ...] = (),
    *,
    as_json: bool = False,
    out: str | None = None,
    overwrite: bool = False,
    read_stdin: Callable[[], str] = lambda: "",
    emit: Callable[[dict[str, Any]], None],
) -> dict[str, Any]:
    """The summary of CONFIG or CHECKPOINT as a table, or a JSON record, to stdout or --out."""
    from ..run import artifact
    from .model_source import load_source

    path = artifact.check_out(out, overwrite=overwrite)
    src = load_source(source, overrides, read_stdin=read_stdin)
    batch_size = src.config.train.batch_size
    record = summarize(src.network, name=src.name, dataset=src.dataset, batch_size=batch_size)
    if as_json and path is None:
        emit(record)
    else:
        text = json.dumps(record, allow_nan=False) + "\n" if as_json else table(record)
        artifact.write(text, path, overwrite=overwrite)
    return record
