"""The gradient check of a config's network: backprop against central differences, in float64."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..engine.network import Network
from ..errors import CheckFailed, ConfigError
from .inputs import NO_DATA_OPTIONS, DataOptions, config_of, data_shape

log = logging.getLogger(__name__)


def gradcheck_config(
    name: str | None,
    overrides: Sequence[str] = (),
    *,
    tolerance: float = 1e-6,
    batch_size: int = 4,
    coords: int = 30,
    data: DataOptions = NO_DATA_OPTIONS,
    read_stdin: Callable[[], str] = lambda: "",
    emit: Callable[[dict[str, Any]], None],
) -> Any:
    """Backprop against central differences for a config's network, in float64 (see gradcheck)."""
    from ..engine import gradcheck
    from ..engine.layers import BatchNorm

    loaded = config_of(name, overrides, read_stdin=read_stdin)
    cfg = loaded.config
    input_shape, classes = data_shape(cfg, data)
    rng = np.random.default_rng(cfg.seed if cfg.seed is not None else 0)
    try:
        network = Network.from_specs(
            cfg.model.layers, input_shape, cfg.model.loss, rng=rng, dtype=np.float64,
            num_classes=classes,
        )  # fmt: skip
    except ConfigError as error:
        raise loaded.locate(error) from None
    if batch_size < 2 and any(isinstance(layer, BatchNorm) for layer in network.layers):
        raise ConfigError(
            "--batch-size 1 with batch_norm: a batch of one normalizes to zero and every "
            "gradient before it vanishes",
            hint="use --batch-size 2 or more (default 4)",
        )
    x = rng.random((batch_size, *input_shape))
    t = rng.integers(0, classes, batch_size)
    report = gradcheck.check_network(network, x, t, tolerance=tolerance, coords=coords, rng=rng)
    emit(report.to_record())
    _judge(report, network, tolerance)
    return report


def _judge(report: Any, network: Network, tolerance: float) -> None:
    for p in report.parameters:
        log.debug(
            f"{p.name:>8} {p.max_relative_error:.2e} at {p.worst_index} "
            f"({p.checked} checked, {p.skipped_kinks} skipped near kinks)"
        )
    if report.unchecked:
        raise CheckFailed(
            f"gradient check inconclusive: no point of {', '.join(report.unchecked)} could be "
            "compared (every step flipped a ReLU or max-pool kink)",
            hint="try another --set seed=N or a larger --coords",
        )
    if not report.ok:
        worst = report.worst
        layer = worst.name.split(".")[0]
        where = f"layer {layer} ({network.layer_name(int(layer))})" if layer.isdigit() else "input"
        raise CheckFailed(
            f"gradient check failed: {worst.name} of {where} has relative error "
            f"{worst.max_relative_error:.3g} > tolerance {tolerance:g} at index "
            f"{list(worst.worst_index)}",
            hint="its backward disagrees with its forward",
        )
    log.info(f"gradient check passed: max relative error {report.max_relative_error:.3g}")
