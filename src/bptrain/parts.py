"""Everything a config may name, gathered in one place for config.py (which imports none of it).

Callers that load configs pass PARTS: ``load_config(name, overrides, parts=PARTS)``.
"""

from __future__ import annotations

from .augment import AUGMENTATIONS
from .data.datasets import DATASETS
from .layers import LAYERS
from .losses import LOSSES
from .optimizers import OPTIMIZERS
from .registry import Parts
from .schedules import SCHEDULES

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
