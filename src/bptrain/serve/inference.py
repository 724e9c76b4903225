"""One image in, what the page shows out: the record of `predict`, and on request the forward
and backward pass of the network (bptrain.trace) packed small enough for JSON.

No web library here: the app calls Engine.predict from its worker threads; scripts and the
benchmark can call it directly. The network's layers keep caches between forward and backward,
so every pass through it holds the engine's lock; decoding and preprocessing run outside it.
"""

from __future__ import annotations

import base64
import threading
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..engine.trace import Trace, trace
from ..functional import finite_or_null
from ..predict import classify as predict
from ..predict.decode import GZIP_MAGIC, InputError, Item, read_bytes
from ..predict.preprocess import preprocess as preprocess_image
from ..run.model import Model, load_model

MAX_MAPS = 16  # feature maps shown per conv layer (the statistics cover every channel)
MAX_INFLATED = 64 << 20  # a gzip upload may inflate to this much, not predict's 1 GiB
MAX_DECODING = 2  # images decoded at once: a burst of large uploads cannot exhaust memory


class RequestError(Exception):
    """A request the engine cannot serve; `status` is its HTTP status (400, 413, 422)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Engine:
    """A loaded model, the preprocessing of its dataset, and the lock around its network."""

    model: Model
    style: str
    size: tuple[int, int]
    lock: threading.Lock = field(default_factory=threading.Lock)
    decoding: threading.Semaphore = field(
        default_factory=lambda: threading.BoundedSemaphore(MAX_DECODING)
    )

    @classmethod
    def load(cls, path: str, weights: str = "auto", preprocess: str = "auto") -> Engine:
        model = load_model(path, weights)
        return cls(model, predict.style_for(model, preprocess), predict.image_size(model))

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(self.model.info.class_names)

    def summary(self) -> dict[str, Any]:
        """What GET /api/model returns: the checkpoint, its data, and its layers."""
        model, info, network = self.model, self.model.info, self.model.network
        metrics = model.ckpt.metrics
        return finite_or_null(
            {
                "event": "model",
                "checkpoint": model.ckpt.path.name,
                "name": getattr(info, "name", None),
                "dataset": info.dataset,
                "class_names": list(info.class_names),
                "input_shape": list(info.input_shape),
                "preprocess": self.style,
                "weights": model.weights,
                "epochs": model.ckpt.epochs,
                "complete": model.ckpt.complete,
                "test_accuracy": metrics.get("test_accuracy"),
                "params": network.num_params,
                "loss": network.loss_layer.name,
                "layers": network.summary(),
            }
        )

    # ----------------------------------------------------------------- the request's steps

    def prepare(self, data: bytes, name: str) -> tuple[Item, np.ndarray]:
        """Decode one image's bytes as `predict` reads files, and preprocess it (H, W)."""
        if data.startswith(GZIP_MAGIC):
            data = _gunzip(data)
        with self.decoding:
            try:
                items = read_bytes(data, name)
            except InputError as error:
                status = 413 if "megapixel" in error.reason else 400
                raise RequestError(status, str(error)) from None
            if len(items) != 1:
                raise RequestError(
                    422, f"{name}: holds {len(items)} images; send one (bptrain predict reads many)"
                )
            try:
                x = preprocess_image(items[0].pixels, self.style, self.size, name=name)
            except InputError as error:
                raise RequestError(422, str(error)) from None
        return items[0], x

    def predict(
        self,
        data: bytes,
        *,
        name: str = "upload",
        details: bool = False,
        target: int | None = None,
        top_k: int = 3,
    ) -> dict[str, Any]:
        """The `prediction` record of `predict` for one image, with `details` on request."""
        item, x = self.prepare(data, name)
        return self.infer(item, x, details=details, target=target, top_k=top_k)

    def infer(
        self,
        item: Item,
        x: np.ndarray,
        *,
        details: bool = False,
        target: int | None = None,
        top_k: int = 3,
    ) -> dict[str, Any]:
        """Forward (and with details, backward) through the network, under the lock."""
        names = self.class_names
        if target is not None and not 0 <= target < len(names):
            raise RequestError(400, f"class {target} is out of range 0..{len(names) - 1}")
        batch = x[None, None]  # (H, W) -> (1, 1, H, W)
        with self.lock:
            if not details:
                p = predict.probabilities(self.model, [predict.Prepared(item, x)])[0]
                return predict.record(item, p, names, top_k)
            if target is None:
                target = int(np.argmax(self.model.network.predict(batch)[0]))
            traced = trace(self.model.network, batch, np.array([target]))
        out = predict.record(item, traced.probabilities[0], names, top_k)
        smoothing = getattr(self.model.network.loss_layer, "label_smoothing", 0.0)
        out["details"] = pack(traced, x, target, names, smoothing)
        return out


