"""`train --init-from FILE`: a new run's first weights from a file, checked against its config.

FILE is a bptrain checkpoint (the weights `eval` uses: its summary's best, averaged or last
set) or a safetensors file in PyTorch's nn.Sequential names and layouts (what `bptrain export`
writes, or `safetensors.torch.save_file(model.state_dict(), ...)` of the same stack; see
run/torch_layout.py). The weights are copied in after the seeded initialization, so the
generator stream, and with it every shuffle and dropout mask, is that of a run without them.

Exit codes: a file that is missing, of another kind, or that does not fit the config (names,
shapes, dtypes, non-finite values) is a usage error (2); a damaged checkpoint or safetensors
file is a checkpoint error (4), as for `--resume` and `eval`.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import files
from ..config import LoadedConfig
from ..engine.averaging import WeightAverage
from ..engine.network import Network
from ..errors import CheckpointError, ConfigError
from . import checkpoint, safetensors_read, torch_layout
from .inputs import DataOptions, check_stack
from .restore import stored_arrays

log = logging.getLogger(__name__)

CHECKPOINT, SAFETENSORS = "bptrain-checkpoint", "safetensors"
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
_PICKLE_MAGIC = b"\x80"  # torch.save's legacy format (protocol 2+ pickles start so)


@dataclass(frozen=True)
class Source:
    """A weights file as read: its tensors (bptrain's names, or the file's own), and its hash."""

    path: Path
    sha256: str
    form: str  # CHECKPOINT or SAFETENSORS
    tensors: dict[str, np.ndarray]
    weights: str | None = None  # which set of a checkpoint: "best", "ema" or "last"

    def record(self) -> dict[str, str]:
        """What the run records about where its weights came from (checkpoint meta, summary)."""
        return {"file": str(self.path), "sha256": self.sha256, "format": self.form}

    def describe(self) -> str:
        which = f"its {self.weights} weights, " if self.weights else ""
        return f"{self.path} ({which}sha256 {self.sha256[:12]}...)"


def read(name: str) -> Source:
    """Read FILE as a bptrain checkpoint or a safetensors file (by its first bytes)."""
    path = Path(name)
    kind = files.kind_of(path.resolve()) if path.exists() else None
    if kind != "a regular file":
        raise ConfigError(
            f"--init-from {path} " + ("does not exist" if kind is None else f"is {kind}"),
            hint="give a bptrain checkpoint (.npz) or a safetensors file",
        )
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise ConfigError(f"cannot read --init-from {path}: {error.strerror or error}") from None
    sha256 = hashlib.sha256(raw).hexdigest()
    if raw[:4] in _ZIP_MAGIC:
        return _checkpoint_source(path, sha256, raw)
    if raw.startswith(_PICKLE_MAGIC):
        raise _pickle_error(path)
    tensors = safetensors_read.parse(path, raw)  # not one: exit 2; damaged: exit 4
    return Source(path, sha256, SAFETENSORS, tensors)


def read_checked(name: str | None, loaded: LoadedConfig, data: DataOptions) -> Source | None:
    """--init-from's file, read, and checked against the config's network before the data
    loads wherever the data's shape is known without its files (train checks it again)."""
    if name is None:
        return None
    source = read(name)
    network = check_stack(loaded, data)
    if network is not None:
        try:
            weights_for(source, network)
        except ConfigError as error:
            raise loaded.locate(error) from None
    return source


def _checkpoint_source(path: Path, sha256: str, raw: bytes) -> Source:
    if b"data.pkl" in raw[:4096] and b"__meta__.npy" not in raw:  # torch.save's zip format
        raise _pickle_error(path)
    try:
        ckpt = checkpoint.load(path)
    except CheckpointError as error:  # damaged or edited: exit 4, as for --resume
        raise CheckpointError(f"--init-from: {error.message}", hint=error.hint) from None
    if not ckpt.complete:
        log.warning(
            f"--init-from {path} is the checkpoint of an unfinished run ({ckpt.epochs} epochs "
            "so far): starting from its last weights"
        )
    chosen = stored_arrays(ckpt, ckpt.weights)
    return Source(path, sha256, CHECKPOINT, chosen, ckpt.weights)


def _pickle_error(path: Path) -> ConfigError:
    return ConfigError(
        f"--init-from {path} is a PyTorch pickle (torch.save); bptrain never unpickles",
        hint="save the weights as safetensors: from safetensors.torch import save_file; "
        "save_file(model.state_dict(), 'model.safetensors')",
    )


def weights_for(source: Source, network: Network) -> dict[str, np.ndarray]:
    """The source's weights in the network's names, float32, each checked against the config."""
    if source.form == CHECKPOINT:
        arrays = _same_names(source, network)
    else:
        tensors = _sequential_names(source, network)
        arrays = torch_layout.from_torch(network, tensors, f"--init-from {source.path}")
    return {key: _checked(source, key, arrays[key]) for key in network.arrays}


