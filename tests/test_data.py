import gzip

import pytest
import torch
from torchvision.datasets import MNIST

from conftest import synthetic_digits, write_dataset, write_idx
from lenet_pl.data import MNISTDataModule, TensorBatches, ensure_downloaded
from lenet_pl.errors import ConfigError, DataError


def batches_of(loader):
    return [(x.clone(), y.clone()) for x, y in loader]


def test_tensor_batches_cover_every_sample_once_in_batch_sized_pieces():
    images, labels = synthetic_digits(103, seed=0)
    loader = TensorBatches(images, labels, batch_size=10, shuffle=True, seed=5)
    batches = batches_of(loader)
    assert len(loader) == len(batches) == 11
    assert [len(y) for _, y in batches] == [10] * 10 + [3]
    seen = torch.cat([x for x, _ in batches]).flatten(1)
    assert sorted(map(tuple, seen.tolist())) == sorted(map(tuple, images.flatten(1).tolist()))
    assert batches[0][0].dtype == torch.uint8 and batches[0][1].dtype == torch.int64


def test_tensor_batches_shuffle_is_seeded_per_epoch_and_resumable():
    images, labels = synthetic_digits(50, seed=0)
    a = TensorBatches(images, labels, batch_size=50, shuffle=True, seed=1)
    epoch0, epoch1 = next(iter(a))[1], next(iter(a))[1]
    assert not torch.equal(epoch0, epoch1)  # a new order every epoch
    b = TensorBatches(images, labels, batch_size=50, shuffle=True, seed=1)
    assert torch.equal(next(iter(b))[1], epoch0)  # same seed, same order
    c = TensorBatches(images, labels, batch_size=50, shuffle=True, seed=1)
    c.load_state_dict({"epoch": 1})  # what a resumed run restores
    assert torch.equal(next(iter(c))[1], epoch1)
    plain = TensorBatches(images, labels, batch_size=50)
    assert torch.equal(next(iter(plain))[1], labels)


def test_tensor_batches_split_between_ddp_ranks_without_overlap():
    images, labels = synthetic_digits(40, seed=0)
    images[:, 0, 0] = torch.arange(40, dtype=torch.uint8)  # tag each image
    ranks = [TensorBatches(images, labels, batch_size=8, shuffle=True, seed=3, rank=r, world_size=2) for r in (0, 1)]
    tags = [torch.cat([x[:, 0, 0] for x, _ in r]).tolist() for r in ranks]
    assert len(tags[0]) == len(tags[1]) == 20
    assert sorted(tags[0] + tags[1]) == list(range(40))


def test_data_module_splits_pads_and_normalises(synthetic_root):
    dm = MNISTDataModule(root=str(synthetic_root), val_size=200, batch_size=64, eval_batch_size=100)
    dm.prepare_data()
    dm.setup()
    assert len(dm.splits["train"][1]) == 1000 and len(dm.splits["val"][1]) == 200
    assert len(dm.splits["test"][1]) == 300
    train_images = {tuple(x.flatten().tolist()) for x in dm.splits["train"][0]}
    assert not any(tuple(x.flatten().tolist()) in train_images for x in dm.splits["val"][0])
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (64, 28, 28) and x.dtype == torch.uint8
    x, y = dm.on_after_batch_transfer((x, y), 0)
    assert x.shape == (64, 1, 32, 32) and x.dtype == torch.float32
    background = (0 - 0.1307) / 0.3081
    assert torch.allclose(x[:, :, :2, :], torch.tensor(background))  # the 2-pixel padding is background
    assert x.max().item() == pytest.approx((1 - 0.1307) / 0.3081)
    assert len(dm.val_dataloader()) == 2 and len(dm.test_dataloader()) == 3


def test_split_is_fixed_by_split_seed_not_by_training_seed(synthetic_root):
    def val_labels(**kwargs):
        dm = MNISTDataModule(root=str(synthetic_root), val_size=0.25, **kwargs)
        dm.setup()
        return dm.splits["val"][1]

    assert len(val_labels()) == 300
    assert torch.equal(val_labels(shuffle_seed=1), val_labels(shuffle_seed=2))
    assert not torch.equal(val_labels(split_seed=1), val_labels(split_seed=2))


