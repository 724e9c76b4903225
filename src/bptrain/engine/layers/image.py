"""Shape checks shared by the layers that work on (N, C, H, W) images: conv and pooling."""

from __future__ import annotations

from ...errors import ConfigError
from ...functional import Pair
from .base import Shape


def positive(value: int, path: str) -> int:
    """`value` if it is an integer >= 1, else a ConfigError naming `path`."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"must be a positive integer, got {value!r}", path=path)
    return value


def pair(value: int | tuple[int, int] | list[int], path: str) -> Pair:
    """An int k -> (k, k); a pair of positive ints as a tuple."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ConfigError(f"must be an int or a pair [height, width], got {value!r}", path=path)
        return positive(value[0], path), positive(value[1], path)
    return positive(value, path), positive(value, path)


def image_shape(input_shape: Shape, layer: str) -> tuple[int, int, int]:
    """(C, H, W) from an input shape without the batch axis, or a ConfigError."""
    if len(input_shape) != 3:
        raise ConfigError(
            f"{layer} needs (channels, height, width) input, got a {len(input_shape)}-D shape",
            hint="conv and pooling layers go before flatten and affine, on image-shaped data",
        )
    c, h, w = input_shape
    return c, h, w


def check_fits(kernel: Pair, padded_hw: Pair, path: str) -> None:
    """A kernel larger than the (padded) image has no valid position."""
    if kernel[0] > padded_hw[0] or kernel[1] > padded_hw[1]:
        raise ConfigError(
            f"the {kernel[0]}x{kernel[1]} window is bigger than the "
            f"{padded_hw[0]}x{padded_hw[1]} (padded) input",
            path=path,
        )
