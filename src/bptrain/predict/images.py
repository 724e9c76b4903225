"""Users' images as other packages (serve) use them: one image's bytes read and prepared.

The work is in decode.py (bytes -> grey images, every format), read.py (paths, folders, stdin,
lists), preprocess.py (MNIST-style preparation), folders.py (class folders for eval --images)
and saving.py (--save-preprocessed); this module only names what serve uses.
"""

from .decode import GZIP_MAGIC, InputError, Item, read_bytes
from .preprocess import preprocess

__all__ = ["GZIP_MAGIC", "InputError", "Item", "preprocess", "read_bytes"]
