"""`from bptrain.losses import SoftmaxWithLoss`: the name the README and learners use.

The losses live in `bptrain.engine.losses`; this module re-exports them so old imports keep working.
"""

from .engine.losses import LOSSES, IdentityWithMSE, SoftmaxWithLoss

__all__ = ["LOSSES", "IdentityWithMSE", "SoftmaxWithLoss"]
