"""A network's weights as safetensors, in the names and layouts of PyTorch's nn.Sequential.

The tensors are torch_layout.to_torch's (the one name mapping); the header's metadata holds
the config, the class names, the Sequential's module code and the metadata every export has.
Before the file gets its name it is read back: every tensor must be there, equal bit for bit,
and a network rebuilt from the file (torch_layout.from_torch, the way back) must predict what
the exported one predicts.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..engine.network import Network
from ..errors import CheckFailed
from ..extras import require
from ..run.model import Model
from ..run.torch_layout import from_torch, modules, to_torch
from . import verify


def safetensors_numpy() -> Any:
    """safetensors' NumPy API, or exit 2 naming the extra that brings it."""
    require("safetensors", "export", "bptrain export --format safetensors")
    return require("safetensors.numpy", "export", "bptrain export --format safetensors")


def sequential_code(network: Network) -> str:
    """The PyTorch network the tensors belong to, as Python source (import torch.nn as nn)."""
    lines = "".join(f"    {module.code()},\n" for module in modules(network))
    return f"nn.Sequential(\n{lines})"


def header(model: Model, described: Mapping[str, str]) -> dict[str, str]:
    """The header's metadata: strings only, as safetensors requires."""
    return {
        "format": "pt",  # what PyTorch tools (transformers, safetensors.torch) look for
        **described,
        "config": json.dumps(model.info.config, sort_keys=True),
        "torch_module": sequential_code(model.network),
    }


def encoded(model: Model, metadata: Mapping[str, str]) -> tuple[bytes, dict[str, np.ndarray]]:
    """The file's bytes and the tensors they hold (exit 2 naming a layer PyTorch lacks)."""
    tensors = to_torch(model.network)
    return safetensors_numpy().save(tensors, metadata=dict(metadata)), tensors


def check_file(
    path: Path, model: Model, tensors: Mapping[str, np.ndarray], metadata: Mapping[str, str],
    x: np.ndarray,
) -> dict[str, Any]:  # fmt: skip
    """Read the written file back; the `verified` record, or CheckFailed (exit 1)."""
    from safetensors import safe_open

    read = safetensors_numpy().load_file(str(path))
    with safe_open(str(path), framework="numpy") as handle:
        stored = handle.metadata()
    changed = sorted(
        name for name in set(read) | set(tensors)
        if name not in read or name not in tensors or read[name].dtype != tensors[name].dtype
        or not np.array_equal(read[name], tensors[name])
    )  # fmt: skip
    if changed or stored != dict(metadata):
        what = ", ".join(changed) if changed else "the metadata"
        raise CheckFailed(f"the safetensors file does not read back as written ({what})")
    rebuilt = Network.from_specs(
        model.config.model.layers, model.info.input_shape, model.config.model.loss,
        num_classes=model.info.num_classes,
    )  # fmt: skip
    rebuilt.assign(from_torch(rebuilt, read, str(path)))
    run = lambda batch: verify.probabilities(rebuilt, batch)  # noqa: E731
    return verify.against_bptrain(model.network, run, x, "the safetensors file")
