"""The seed's binary graph nodes: multiply and add, as in the shop examples."""

from __future__ import annotations

from typing import Any


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
