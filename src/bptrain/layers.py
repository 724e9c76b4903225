"""`from bptrain.layers import MulLayer, Relu, Affine`: the names the README and learners use.

The layers live in `bptrain.engine.layers`; this module re-exports them so old imports keep working.
"""

from .engine.layers import *  # noqa: F403
from .engine.layers import __all__  # noqa: F401