# --------------------------------------------------------------------- packing for JSON


def pack(
    traced: Trace,
    x: np.ndarray,
    target: int,
    names: tuple[str, ...],
    label_smoothing: float = 0.0,
) -> dict[str, Any]:
    """Per layer its statistics and a picture of its output, the input and dL/d(input); the
    loss, and -log p(target) beside it."""
    stats = traced.stats()
    layers = []
    for layer, numbers in zip(traced.layers, stats["layers"], strict=True):
        layers.append(numbers | {"picture": picture(layer.output[0])})
    grad = traced.input_grad[0].reshape(x.shape).astype(np.float64)  # (1, H, W) -> (H, W)
    values = {"shape": list(grad.shape), "values": grad.tolist(), "max_abs": float(abs(grad).max())}
    with np.errstate(divide="ignore"):  # p = 0 gives inf, sent as null
        neg_log_p = float(-np.log(traced.probabilities[0][target]))
    return {
        "class": target,
        "class_name": names[target],
        # The loss the network trains on; with label smoothing it is not -log p(class).
        "loss": stats["loss"],
        "label_smoothing": label_smoothing,
        "neg_log_p": neg_log_p if np.isfinite(neg_log_p) else None,
        "input": {
            "shape": list(x.shape),
            "pixels": np.round(x.astype(np.float64), 4).tolist(),
            **stats["input"],
        },
        "input_gradient": finite_or_null(values) | stats["input_gradient"],
        "layers": layers,
    }


def picture(output: np.ndarray) -> dict[str, Any]:
    """A small picture of one sample's layer output: feature-map tiles, or a strip of units.

    Values are scaled to bytes between each tile's (or the strip's) minimum and maximum and
    sent base64-encoded; `ranges` gives those bounds, so value = lo + byte / 255 * (hi - lo).
    """
    if output.ndim == 3:  # (C, H, W): the first MAX_MAPS channels
        shown = output[:MAX_MAPS].astype(np.float64)
        lo, hi = shown.min(axis=(1, 2)), shown.max(axis=(1, 2))
        return {
            "kind": "maps",
            "channels": int(output.shape[0]),
            "shape": list(shown.shape),
            "ranges": np.stack([lo, hi], axis=1).tolist(),
            "data": _bytes(shown, lo[:, None, None], hi[:, None, None]),
        }
    flat = output.ravel().astype(np.float64)  # (D,) units, or anything else flattened
    lo, hi = float(flat.min()), float(flat.max())
    return {
        "kind": "strip",
        "units": int(flat.size),
        "shape": [int(flat.size)],
        "ranges": [[lo, hi]],
        "data": _bytes(flat, lo, hi),
    }


def _bytes(values: np.ndarray, lo: Any, hi: Any) -> str:
    span = np.where(hi > lo, hi - lo, 1.0)
    scaled = np.clip(np.round((values - lo) / span * 255), 0, 255).astype(np.uint8)
    return base64.b64encode(scaled.tobytes()).decode("ascii")


def _gunzip(data: bytes) -> bytes:
    """A gzip upload inflated within MAX_INFLATED (read_bytes allows 1 GiB)."""
    inflater = zlib.decompressobj(wbits=31)
    try:
        out = inflater.decompress(data, MAX_INFLATED + 1)
    except zlib.error as error:
        raise RequestError(400, f"damaged gzip data ({error})") from None
    if len(out) > MAX_INFLATED:
        raise RequestError(413, f"gzip data inflates to over {MAX_INFLATED >> 20} MiB")
    if not inflater.eof:
        raise RequestError(400, "truncated gzip data")
    return out
