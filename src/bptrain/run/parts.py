"""Everything a config may name, gathered in one place for config.py (which imports none of it).

Callers that load configs pass PARTS: ``load_config(name, overrides, parts=PARTS)``.
"""

from __future__ import annotations

from ..data.augment import AUGMENTATIONS
from ..data.datasets import DATASETS
from ..engine.layers import LAYERS
from ..engine.losses import LOSSES
from ..engine.optimizers import OPTIMIZERS
from ..engine.schedules import SCHEDULES
from ..registry import Parts

PARTS = Parts(
    layers=LAYERS,
    losses=LOSSES,
    optimizers=OPTIMIZERS,
    schedules=SCHEDULES,
    datasets=tuple(DATASETS),
    # Names people know from elsewhere, suggested when a config uses them.
    dataset_aliases={"fmnist": "fashion-mnist", "fashion": "fashion-mnist"},
    augmentations=AUGMENTATIONS,
)
