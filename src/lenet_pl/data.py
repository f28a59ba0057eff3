"""MNIST and Fashion-MNIST as a LightningDataModule that serves batches from in-memory tensors.

torchvision downloads the IDX files; every file is checked to be the data set's original (the
sha256 of its content) as it is read, and parsed once; after that a batch is one
tensor index into uint8 images (47 MB for MNIST's train set), and the float conversion,
padding and normalisation run on the whole batch after it reaches the training device.
With `device="auto"` and a CUDA trainer the uint8 tensors themselves live on the GPU, so
batches are cut there and nothing crosses the PCIe bus during training.
"""

import gzip
import hashlib
import logging
import math
import os
import zlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.datasets import MNIST, FashionMNIST

from lenet_pl.augment import AUGMENTATIONS
from lenet_pl.runtime.errors import ConfigError, DataError

log = logging.getLogger("lenet_pl")

DATASETS: dict[str, type[MNIST]] = {"mnist": MNIST, "fashion_mnist": FashionMNIST}
# What each label means, as evaluation tables and pictures name it: MNIST's labels are their digits,
# Fashion-MNIST's the names torchvision gives (0: T-shirt/top ... 9: Ankle boot).
CLASS_NAMES: dict[str, list[str]] = {"mnist": [str(d) for d in range(10)], "fashion_mnist": list(FashionMNIST.classes)}


def class_names(dataset: str, num_classes: int) -> list[str]:
    """The names of `dataset`'s labels 0..num_classes-1; the labels themselves for a data set without names."""
    names = CLASS_NAMES.get(dataset, [])
    return names[:num_classes] if len(names) >= num_classes else [str(c) for c in range(num_classes)]


def class_label(label: int, names: Sequence[str]) -> str:
    """A class as tables and pictures show it: "6 Shirt" where it has a name beyond its number, "6" where
    its name is its digit (MNIST) or it has none."""
    name = names[label] if 0 <= label < len(names) else str(label)
    return str(label) if name == str(label) else f"{label} {name}"


IMAGE_SIZE = 28  # side of every MNIST-family image


class TensorBatches:
    """Batches of (uint8 images, int64 labels) cut from tensors by index: no workers, no per-sample Python.

    Shuffling uses a generator seeded with `seed + epoch`, so runs are reproducible and the
    order of any epoch can be rebuilt on resume: `epoch_source` (the trainer's epoch) sets the
    epoch when given, else a counter does (`state_dict` holds it). With
    `world_size > 1` (DDP), every rank draws the same permutation and takes every
    world_size-th sample of it, padded by wrapping around so that all ranks get equally many.
    """

    def __init__(
        self,
        images: Tensor,
        labels: Tensor,
        batch_size: int,
        shuffle: bool = False,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        epoch_source: Callable[[], int] | None = None,
    ) -> None:
        self.images, self.labels = images, labels
        self.batch_size, self.shuffle, self.seed = batch_size, shuffle, seed
        self.rank, self.world_size = rank, world_size
        self.epoch_source = epoch_source
        self.epoch = 0

    def _samples_per_rank(self) -> int:
        return math.ceil(len(self.labels) / self.world_size)

    def __len__(self) -> int:
        return math.ceil(self._samples_per_rank() / self.batch_size)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        n = len(self.labels)
        if self.shuffle:
            if self.epoch_source is not None:
                self.epoch = self.epoch_source()
            generator = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(n, generator=generator)
            self.epoch += 1
        else:
            order = torch.arange(n)
        order = order.to(self.images.device)  # the same permutation on every device, indexed where the data is
        if self.world_size > 1:
            padded = self._samples_per_rank() * self.world_size
            order = torch.cat([order, order[: padded - n]])[self.rank :: self.world_size]
        for start in range(0, len(order), self.batch_size):
            index = order[start : start + self.batch_size]
            yield self.images[index], self.labels[index]

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch = state["epoch"]


DEVICES = ("auto", "cpu", "cuda", "cuda:<index>")


