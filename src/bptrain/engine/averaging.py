"""Weight averaging: an exponential moving average (EMA) of a network's weights.

The averaged weights lag the trained ones by about 1 / (1 - decay) steps and smooth out the
noise of the last steps' updates, so they usually test better than the raw weights at no
cost in training (Polyak averaging; the EMA of timm and Keras' `use_ema`). Training keeps
updating the raw weights; validation, the test and the saved model use the average.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from .. import accel


class WeightAverage:
    """avg = d * avg + (1 - d) * w after every update, for every parameter and float buffer.

    The decay warms up as d = min(decay, (1 + n) / (10 + n)) over the first updates (n of
    them done so far): a decay of 0.999 would otherwise keep the random initial weights in
    the average for thousands of steps. BatchNorm's running statistics are averaged too, so
    the averaged model normalizes with statistics that match its averaged weights.
    """

    def __init__(self, decay: float, arrays: Mapping[str, np.ndarray], updates: int = 0) -> None:
        self.decay = float(decay)
        self.updates = int(updates)
        self.arrays = {k: v.copy() for k, v in arrays.items() if v.dtype.kind == "f"}
        self._scratch: dict[str, np.ndarray] = {}

    def current_decay(self) -> float:
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    def update(self, arrays: Mapping[str, np.ndarray]) -> None:
        """Move the average towards `arrays` (the network's live weights)."""
        d = self.current_decay()
        fast = accel.loops()
        for name, average in self.arrays.items():
            weights = arrays[name]
            rate = average.dtype.type(1 - d)
            if fast is not None and average.flags.c_contiguous and weights.flags.c_contiguous:
                fast.ema_step(average.reshape(-1), weights.reshape(-1), rate)  # one pass
                continue
            # avg += (1 - d) * (w - avg): three passes in place, no new arrays per step.
            step = self._scratch.get(name)
            if step is None:
                step = self._scratch[name] = np.empty_like(average)
            np.subtract(weights, average, out=step)
            step *= rate
            average += step
        self.updates += 1
