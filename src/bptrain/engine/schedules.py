"""Learning-rate schedules: a factor on the optimizer's base learning rate over training.

Every schedule takes `warmup` (epochs, may be fractional): while progress < warmup the factor is
multiplied by progress / warmup, a linear ramp from 0 at the first step (as in the common
"linear warm-up" recipes) up to the schedule's own value when warm-up ends. The schedule itself
runs on the whole timeline, so step boundaries stay at multiples of `step_size` epochs and the
cosine still ends at `min_factor` after `total_epochs`. A warm-up must end before the run does:
the config refuses `warmup >= train.epochs` (config.py, which knows both).
"""

from __future__ import annotations

import math

from ..errors import ConfigError
from ..registry import Registry

SCHEDULES = Registry("schedule")


class Schedule:
    """factor(progress, total) -> multiplier of base_lr; progress is in (fractional) epochs."""

    def __init__(self, warmup: float = 0.0) -> None:
        if not warmup >= 0:
            raise ConfigError(f"must be >= 0 epochs, got {warmup}", path="warmup")
        self.warmup = float(warmup)

    def factor(self, progress: float, total_epochs: int) -> float:
        """The schedule's value at `progress`, scaled down during warm-up."""
        value = self.value(progress, total_epochs)
        if progress < self.warmup:
            value *= max(progress, 0.0) / self.warmup
        return float(value)

    def value(self, progress: float, total_epochs: int) -> float:
        """The schedule without warm-up."""
        raise NotImplementedError


@SCHEDULES.register("constant")
class Constant(Schedule):
    """The same learning rate throughout."""

    def __init__(self, warmup: float = 0.0) -> None:
        super().__init__(warmup)

    def value(self, progress: float, total_epochs: int) -> float:
        return 1.0


@SCHEDULES.register("step")
class Step(Schedule):
    """Multiply by `gamma` every `step_size` epochs: gamma ** floor(progress / step_size)."""

    def __init__(self, step_size: int, gamma: float = 0.1, warmup: float = 0.0) -> None:
        super().__init__(warmup)
        if isinstance(step_size, bool) or not isinstance(step_size, int) or step_size < 1:
            raise ConfigError(
                f"must be a positive integer (epochs), got {step_size!r}", path="step_size"
            )
        if not gamma > 0:
            raise ConfigError(f"must be > 0, got {gamma}", path="gamma")
        self.step_size = step_size
        self.gamma = float(gamma)

    def value(self, progress: float, total_epochs: int) -> float:
        return self.gamma ** math.floor(progress / self.step_size)


@SCHEDULES.register("cosine")
class Cosine(Schedule):
    """Half a cosine from 1 down to `min_factor` over all epochs (stays there after the end)."""

    def __init__(self, min_factor: float = 0.0, warmup: float = 0.0) -> None:
        super().__init__(warmup)
        if not 0 <= min_factor <= 1:
            raise ConfigError(f"must be in [0, 1], got {min_factor}", path="min_factor")
        self.min_factor = float(min_factor)

    def value(self, progress: float, total_epochs: int) -> float:
        done = min(max(progress / max(total_epochs, 1), 0.0), 1.0)
        return self.min_factor + (1 - self.min_factor) * 0.5 * (1 + math.cos(math.pi * done))


@SCHEDULES.register("linear", aliases=("linear_decay", "polynomial"))
class Linear(Schedule):
    """A straight line from 1 down to `min_factor` over all epochs (stays there after the end).

    With `warmup` this is the triangular one-cycle shape: up from 0, then down to the end.
    """

    def __init__(self, min_factor: float = 0.0, warmup: float = 0.0) -> None:
        super().__init__(warmup)
        if not 0 <= min_factor <= 1:
            raise ConfigError(f"must be in [0, 1], got {min_factor}", path="min_factor")
        self.min_factor = float(min_factor)

    def value(self, progress: float, total_epochs: int) -> float:
        done = min(max(progress / max(total_epochs, 1), 0.0), 1.0)
        return self.min_factor + (1 - self.min_factor) * (1 - done)