def resolve_device(device: str, training_device: torch.device | None = None) -> torch.device:
    """Where the data set's tensors live: `data.device` resolved against the device the trainer trains on.

    "auto" follows a CUDA trainer onto its GPU and stays on the CPU otherwise (also when no
    trainer is attached); "cpu", "cuda" and "cuda:N" are taken as given.
    """
    if device == "auto":
        if training_device is not None and training_device.type == "cuda":
            return training_device
        return torch.device("cpu")
    try:
        resolved = torch.device(device) if isinstance(device, str) else None
    except (RuntimeError, ValueError):
        resolved = None
    if resolved is None or resolved.type not in ("cpu", "cuda"):
        raise ConfigError(f"data.device={device!r} is not known; choose one of {', '.join(DEVICES)}.")
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f"data.device={device!r} needs a CUDA GPU, and torch sees none here (torch.cuda.is_available() is "
            "False). Use data.device=auto (the GPU when training on one, else the CPU) or data.device=cpu."
        )
    return resolved


# sha256 of each original file's unpacked content: the IDX data itself, however it was compressed.
# Computed from the original .gz files: MNIST's four as torchvision downloads them (their md5s are those
# in torchvision's MNIST.resources), Fashion-MNIST's from Debian's dataset-fashion-mnist package
# (0.0~git20200523.55506a9-1), which re-compresses the originals: its .gz md5s differ from
# FashionMNIST.resources, its content does not. Every form the data comes in (.gz or unpacked, in
# <root>/<Dataset>/raw/ or a folder of the user's) is read through `read_checked`, so a file that is
# altered, cut short, or another data set's is refused before training; both data sets are known, so
# MNIST's files found where Fashion-MNIST was asked for are named as MNIST's.
ORIGINALS: dict[str, dict[str, tuple[str, tuple[int, ...]]]] = {  # name -> (sha256, the dimensions it holds)
    "MNIST": {
        "train-images-idx3-ubyte": (
            "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
            (60_000, IMAGE_SIZE, IMAGE_SIZE),
        ),
        "train-labels-idx1-ubyte": ("65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5", (60_000,)),
        "t10k-images-idx3-ubyte": (
            "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
            (10_000, IMAGE_SIZE, IMAGE_SIZE),
        ),
        "t10k-labels-idx1-ubyte": ("ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2", (10_000,)),
    },
    "FashionMNIST": {
        "train-images-idx3-ubyte": (
            "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
            (60_000, IMAGE_SIZE, IMAGE_SIZE),
        ),
        "train-labels-idx1-ubyte": ("bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9", (60_000,)),
        "t10k-images-idx3-ubyte": (
            "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
            (10_000, IMAGE_SIZE, IMAGE_SIZE),
        ),
        "t10k-labels-idx1-ubyte": ("0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34", (10_000,)),
    },
}
_TITLES = {"MNIST": "MNIST", "FashionMNIST": "Fashion-MNIST"}


def _known(digest: str) -> tuple[str, str] | None:
    """(data set, file name) of the original file whose content has this sha256, if any."""
    for dataset, files in ORIGINALS.items():
        for name, (original, _) in files.items():
            if digest == original:
                return dataset, name
    return None


def _title(name: str) -> str:
    return _TITLES.get(name, name)


def _config_name(name: str) -> str:
    return next(key for key, dataset in DATASETS.items() if dataset.__name__ == name)


def _raw_folder(dataset: type[MNIST], root: str | Path) -> Path:
    return Path(root) / dataset.__name__ / "raw"


def _unpacked_names(dataset: type[MNIST]) -> list[str]:
    return [os.path.splitext(name)[0] for name, _ in dataset.resources]


def data_folder(dataset: type[MNIST], root: str | Path) -> Path | None:
    """The folder holding the data set's four files (each unpacked or as .gz), or None.

    Either `<root>/<Dataset>/raw/`, where torchvision downloads them, or `root` itself, so that
    `data.root` can point straight at a copy the user has, e.g. /usr/share/datasets/fashion-mnist/.
    """
    for folder in (_raw_folder(dataset, root), Path(root)):
        if all((folder / n).is_file() or (folder / f"{n}.gz").is_file() for n in _unpacked_names(dataset)):
            return folder
    return None


def read_content(folder: Path, name: str) -> tuple[Path, bytes]:
    """(the file read, its unpacked bytes) for the data set's file `name` in `folder`: the unpacked file
    when it is there, else its .gz unpacked in memory. A .gz that cannot be unpacked is a DataError."""
    path = folder / name
    if path.is_file():
        return path, path.read_bytes()
    path = folder / f"{name}.gz"
    packed = path.read_bytes()
    try:
        return path, gzip.decompress(packed)
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(
            f"{path} is corrupt or truncated: it cannot be unpacked ({err}). Delete it and run again to "
            "download a fresh copy, or replace it with a good copy of the original file; nothing was changed."
        ) from err


