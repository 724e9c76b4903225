"""The dataset table: file names, mirrors, sizes and checksums (facts from DATASETS.md)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError
from ..registry import did_you_mean

# The four standard IDX files, in the order train images, train labels, test images, test labels.
TRAIN_IMAGES = "train-images-idx3-ubyte"
TRAIN_LABELS = "train-labels-idx1-ubyte"
TEST_IMAGES = "t10k-images-idx3-ubyte"
TEST_LABELS = "t10k-labels-idx1-ubyte"
FILE_NAMES: tuple[str, ...] = (TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS)

# Largest decompressed IDX file accepted when no size is known (the `idx` dataset): EMNIST's
# biggest file is ~550 MB, so 2 GiB leaves room without letting a bad header claim anything.
MAX_IDX_BYTES = 2**31


@dataclass(frozen=True)
class FileSpec:
    """One IDX file: raw (decompressed) SHA-256 and size; the gz facts are informational."""

    name: str
    sha256: str | None = None
    size: int | None = None
    gz_sha256: str | None = None
    gz_size: int | None = None

    @property
    def is_images(self) -> bool:
        """True for an idx3 image file, False for an idx1 label file."""
        return "-images-" in self.name


@dataclass(frozen=True)
class DatasetInfo:
    """A dataset: its four files and what is known about them (None = read from the files)."""

    name: str
    files: tuple[FileSpec, ...]
    mirrors: tuple[str, ...] = ()
    image_shape: tuple[int, int] | None = None
    num_classes: int | None = None
    class_names: tuple[str, ...] | None = None
    system_dirs: tuple[Path, ...] = ()
    max_file_bytes: int = MAX_IDX_BYTES

    def __post_init__(self) -> None:
        names = tuple(spec.name for spec in self.files)
        if names != FILE_NAMES:
            raise ConfigError(f"dataset {self.name!r}: files must be {', '.join(FILE_NAMES)}")

    def spec(self, name: str) -> FileSpec:
        """The FileSpec of one of the four FILE_NAMES."""
        return self.files[FILE_NAMES.index(name)]

    @property
    def verified(self) -> bool:
        """True when every file has a known checksum (mnist, fashion-mnist)."""
        return all(spec.sha256 for spec in self.files)


def _spec(name: str, gz_size: int, gz_sha256: str, sha256: str) -> FileSpec:
    # Raw sizes follow from the IDX layout: 16-byte header + N*28*28, or 8-byte header + N.
    count = 60000 if name.startswith("train") else 10000
    size = 16 + count * 28 * 28 if "-images-" in name else 8 + count
    return FileSpec(name, sha256=sha256, size=size, gz_sha256=gz_sha256, gz_size=gz_size)


MNIST = DatasetInfo(
    name="mnist",
    files=(
        _spec(
            TRAIN_IMAGES,
            9_912_422,
            "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
            "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        ),
        _spec(
            TRAIN_LABELS,
            28_881,
            "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
            "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        ),
        _spec(
            TEST_IMAGES,
            1_648_877,
            "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
            "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        ),
        _spec(
            TEST_LABELS,
            4_542,
            "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
            "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
        ),
    ),
    # yann.lecun.com has answered 403/404 for years: last resort only.
    mirrors=(
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
        "http://yann.lecun.com/exdb/mnist/",
    ),
    image_shape=(28, 28),
    num_classes=10,
    class_names=tuple(str(digit) for digit in range(10)),
    system_dirs=(Path("/usr/share/datasets/mnist"),),
)

FASHION_MNIST = DatasetInfo(
    name="fashion-mnist",
    files=(
        _spec(
            TRAIN_IMAGES,
            26_421_880,
            "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
            "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        ),
        _spec(
            TRAIN_LABELS,
            29_515,
            "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
            "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        ),
        _spec(
            TEST_IMAGES,
            4_422_102,
            "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
            "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        ),
        _spec(
            TEST_LABELS,
            5_148,
            "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
            "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        ),
    ),
    mirrors=(
        "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    ),
    image_shape=(28, 28),
    num_classes=10,
    class_names=(
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ),
    # Debian's dataset-fashion-mnist package installs here.
    system_dirs=(Path("/usr/share/datasets/fashion-mnist"),),
)

# Any folder holding the four standard file names: no checksum, everything read from the files.
IDX = DatasetInfo(name="idx", files=tuple(FileSpec(name) for name in FILE_NAMES))

DATASETS: dict[str, DatasetInfo] = {info.name: info for info in (MNIST, FASHION_MNIST, IDX)}


def known_file(sha256: str) -> tuple[str, str] | None:
    """(dataset, file name) of the table's file with this raw SHA-256, or None.

    Read from DATASETS at each call (a dozen entries), so a dataset added to the table counts.
    """
    for info in DATASETS.values():
        for spec in info.files:
            if spec.sha256 == sha256:
                return info.name, spec.name
    return None


def get_info(dataset: str | DatasetInfo) -> DatasetInfo:
    """The DatasetInfo for a name (ConfigError with a suggestion when unknown) or as given."""
    if isinstance(dataset, DatasetInfo):
        return dataset
    info = DATASETS.get(dataset)
    if info is None:
        close = did_you_mean(dataset, DATASETS)
        hint = f"did you mean {close!r}?" if close else f"choose one of {', '.join(DATASETS)}"
        raise ConfigError(f"unknown dataset {dataset!r}", hint=hint)
    return info