def _same_names(source: Source, network: Network) -> dict[str, np.ndarray]:
    """A checkpoint's arrays against the config's network: names, then shapes, layer by layer."""
    wanted, found = network.arrays, source.tensors
    missing, extra = sorted(set(wanted) - set(found)), sorted(set(found) - set(wanted))
    if missing or extra:
        raise ConfigError(
            f"--init-from {source.path}: its weights do not fit the config's network (missing: "
            f"{', '.join(missing) or 'none'}; unexpected: {', '.join(extra) or 'none'})",
            hint="train with the config the checkpoint was written for, or one with the same "
            "layers",
        )
    for key, target in wanted.items():
        if found[key].shape != target.shape:
            i = int(key.split(".")[0])
            raise ConfigError(
                f"--init-from {source.path}: {key} has shape {list(found[key].shape)} but layer "
                f"{i} ({network.layer_name(i)}) needs {list(target.shape)}",
                path=f"model.layers[{i}]",
            )
    return dict(found)


def _checked(source: Source, key: str, value: np.ndarray) -> np.ndarray:
    """float32 (float64 is cast), finite; anything else is exit 2 naming the tensor."""
    if value.dtype == np.float64:
        with np.errstate(over="ignore"):
            value = value.astype(np.float32)
    if value.dtype != np.float32:
        raise ConfigError(
            f"--init-from {source.path}: {key} is {value.dtype}; bptrain trains in float32",
            hint="save the model in float32 (model.float() in PyTorch) and try again",
        )
    if not np.all(np.isfinite(value)):
        raise ConfigError(
            f"--init-from {source.path}: {key} holds non-finite values (NaN or infinity, "
            "or beyond float32's range)",
            hint="give weights of a model that trained without diverging",
        )
    return np.ascontiguousarray(value)


def _sequential_names(source: Source, network: Network) -> dict[str, np.ndarray]:
    """The file's tensors under nn.Sequential's names: as they are when the names are those,
    else matched module by module when each module's tensor shapes fit exactly one layer."""
    tensors = source.tensors
    expected = torch_layout.to_torch(network)
    counter = f".{torch_layout.COUNTER}"
    wanted = {k for k in expected if not k.endswith(counter)}
    if wanted <= set(tensors):
        return tensors
    renamed = match_modules(tensors, expected)
    if renamed is None:
        return tensors  # from_torch names what is missing and what is unexpected
    log.info(
        f"--init-from {source.path}: tensors matched to layers by their shapes: "
        + ", ".join(f"{ours} <- {theirs}" for ours, theirs in renamed.items())
    )
    return {ours: tensors[theirs] for ours, theirs in renamed.items()}


def _modules(names: Mapping[str, Any]) -> dict[str, dict[str, tuple[int, ...]]]:
    """Tensors grouped by module: "fc1.weight" -> {"fc1": {"weight": shape}}."""
    grouped: dict[str, dict[str, tuple[int, ...]]] = {}
    for name, value in names.items():
        module, _, role = name.rpartition(".")
        if role != torch_layout.COUNTER:
            grouped.setdefault(module, {})[role] = tuple(np.shape(value))
    return grouped


def match_modules(tensors: Mapping[str, Any], expected: Mapping[str, Any]) -> dict[str, str] | None:
    """Sequential name -> the file's name, when every layer with weights has exactly one module
    in the file with the same tensor names and shapes, and every module is used; else None.

    safetensors keeps no write order (it sorts by dtype and name), so shapes are the only sound
    evidence: two layers alike (two Linear(100, 100)) make the match ambiguous, and it is refused.
    """
    ours, theirs = _modules(expected), _modules(tensors)
    if len(ours) != len(theirs):
        return None
    renamed: dict[str, str] = {}
    for layer, roles in ours.items():
        fits = [module for module, found in theirs.items() if found == roles]
        alike = [other for other in ours.values() if other == roles]
        if len(fits) != 1 or len(alike) != 1:
            return None
        renamed.update({f"{layer}.{role}": f"{fits[0]}.{role}" for role in roles})
    return renamed


def apply(source: Source, run: Any) -> None:
    """Copy the weights into a prepared run (inputs.Run); its averaged weights start from them.

    Only the network's arrays change: the generator has drawn the split and the initial
    weights already, so the rest of the run draws exactly what it would have drawn without.
    """
    run.network.assign(weights_for(source, run.network))
    if run.state.ema is not None:
        run.state.ema = WeightAverage(run.state.ema.decay, run.network.arrays)
    run.init_from = source.record()
    log.info(f"starting from the weights of {source.describe()}")