def read_checked(folder: Path, name: str, dataset: type[MNIST], verify: bool = True) -> tuple[Path, bytes]:
    """`read_content`, refused with a DataError unless the content is `dataset`'s original file `name`
    (its sha256, `ORIGINALS`). The bytes checked are the bytes returned, so nothing can change between
    the check and their use; hashing MNIST's four files takes ~0.04 s. `verify=False` skips the check."""
    path, content = read_content(folder, name)
    if verify:
        digest = hashlib.sha256(content).hexdigest()
        if digest != ORIGINALS[dataset.__name__][name][0]:
            raise DataError(_not_the_original(path, content, digest, dataset, name))
    return path, content


def _idx_dims(data: bytes) -> list[int]:
    """The dimensions an IDX file of unsigned bytes announces in its header; a ValueError if it has none."""
    if len(data) < 4 or data[:3] != b"\x00\x00\x08" or not 1 <= data[3] <= 3 or len(data) < 4 + 4 * data[3]:
        raise ValueError("it does not start with the header of an IDX file of unsigned bytes")
    return [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(data[3])]


def _holding(dims: list[int]) -> str:
    if len(dims) == 3:
        return f"{dims[0]:,} images of {dims[1]}x{dims[2]}"
    return f"{dims[0]:,} labels" if len(dims) == 1 else "an array of " + "x".join(map(str, dims))


def _what_it_holds(content: bytes, digest: str, dataset: type[MNIST], name: str) -> str:
    """What a file that is not `dataset`'s original `name` holds instead, as far as it can be told."""
    known = _known(digest)
    if known is not None:
        return f"it holds {_title(known[0])}'s {known[1]}"
    sha256, shape = ORIGINALS[dataset.__name__][name]
    original = list(shape)
    try:
        dims = _idx_dims(content)
    except ValueError:
        return f"it is not an IDX file of unsigned bytes at all ({len(content):,} bytes starting {content[:4].hex()})"
    size = 4 + 4 * len(dims) + math.prod(dims)
    if dims == original and len(content) == size:
        return (
            f"it has the original's header and size ({_holding(dims)}) but other content (sha256 {digest[:12]}..., "
            f"the original's {sha256[:12]}...): it was altered, or it is another data set "
            f"in {_title(dataset.__name__)}'s format"
        )
    cut = "" if len(content) == size else f", in {len(content):,} bytes where its header announces {size:,}"
    return f"it holds {_holding(dims)}{cut}; the original holds {_holding(original)}"


def _is_other(folder: Path, dataset: str) -> bool:
    """Whether all four files in `folder` are `dataset`'s originals (read only to word an error)."""
    try:
        return all(
            hashlib.sha256(read_content(folder, name)[1]).hexdigest() == digest
            for name, (digest, _) in ORIGINALS[dataset].items()
        )
    except (OSError, DataError):
        return False


def _gz_is_original(gz: Path, dataset: type[MNIST], name: str) -> bool:
    try:
        return hashlib.sha256(gzip.decompress(gz.read_bytes())).hexdigest() == ORIGINALS[dataset.__name__][name][0]
    except (OSError, EOFError, zlib.error):
        return False


def _not_the_original(path: Path, content: bytes, digest: str, dataset: type[MNIST], name: str) -> str:
    """One paragraph: which file, what it holds instead, and what to do."""
    title, folder = _title(dataset.__name__), path.parent
    asked = f"data.dataset={_config_name(dataset.__name__)}"
    message = f"{path} is not {title}'s {name}, which {asked} reads: {_what_it_holds(content, digest, dataset, name)}."
    other = (_known(digest) or (dataset.__name__,))[0]
    if other != dataset.__name__ and _is_other(folder, other):
        message += f" The files in {folder} are {_title(other)}'s, not {title}'s."
    if folder.name == "raw" and folder.parent.name == dataset.__name__:  # where torchvision downloads
        gz = path.with_name(f"{name}.gz")
        if path != gz and _gz_is_original(gz, dataset, name):
            message += f" {gz.name} beside it holds the original: delete {path.name} and the next run unpacks it again."
        else:
            also = f" (and {gz.name})" if path != gz and gz.is_file() else ""
            message += (
                f" Delete it{also} and run again to download a fresh copy (data.download=true), or replace it with "
                "the original."
            )
    else:
        message += (
            f" Point data.root at a folder that holds {title}'s original files, or at another folder to download "
            f"them into (<data.root>/{dataset.__name__}/raw/)."
        )
    if other != dataset.__name__:
        message += f" To train on {_title(other)}, use data={_config_name(other)}."
    message += f" Nothing was changed in {folder}."
    if _known(digest) is None:
        message += (
            f" If these are your own files in {title}'s format on purpose, data.verify=false reads them unchecked."
        )
    return message


