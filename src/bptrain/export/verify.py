"""Verified, not hoped: an exported file is run beside bptrain's own forward pass.

The samples are seeded random images in the network's input shape, plus the first test images
of the run's own data when its folder (or the cache) still holds them; data is never fetched.
The two must agree within float32 rounding: probabilities within TOLERANCE of each other, and
the same class for every sample whose two best classes bptrain does not itself see as tied.
A disagreement is CheckFailed (exit 1), raised inside the writer's verify hook, so a file that
disagrees never gets its final name.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..engine.network import Network
from ..errors import BptrainError, CheckFailed
from ..functional import softmax
from ..run.model import Model

log = logging.getLogger(__name__)

TOLERANCE = 1e-5  # on probabilities: float32 rounding of two correct implementations
SEEDED = 64  # random images in the input shape: every pixel, every layer exercised
REAL = 256  # test images of the run's own data, when they are at hand
BATCH = 500


@dataclass(frozen=True)
class Agreement:
    """How an exported model's probabilities compare with bptrain's on the same samples."""

    samples: int
    max_abs_diff: float
    argmax_agreement: float  # the fraction of samples given the same class
    untied_disagreements: int  # samples given another class where bptrain sees no tie
    nonfinite: int  # samples whose probabilities are not finite on either side

    def record(self) -> dict[str, Any]:
        return {
            "samples": self.samples,
            "max_abs_diff": self.max_abs_diff,
            "argmax_agreement": self.argmax_agreement,
        }

    def check(self, what: str) -> None:
        """CheckFailed (exit 1) unless the two agree within float32 rounding."""
        if self.nonfinite:
            raise CheckFailed(
                f"{what} and bptrain give non-finite probabilities on {self.nonfinite} of "
                f"{self.samples} samples; the file was not written",
                hint="the checkpoint's weights are not usable (a diverged run?)",
            )
        if self.max_abs_diff > TOLERANCE or self.untied_disagreements:
            raise CheckFailed(
                f"{what} disagrees with bptrain's forward pass: probabilities differ by up to "
                f"{self.max_abs_diff:.3g} (allowed {TOLERANCE:g}) and {self.untied_disagreements} "
                f"of {self.samples} samples get another class; the file was not written",
                hint="this is a bug in bptrain's exporter: please report it with --traceback",
            )


def compare(ours: np.ndarray, theirs: np.ndarray) -> Agreement:
    """Agreement of two (samples, classes) probability arrays; `ours` decides what is a tie."""
    ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    finite = np.isfinite(ours).all(axis=1) & np.isfinite(theirs).all(axis=1)
    diff = np.abs(ours - theirs)[finite]
    same = ours.argmax(axis=1) == theirs.argmax(axis=1)
    top2 = np.sort(ours, axis=1)[:, -2:] if ours.shape[1] > 1 else np.hstack([ours, ours])
    tied = top2[:, 1] - top2[:, 0] <= TOLERANCE  # either class is right within rounding
    return Agreement(
        samples=int(ours.shape[0]),
        max_abs_diff=float(diff.max()) if diff.size else 0.0,
        argmax_agreement=float(same.mean()) if same.size else 1.0,
        untied_disagreements=int(np.sum(~same & ~tied & finite)),
        nonfinite=int(np.sum(~finite)),
    )


def probabilities(network: Network, x: np.ndarray) -> np.ndarray:
    """bptrain's own forward pass in inference mode, softmax as `predict` takes it."""
    scores = [network.predict(x[i : i + BATCH]) for i in range(0, x.shape[0], BATCH)]
    return softmax(np.concatenate(scores).astype(np.float64))


def samples(model: Model, seed: int = 0) -> np.ndarray:
    """Seeded random images in the network's input shape, then the run's test images."""
    shape = tuple(model.info.input_shape)
    seeded = np.random.default_rng(seed).random((SEEDED, *shape), dtype=np.float32)
    real = _test_images(model, shape)
    return seeded if real is None else np.concatenate([seeded, real])


def _test_images(model: Model, shape: tuple[int, ...]) -> np.ndarray | None:
    """The first REAL test images where the run's data is on this machine (never fetched)."""
    from ..run.inputs import DataOptions, load_dataset, with_stored_folder

    offline = with_stored_folder(DataOptions(offline=True), model.config, model.ckpt)
    try:
        dataset = load_dataset(model.config, offline, splits=("test",))
    except BptrainError as error:
        log.info(f"verifying on seeded inputs only: the test images are not at hand ({error})")
        return None
    x = dataset.x_test[:REAL]
    if tuple(x.shape[1:]) != shape:
        log.info(f"verifying on seeded inputs only: {dataset.folder} holds other images")
        return None
    return np.ascontiguousarray(x, dtype=np.float32)


def onnx_runner(path: Path) -> Callable[[np.ndarray], np.ndarray] | None:
    """A function giving the file's `probabilities` in ONNX Runtime on the CPU (None when
    onnxruntime is not installed: the file is then written unverified, and the log says so)."""
    try:
        import onnxruntime
    except ImportError:
        log.warning(
            "onnxruntime is not installed: the exported file was checked but not run "
            "(pip install onnxruntime to verify it against bptrain's forward pass)"
        )
        return None
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # errors only: its notes on graph rewrites are not ours
    # ONNX Runtime's own exception classes differ between releases; whatever it raises while
    # loading or running the file means the file cannot be published.
    try:
        session = onnxruntime.InferenceSession(
            str(path), options, providers=["CPUExecutionProvider"]
        )
    except Exception as error:
        raise _cannot_run(error) from None

    def run(x: np.ndarray) -> np.ndarray:
        try:
            parts = [session.run(["probabilities"], {"pixels": x[i : i + BATCH]})[0]
                     for i in range(0, x.shape[0], BATCH)]  # fmt: skip
        except Exception as error:
            raise _cannot_run(error) from None
        return np.concatenate(parts)

    return run


def _cannot_run(error: Exception) -> CheckFailed:
    return CheckFailed(
        f"ONNX Runtime cannot run the exported file ({type(error).__name__}: "
        f"{' '.join(str(error).split())}); "
        "the file was not written",
        hint="this is a bug in bptrain's exporter: please report it with --traceback",
    )


def against_bptrain(
    network: Network, run: Callable[[np.ndarray], np.ndarray], x: np.ndarray, what: str
) -> dict[str, Any]:
    """Run both on `x`; the `verified` record, or CheckFailed when they disagree."""
    agreement = compare(probabilities(network, x), run(x))
    agreement.check(what)
    log.info(
        f"{what} agrees with bptrain on {agreement.samples} samples (probabilities within "
        f"{agreement.max_abs_diff:.2g}, the same class for {agreement.argmax_agreement:.2%})"
    )
    return agreement.record()
