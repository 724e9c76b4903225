"""The seed's graph nodes: multiply and add (the shops), exp and 1/x (the sigmoid's graph)."""

from __future__ import annotations

from typing import Any

import numpy as np


class MulLayer:
    """z = x * y; backward swaps the inputs: dx = dout * y, dy = dout * x."""

    def __init__(self) -> None:
        self.x: Any = None
        self.y: Any = None

    def forward(self, x: Any, y: Any) -> Any:
        self.x, self.y = x, y
        return x * y

    def backward(self, dout: Any) -> tuple[Any, Any]:
        return dout * self.y, dout * self.x


class AddLayer:
    """z = x + y; backward passes the upstream gradient to both inputs unchanged."""

    def forward(self, x: Any, y: Any) -> Any:
        return x + y

    def backward(self, dout: Any) -> tuple[Any, Any]:
        return dout * 1, dout * 1  # `* 1` hands out new objects, never the caller's array


class ExpLayer:
    """y = exp(x); its local derivative is y itself, so backward is dout * y (the seed's "exp")."""

    def forward(self, x: Any) -> Any:
        self.out = np.exp(x)
        return self.out

    def backward(self, dout: Any) -> Any:
        return dout * self.out


class ReciprocalLayer:
    """y = 1 / x (the seed's "/" node); dy/dx = -1/x^2 = -y^2, so backward is -dout * y^2."""

    def forward(self, x: Any) -> Any:
        self.out = 1 / x
        return self.out

    def backward(self, dout: Any) -> Any:
        return -dout * self.out * self.out