def test_28x28_inputs_are_not_padded(synthetic_root):
    dm = MNISTDataModule(root=str(synthetic_root), val_size=100, image_size=28, mean=0.0, std=1.0)
    dm.setup()
    x, _ = dm.on_after_batch_transfer(next(iter(dm.test_dataloader())), 0)
    assert x.shape[-2:] == (28, 28) and x.min() >= 0.0 and x.max() <= 1.0


def test_fashion_mnist_reads_its_own_folder(tmp_path):
    root = write_dataset(tmp_path, folder_name="FashionMNIST", n_train=300, n_test=50)
    dm = MNISTDataModule(root=str(root), dataset="fashion_mnist", val_size=50)
    dm.prepare_data()
    dm.setup()
    assert len(dm.splits["train"][1]) == 250 and len(dm.splits["test"][1]) == 50


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"batch_size": 0}, r"data.batch_size=0 is not allowed: it must be a whole number of at least 1"),
        ({"eval_batch_size": -5}, r"data.eval_batch_size=-5 is not allowed"),
        ({"val_size": 1.5}, r"data.val_size=1.5 is not allowed: .*strictly between 0 and 1"),
        ({"val_size": -1}, r"data.val_size=-1 is not allowed: .*0 for no validation split"),
        ({"dataset": "cifar"}, r"data.dataset='cifar' is not known; choose one of \['fashion_mnist', 'mnist'\]"),
        ({"image_size": 31}, r"data.image_size=31 is not allowed"),
        ({"std": 0.0}, r"data.std=0.0 is not allowed"),
    ],
)
def test_bad_data_arguments_are_config_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        MNISTDataModule(**kwargs)


def test_val_size_larger_than_the_training_set_is_reported(synthetic_root):
    dm = MNISTDataModule(root=str(synthetic_root), val_size=5000)
    with pytest.raises(ConfigError, match=r"data.val_size=5000 leaves no training images: .* 1200 images"):
        dm.setup()


def test_missing_data_without_download_says_where_to_put_the_files(tmp_path):
    with pytest.raises(DataError, match=r"MNIST is not in .*MNIST/raw and data.download=false. Put the four files"):
        ensure_downloaded(MNIST, tmp_path, download=False)


def test_corrupt_gz_is_reported_with_its_md5_and_not_overwritten(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    bad = raw / "train-images-idx3-ubyte.gz"
    bad.write_bytes(gzip.compress(b"not mnist"))
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte.gz is corrupt or truncated: its md5 is [0-9a-f]{32}"):
        ensure_downloaded(MNIST, tmp_path)
    assert gzip.decompress(bad.read_bytes()) == b"not mnist"  # the user's file is left as it was


def test_truncated_idx_file_is_a_data_error(tmp_path):
    root = write_dataset(tmp_path, n_train=100, n_test=20)
    images = root / "MNIST" / "raw" / "t10k-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:5000])
    dm = MNISTDataModule(root=str(root), val_size=10)
    with pytest.raises(DataError, match=r"Could not read the MNIST files in .* truncated or not IDX files"):
        dm.setup()


def test_labels_and_images_of_different_lengths_are_a_data_error(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    images, labels = synthetic_digits(30, seed=0)
    write_idx(raw, True, images, labels[:20])
    write_idx(raw, False, images, labels)
    dm = MNISTDataModule(root=str(tmp_path), val_size=5)
    with pytest.raises(DataError, match=r"MNIST"):
        dm.setup()


def test_real_mnist_loads_from_the_original_files(real_mnist_root):
    dm = MNISTDataModule(root=str(real_mnist_root))
    dm.prepare_data()  # torchvision checks the md5s and unpacks
    dm.setup()
    assert [len(dm.splits[s][1]) for s in ("train", "val", "test")] == [55_000, 5_000, 10_000]
    all_train = torch.cat([dm.splits["train"][1], dm.splits["val"][1]])
    assert torch.bincount(all_train).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert dm.splits["test"][1][:5].tolist() == [7, 2, 1, 0, 4]
    x, _ = dm.on_after_batch_transfer((dm.splits["train"][0], dm.splits["train"][1]), 0)
    # mean/std normalise the 28x28 digits; padding adds background around them
    assert x[:, :, 2:30, 2:30].mean().item() == pytest.approx(0.0, abs=0.01)
