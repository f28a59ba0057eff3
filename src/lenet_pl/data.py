"""MNIST and Fashion-MNIST as a LightningDataModule that serves batches from in-memory tensors.

torchvision downloads, md5-checks and parses the IDX files once; after that a batch is one
tensor index into uint8 images (47 MB for MNIST's train set), and the float conversion,
padding and normalisation run on the whole batch after it reaches the training device.
With `device="auto"` and a CUDA trainer the uint8 tensors themselves live on the GPU, so
batches are cut there and nothing crosses the PCIe bus during training.
"""

import gzip
import hashlib
import math
import os
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.datasets import MNIST, FashionMNIST

from lenet_pl.augment import AUGMENTATIONS
from lenet_pl.errors import ConfigError, DataError

DATASETS: dict[str, type[MNIST]] = {"mnist": MNIST, "fashion_mnist": FashionMNIST}
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


# md5 of each file's unpacked content, the IDX data itself (published beside the originals). A copy
# compressed differently, such as Debian's dataset-fashion-mnist package, which re-compresses the
# original .gz files, is accepted for what it holds; a file whose data differs is refused.
CONTENT_MD5: dict[str, dict[str, str]] = {
    "MNIST": {
        "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
        "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
        "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
        "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
    },
    "FashionMNIST": {
        "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
        "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
        "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
        "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
    },
}


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


def read_checked_gz(path: Path, dataset: type[MNIST]) -> bytes:
    """The unpacked content of one of the data set's .gz files, checked against the original's md5.

    What is checked is the data, not how it was compressed: any gzip level, timestamp or tool is
    fine. A gzip stream that is cut short or damaged, or data other than the original's, is a DataError.
    """
    try:
        content = gzip.decompress(path.read_bytes())
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(
            f"{path} is corrupt or truncated: it cannot be unpacked ({err}). Delete it and run again to "
            "download a fresh copy, or replace it with a good copy of the original file."
        ) from err
    name = path.name.removesuffix(".gz")
    expected = CONTENT_MD5.get(dataset.__name__, {}).get(name)
    actual = hashlib.md5(content).hexdigest()
    if expected is not None and actual != expected:
        raise DataError(
            f"{path} unpacks, but not to the original {dataset.__name__} file: the md5 of its content is {actual}, "
            f"the original's is {expected} (how it was compressed does not matter). It is corrupt or another "
            "file: delete it and run again to download a fresh copy, or replace it with a good copy."
        )
    return content


def _unpack(content: bytes, path: Path) -> None:
    """Write the unpacked file beside its .gz (via a temporary file and a rename), so later runs read it
    directly; where that cannot be written, runs unpack the .gz in memory instead."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(content)
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)


def ensure_downloaded(dataset: type[MNIST], root: str | Path, download: bool = True) -> None:
    """Make sure the data set's four files are in `root/<Dataset>/raw/` or in `root` itself, checked;
    raise a DataError saying what to do if not.

    A .gz file counts when its unpacked content is the original's (`read_checked_gz`). In
    `<root>/<Dataset>/raw/` it is then unpacked beside itself, as torchvision does; a folder of the
    user's given as `root` is only read (runs unpack its .gz files in memory, ~1 s). Missing files are downloaded (and
    md5-checked) by torchvision. A .gz already there that is not right is reported, never
    silently downloaded again.
    """
    raw = _raw_folder(dataset, root)
    folder = data_folder(dataset, root) or raw
    for name in _unpacked_names(dataset):
        gz = folder / f"{name}.gz"
        if not (folder / name).is_file() and gz.is_file():
            content = read_checked_gz(gz, dataset)
            if folder == raw:  # our own layout; a folder of the user's (data.root itself) is only read
                _unpack(content, raw / name)
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
            "`python -m lenet_pl.train data.root=/path/to/data`; their content is md5-checked."
        ) from err


def parse_idx(data: bytes) -> Tensor:
    """An IDX file of unsigned bytes (MNIST's format) as a uint8 tensor of the dimensions its header gives."""
    if len(data) < 4 or data[:3] != b"\x00\x00\x08" or not 1 <= data[3] <= 3:
        raise ValueError("it does not start with the header of an IDX file of unsigned bytes")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    expected = 4 + 4 * ndim + math.prod(dims)
    if len(data) != expected:
        raise ValueError(f"it has {len(data)} bytes, its header announces {expected}")
    return torch.frombuffer(bytearray(data), dtype=torch.uint8, offset=4 + 4 * ndim).view(*dims)


def _read_idx(folder: Path, name: str) -> Tensor:
    path = folder / name
    return parse_idx(path.read_bytes() if path.is_file() else gzip.decompress((folder / f"{name}.gz").read_bytes()))


def load_split(dataset: type[MNIST], root: str | Path, train: bool) -> tuple[Tensor, Tensor]:
    """The train or test split as (uint8 images N x 28 x 28, int64 labels N), read from wherever
    `data_folder` finds the files (the unpacked file, else its .gz unpacked in memory)."""
    folder = data_folder(dataset, root) or _raw_folder(dataset, root)
    prefix = "train" if train else "t10k"
    try:
        images = _read_idx(folder, f"{prefix}-images-idx3-ubyte")
        labels = _read_idx(folder, f"{prefix}-labels-idx1-ubyte").long()
    except (OSError, EOFError, ValueError, RuntimeError, zlib.error) as err:
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
        self.dataset = DATASETS[dataset]
        self.root = root
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.val_size, self.split_seed, self.shuffle_seed = val_size, split_seed, shuffle_seed
        self.pad = (image_size - IMAGE_SIZE) // 2
        self.mean, self.std = mean, std
        self.download = download
        resolve_device(device)  # fails now on a bad name, or on CUDA where there is none
        self.device = device
        self.augment = augment
        self.splits: dict[str, tuple[Tensor, Tensor]] = {}

    def prepare_data(self) -> None:
        ensure_downloaded(self.dataset, self.root, self.download)

    def setup(self, stage: str | None = None) -> None:
        device = resolve_device(self.device, self.trainer.strategy.root_device if self.trainer else None)
        if not self.splits:
            self._load_splits()
        self.splits = {name: (x.to(device), y.to(device)) for name, (x, y) in self.splits.items()}

    def _load_splits(self) -> None:
        images, labels = load_split(self.dataset, self.root, train=True)
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
        self.splits["test"] = load_split(self.dataset, self.root, train=False)

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