def _unpack(content: bytes, path: Path) -> None:
    """Write the unpacked file beside its .gz (via a temporary file and a rename), so later runs read it
    directly; where that cannot be written, runs unpack the .gz in memory instead."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(content)
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)


def ensure_downloaded(dataset: type[MNIST], root: str | Path, download: bool = True, verify: bool = True) -> None:
    """Make sure the data set's four files are in `root/<Dataset>/raw/` or in `root` itself; raise a
    DataError saying what to do if not.

    In `<root>/<Dataset>/raw/` a .gz is unpacked beside itself, as torchvision does, once its content
    is checked (`read_checked`); a folder of the user's given as `root` is only read (`load_split`
    checks and unpacks its files in memory, ~1 s). Missing files are downloaded (and md5-checked) by
    torchvision. A file already there that is not right is reported, never replaced or downloaded again.
    """
    raw = _raw_folder(dataset, root)
    if (data_folder(dataset, root) or raw) == raw:
        for name in _unpacked_names(dataset):
            if not (raw / name).is_file() and (raw / f"{name}.gz").is_file():
                _unpack(read_checked(raw, name, dataset, verify)[1], raw / name)
    if data_folder(dataset, root) is not None:
        return
    names = ", ".join(name for name, _ in dataset.resources)
    if not download:
        raise DataError(
            f"{dataset.__name__} is not in {raw} and data.download=false. Put the four files ({names}, "
            f"or the same names without .gz) in that folder or directly in {root}, point data.root at the "
            "folder that holds them (e.g. data.root=/usr/share/datasets/fashion-mnist), or set data.download=true."
        )
    try:
        dataset(str(root), train=True, download=True)  # fetches and checks all four files
    except Exception as err:
        reason = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
        raise DataError(
            f"{dataset.__name__} is not in {raw} and downloading it failed ({reason}). Without a network, "
            f"copy the four original files ({names}) into {raw}/ or point data.root at the folder that "
            "holds them (a copy compressed another way, such as Debian's, is fine), e.g. "
            "`python -m lenet_pl.train data.root=/path/to/data`; their content is checked."
        ) from err


def parse_idx(data: bytes) -> Tensor:
    """An IDX file of unsigned bytes (MNIST's format) as a uint8 tensor of the dimensions its header gives."""
    dims = _idx_dims(data)
    expected = 4 + 4 * len(dims) + math.prod(dims)
    if len(data) != expected:
        raise ValueError(f"it has {len(data)} bytes, its header announces {expected}")
    return torch.frombuffer(bytearray(data), dtype=torch.uint8, offset=4 + 4 * len(dims)).view(*dims)


def load_split(dataset: type[MNIST], root: str | Path, train: bool, verify: bool = True) -> tuple[Tensor, Tensor]:
    """The train or test split as (uint8 images N x 28 x 28, int64 labels N), read from wherever
    `data_folder` finds the files (the unpacked file, else its .gz unpacked in memory), each checked to
    be the data set's original (`read_checked`) unless `verify` is False."""
    folder = data_folder(dataset, root) or _raw_folder(dataset, root)
    prefix = "train" if train else "t10k"
    try:
        images = parse_idx(read_checked(folder, f"{prefix}-images-idx3-ubyte", dataset, verify)[1])
        labels = parse_idx(read_checked(folder, f"{prefix}-labels-idx1-ubyte", dataset, verify)[1]).long()
    except DataError:
        raise
    except (OSError, ValueError, RuntimeError) as err:
        raise DataError(
            f"Could not read the {dataset.__name__} files in {folder} ({type(err).__name__}: {err}). They are "
            f"truncated or not IDX files: delete {', '.join(_unpacked_names(dataset))} there and run "
            "again to unpack or download fresh copies."
        ) from err
    if images.dim() != 3 or images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE) or len(images) != len(labels):
        raise DataError(
            f"The {dataset.__name__} files in {folder} hold {tuple(images.shape)} images and {len(labels)} "
            f"labels; expected N x {IMAGE_SIZE} x {IMAGE_SIZE} images with one label each."
        )
    return images, labels


