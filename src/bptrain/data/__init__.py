"""The data layer: dataset table, downloader, IDX verification, cache and loading.

Public API (the CLI and the trainer depend on these names):
fetch() puts the four verified files on disk, load() returns them as arrays (all splits, or
only some: load(..., splits=("test",))), split_validation() holds a seeded validation set out
of the training set. Data-layer warnings (a failing mirror, a corrupt cached file) go through
logging.getLogger("bptrain.data.*"); nothing here prints.
"""

from .cache import dataset_folder, resolve_data_dir
from .datasets import DATASETS, FILE_NAMES, DatasetInfo, FileSpec, get_info
from .download import USER_AGENT
from .env import ENV_DATA_DIR, ENV_MIRROR, ENV_OFFLINE, env_mirrors, env_offline
from .fetch import FetchResult, FileRecord, fetch
from .idx import CorruptFileError
from .loading import Dataset, load, split_indices, split_validation

__all__ = [
    "DATASETS",
    "ENV_DATA_DIR",
    "ENV_MIRROR",
    "ENV_OFFLINE",
    "FILE_NAMES",
    "USER_AGENT",
    "CorruptFileError",
    "Dataset",
    "DatasetInfo",
    "FetchResult",
    "FileRecord",
    "FileSpec",
    "dataset_folder",
    "env_mirrors",
    "env_offline",
    "fetch",
    "get_info",
    "load",
    "resolve_data_dir",
    "split_indices",
    "split_validation",
]
