"""Optional engines (matplotlib, Starlette, Optuna, mpi4py): imported only by the command that
needs them, with one clear error naming the extra to install when they are missing."""

from __future__ import annotations

import importlib
from types import ModuleType

from .errors import ConfigError

# extra name -> what it is for, in the words of the error a user sees.
EXTRAS = {
    "plot": "plotting (matplotlib)",
    "serve": "the draw-a-digit page (Starlette and uvicorn)",
    "sweep": "sweeps (Optuna)",
    "mpi": "mpi4py (MPI)",
    "export": "the onnx and safetensors packages",
    "tensorboard": "TensorBoard event files (tensorboardX)",
}


def require(module: str, extra: str, command: str) -> ModuleType:
    """Import `module`, or fail with exit 2 and the `pip install 'bptrain[extra]'` line."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ConfigError(
            f"{command} needs {EXTRAS[extra]}, which is not installed ({error})",
            hint=f"pip install 'bptrain[{extra}]'",
        ) from None