class MNISTDataModule(L.LightningDataModule):
    """MNIST or Fashion-MNIST: a seeded train/val split of the 60k training images, and the 10k test set.

    Args:
        root: folder holding `MNIST/raw/` (or `FashionMNIST/raw/`), downloaded there if missing, or
            holding the four files itself (e.g. /usr/share/datasets/fashion-mnist).
        dataset: "mnist" or "fashion_mnist".
        batch_size: training batch size.
        eval_batch_size: batch size for validation and test (no effect on their results).
        val_size: validation images held out of the training set: a count, or a fraction in (0, 1);
            0 trains on the whole training set with no validation (the 1998 paper's protocol: then
            nothing can be chosen on validation, and a run is tested after its last epoch).
        split_seed: seed of the train/val split (fixed apart from the training seed, so seeds
            vary the training, not the data).
        shuffle_seed: seed of the per-epoch shuffling.
        image_size: side of the model's input; images are centred and padded with background
            (32 for the paper's LeNet-5, 28 for none).
        mean, std: normalisation applied after scaling pixels to [0, 1].
        download: download through torchvision when the files are missing.
        verify: refuse files that are not the data set's originals (the sha256 of their content:
            `ORIGINALS`); False reads IDX files of your own under the data set's names unchecked.
        device: where the uint8 data set lives and batches are cut: "auto" (the trainer's GPU
            when it trains on CUDA, else the CPU), "cpu", "cuda" or "cuda:N".
        augment: random distortions of training batches (on whole padded batches, after the
            transfer, before normalisation): a name from `lenet_pl.augment.AUGMENTATIONS`
            ("none", "distortions": the paper's random affine maps) or a callable on (N, 1, H, W).
    """

    def __init__(
        self,
        root: str = "data",
        dataset: str = "mnist",
        batch_size: int = 128,
        eval_batch_size: int = 1000,
        val_size: int | float = 5000,
        split_seed: int = 0,
        shuffle_seed: int = 0,
        image_size: int = 32,
        mean: float = 0.1307,
        std: float = 0.3081,
        download: bool = True,
        verify: bool = True,
        device: str = "auto",
        augment: str | Callable[[Tensor], Tensor] | None = None,
    ) -> None:
        super().__init__()
        if isinstance(augment, str):
            if augment not in AUGMENTATIONS:
                raise ConfigError(f"data.augment={augment!r} is not known; choose one of {sorted(AUGMENTATIONS)}.")
            factory = AUGMENTATIONS[augment]
            augment = factory() if factory is not None else None
        if dataset not in DATASETS:
            raise ConfigError(f"data.dataset={dataset!r} is not known; choose one of {sorted(DATASETS)}.")
        for key, value in (("data.batch_size", batch_size), ("data.eval_batch_size", eval_batch_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{key}={value!r} is not allowed: it must be a whole number of at least 1.")
        if isinstance(val_size, bool) or not (
            (isinstance(val_size, int) and val_size >= 0) or (isinstance(val_size, float) and 0 < val_size < 1)
        ):
            raise ConfigError(
                f"data.val_size={val_size!r} is not allowed: give a number of images (0 for no validation split) "
                "or a fraction of the training set strictly between 0 and 1."
            )
        if image_size < IMAGE_SIZE or (image_size - IMAGE_SIZE) % 2:
            raise ConfigError(
                f"data.image_size={image_size} is not allowed: images are {IMAGE_SIZE}x{IMAGE_SIZE} and are "
                f"padded equally on each side, so it must be {IMAGE_SIZE} plus an even number (0, 2, 4...)."
            )
        if not std > 0:
            raise ConfigError(f"data.std={std!r} is not allowed: it must be positive.")
        if not isinstance(verify, bool):
            raise ConfigError(f"data.verify={verify!r} is not allowed: it must be true or false.")
        self.dataset, self.dataset_name = DATASETS[dataset], dataset
        self.root = root
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.val_size, self.split_seed, self.shuffle_seed = val_size, split_seed, shuffle_seed
        self.pad = (image_size - IMAGE_SIZE) // 2
        self.mean, self.std = mean, std
        self.download, self.verify = download, verify
        resolve_device(device)  # fails now on a bad name, or on CUDA where there is none
        self.device = device
        self.augment = augment
        self.splits: dict[str, tuple[Tensor, Tensor]] = {}

    def prepare_data(self) -> None:
        ensure_downloaded(self.dataset, self.root, self.download, self.verify)

    def setup(self, stage: str | None = None) -> None:
        device = resolve_device(self.device, self.trainer.strategy.root_device if self.trainer else None)
        if not self.splits:
            self._load_splits()
        self.splits = {name: (x.to(device), y.to(device)) for name, (x, y) in self.splits.items()}

    def _load_splits(self) -> None:
        if not self.verify:
            log.warning(
                "data.verify=false: the %s files under %s are read unchecked; they may not be %s's originals.",
                self.dataset.__name__,
                self.root,
                self.dataset.__name__,
            )
        images, labels = load_split(self.dataset, self.root, train=True, verify=self.verify)
        if self.has_validation:
            n_val = self.val_size if isinstance(self.val_size, int) else round(self.val_size * len(labels))
            if not 1 <= n_val < len(labels):
                raise ConfigError(
                    f"data.val_size={self.val_size!r} leaves no training images: the training set has "
                    f"{len(labels)} images."
                )
            order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(self.split_seed))
            val, train = order[:n_val], order[n_val:]
            self.splits["train"] = images[train], labels[train]
            self.splits["val"] = images[val], labels[val]
        else:
            self.splits["train"] = images, labels
        self.splits["test"] = load_split(self.dataset, self.root, train=False, verify=self.verify)

    @property
    def classes(self) -> list[str]:
        """The names of the labels 0-9 (digits for MNIST, kinds of clothing for Fashion-MNIST)."""
        return class_names(self.dataset_name, 10)

    @property
    def has_validation(self) -> bool:
        """False with `val_size=0`: every training image is trained on and there is no validation split."""
        return self.val_size != 0

    def _batches(self, split: str, batch_size: int, shuffle: bool = False) -> TensorBatches:
        trainer = self.trainer
        return TensorBatches(
            *self.splits[split],
            batch_size=batch_size,
            shuffle=shuffle,
            seed=self.shuffle_seed,
            rank=trainer.global_rank if trainer else 0,
            world_size=trainer.world_size if trainer else 1,
            # The trainer's epoch, so a run resumed from a checkpoint sees the same orders as an unbroken one.
            epoch_source=(lambda: trainer.current_epoch) if trainer else None,
        )

    def train_dataloader(self) -> TensorBatches:
        return self._batches("train", self.batch_size, shuffle=True)

    def val_dataloader(self) -> TensorBatches | list:
        # No split, no loader: Lightning then skips validation (an empty list is its "no loaders").
        return self._batches("val", self.eval_batch_size) if self.has_validation else []

    def test_dataloader(self) -> TensorBatches:
        return self._batches("test", self.eval_batch_size)

    def preprocess(self, images: Tensor, augment: bool = False) -> Tensor:
        """uint8 images (N, 28, 28) -> normalised float (N, 1, image_size, image_size), distorted if `augment`."""
        x = images.unsqueeze(1).float().div_(255)
        if self.pad:
            x = F.pad(x, (self.pad,) * 4)  # 0 is the background before normalisation
        if augment and self.augment is not None:
            x = self.augment(x)  # after padding, so a shifted digit is not cut off
        return x.sub_(self.mean).div_(self.std)

    def eval_batches(self, split: str) -> Iterator[tuple[Tensor, Tensor]]:
        """All of `split` ("train", "val" or "test") in order, preprocessed without distortions, on its device."""
        for images, labels in self._batches(split, self.eval_batch_size):
            yield self.preprocess(images), labels

    def on_after_batch_transfer(self, batch: tuple[Tensor, Tensor], dataloader_idx: int) -> tuple[Tensor, Tensor]:
        images, labels = batch
        training = self.trainer is not None and self.trainer.training
        return self.preprocess(images, augment=training), labels
