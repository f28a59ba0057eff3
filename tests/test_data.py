import gzip
import hashlib
import json
import re
from pathlib import Path

import pytest
import torch
from torchvision.datasets import MNIST, FashionMNIST

from conftest import IDX_NAMES, REPO, SHARED_MNIST, run_in_process, synthetic_digits, write_dataset, write_idx
from lenet_pl import data
from lenet_pl.data import MNISTDataModule, TensorBatches, class_names, ensure_downloaded
from lenet_pl.runtime.errors import ConfigError, DataError

DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")  # apt-get install dataset-fashion-mnist


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
    dm = MNISTDataModule(root=str(synthetic_root), verify=False, val_size=200, batch_size=64, eval_batch_size=100)
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
        dm = MNISTDataModule(root=str(synthetic_root), verify=False, val_size=0.25, **kwargs)
        dm.setup()
        return dm.splits["val"][1]

    assert len(val_labels()) == 300
    assert torch.equal(val_labels(shuffle_seed=1), val_labels(shuffle_seed=2))
    assert not torch.equal(val_labels(split_seed=1), val_labels(split_seed=2))


def test_28x28_inputs_are_not_padded(synthetic_root):
    dm = MNISTDataModule(root=str(synthetic_root), verify=False, val_size=100, image_size=28, mean=0.0, std=1.0)
    dm.setup()
    x, _ = dm.on_after_batch_transfer(next(iter(dm.test_dataloader())), 0)
    assert x.shape[-2:] == (28, 28) and x.min() >= 0.0 and x.max() <= 1.0


def test_fashion_mnist_reads_its_own_folder(tmp_path):
    root = write_dataset(tmp_path, folder_name="FashionMNIST", n_train=300, n_test=50)
    dm = MNISTDataModule(root=str(root), dataset="fashion_mnist", verify=False, val_size=50)
    dm.prepare_data()
    dm.setup()
    assert len(dm.splits["train"][1]) == 250 and len(dm.splits["test"][1]) == 50
    assert dm.classes[0] == "T-shirt/top" and dm.classes[9] == "Ankle boot" and len(dm.classes) == 10


def test_class_names_are_mnists_digits_and_the_labels_where_a_data_set_has_none():
    assert MNISTDataModule(root="unused").classes == [str(d) for d in range(10)]
    assert class_names("fashion_mnist", 10)[6] == "Shirt"
    assert class_names("fashion_mnist", 12) == [str(c) for c in range(12)]  # a head wider than the names
    assert class_names("mnist", 3) == ["0", "1", "2"] and class_names("other", 2) == ["0", "1"]


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
        ({"verify": "yes"}, r"data.verify='yes' is not allowed: it must be true or false"),
    ],
)
def test_bad_data_arguments_are_config_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        MNISTDataModule(**kwargs)


def test_val_size_larger_than_the_training_set_is_reported(synthetic_root):
    dm = MNISTDataModule(root=str(synthetic_root), verify=False, val_size=5000)
    with pytest.raises(ConfigError, match=r"data.val_size=5000 leaves no training images: .* 1200 images"):
        dm.setup()


def test_missing_data_without_download_says_where_to_put_the_files(tmp_path):
    with pytest.raises(DataError, match=r"MNIST is not in .*MNIST/raw and data.download=false. Put the four files"):
        ensure_downloaded(MNIST, tmp_path, download=False)


def test_gz_with_other_content_is_reported_and_not_overwritten(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    bad = raw / "train-images-idx3-ubyte.gz"
    bad.write_bytes(gzip.compress(b"not mnist"))
    with pytest.raises(
        DataError,
        match=r"train-images-idx3-ubyte.gz is not MNIST's train-images-idx3-ubyte, which data.dataset=mnist reads: "
        r"it is not an IDX file of unsigned bytes at all \(9 bytes starting 6e6f7420\)\. Delete it and run again",
    ):
        ensure_downloaded(MNIST, tmp_path)
    assert gzip.decompress(bad.read_bytes()) == b"not mnist"  # the user's file is left as it was
    assert not (raw / "train-images-idx3-ubyte").exists()


def synthetic_originals(folder: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, bytes]:
    """A small synthetic Fashion-MNIST taken as the original: its unpacked files' sha256s become the
    reference ones. Returns each file's unpacked content."""
    write_dataset(folder, folder_name="unpacked", n_train=120, n_test=30)
    contents = {p.name: p.read_bytes() for p in (folder / "unpacked" / "raw").iterdir()}
    reference = {name: (hashlib.sha256(c).hexdigest(), tuple(data._idx_dims(c))) for name, c in contents.items()}
    monkeypatch.setitem(data.ORIGINALS, "FashionMNIST", reference)
    return contents


def recompress(contents: dict[str, bytes], folder: Path) -> None:
    """The files as a packager re-compresses them: another gzip level and timestamp than the originals."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in contents.items():
        original = gzip.compress(content, compresslevel=9, mtime=0)
        copy = gzip.compress(content, compresslevel=1, mtime=1_590_000_000)
        assert copy != original
        (folder / f"{name}.gz").write_bytes(copy)


def test_a_recompressed_copy_is_accepted_for_its_content_where_the_user_keeps_it(tmp_path, monkeypatch):
    contents = synthetic_originals(tmp_path / "orig", monkeypatch)
    mine = tmp_path / "usr" / "share" / "datasets" / "fashion-mnist"  # the four files directly in data.root
    recompress(contents, mine)
    before = sorted(p.name for p in mine.iterdir())
    dm = MNISTDataModule(root=str(mine), dataset="fashion_mnist", val_size=20)
    dm.prepare_data()
    dm.setup()
    assert [len(dm.splits[s][1]) for s in ("train", "val", "test")] == [100, 20, 30]
    images, labels = synthetic_digits(30, seed=2)
    assert torch.equal(dm.splits["test"][0], images) and torch.equal(dm.splits["test"][1], labels)
    assert sorted(p.name for p in mine.iterdir()) == before  # the user's folder is only read
    assert not (mine / "FashionMNIST").exists()


def test_a_recompressed_copy_in_torchvisions_layout_is_unpacked_beside_itself(tmp_path, monkeypatch):
    contents = synthetic_originals(tmp_path / "orig", monkeypatch)
    raw = tmp_path / "data" / "FashionMNIST" / "raw"
    recompress(contents, raw)
    ensure_downloaded(FashionMNIST, tmp_path / "data", download=False)
    assert {name: (raw / name).read_bytes() for name in contents} == contents
    assert not list(raw.glob(".*.tmp"))


@pytest.mark.parametrize("damage", ["truncated", "other_data"])
def test_a_damaged_copy_is_still_refused(tmp_path, monkeypatch, damage):
    contents = synthetic_originals(tmp_path / "orig", monkeypatch)
    mine = tmp_path / "mine"
    recompress(contents, mine)
    gz = mine / "t10k-labels-idx1-ubyte.gz"
    if damage == "truncated":
        gz.write_bytes(gz.read_bytes()[:-20])  # cut inside the stream: its end and checksum are gone
        expected = r"t10k-labels-idx1-ubyte.gz is corrupt or truncated: it cannot be unpacked"
    else:
        labels = bytearray(contents["t10k-labels-idx1-ubyte"])
        labels[-1] = (labels[-1] + 1) % 10  # one label changed, then compressed cleanly
        gz.write_bytes(gzip.compress(bytes(labels)))
        expected = r"t10k-labels-idx1-ubyte.gz is not Fashion-MNIST's t10k-labels-idx1-ubyte, which data.dataset="
    dm = MNISTDataModule(root=str(mine), dataset="fashion_mnist", val_size=20)
    dm.prepare_data()  # a folder of the user's is only read: its files are checked as they are loaded
    with pytest.raises(DataError, match=expected):
        dm.setup()


def test_real_mnist_recompressed_trains_through_the_cli_from_the_folder_holding_it(tmp_path):
    if not all((SHARED_MNIST / f"{name}.gz").is_file() for name in data.ORIGINALS["MNIST"]):
        pytest.skip(f"real MNIST not found in {SHARED_MNIST}")
    mine = tmp_path / "my-mnist"
    mine.mkdir()
    for name in data.ORIGINALS["MNIST"]:
        (mine / f"{name}.gz").write_bytes(gzip.compress(gzip.decompress((SHARED_MNIST / f"{name}.gz").read_bytes()), 1))
    _train_one_small_epoch(tmp_path, mine)
    assert sorted(p.name for p in mine.iterdir()) == sorted(f"{n}.gz" for n in data.ORIGINALS["MNIST"])


@pytest.mark.skipif(not DEBIAN_FASHION.is_dir(), reason="Debian's dataset-fashion-mnist is not installed")
def test_debians_fashion_mnist_trains_through_the_cli_from_where_the_package_puts_it(tmp_path):
    metrics = _train_one_small_epoch(tmp_path, DEBIAN_FASHION, "data=fashion_mnist")
    assert metrics["test/acc"] > 0.3  # 20 steps of Fashion-MNIST: well above chance


def _train_one_small_epoch(tmp_path: Path, root: Path, *overrides: str) -> dict:
    result = run_in_process(
        "lenet_pl.train",
        f"data.root={root}",
        *overrides,
        "experiment=modern",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=20",
        "trainer.limit_val_batches=1",
        "trainer.enable_progress_bar=false",
        "logger=none",
        "callbacks=none",
        "threads=1",
        f"hydra.run.dir={tmp_path / 'run'}",
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads((tmp_path / "run" / "metrics.json").read_text())["metrics"]


def test_truncated_idx_file_is_a_data_error(tmp_path):
    root = write_dataset(tmp_path, n_train=100, n_test=20)
    images = root / "MNIST" / "raw" / "t10k-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:5000])
    dm = MNISTDataModule(root=str(root), verify=False, val_size=10)
    with pytest.raises(DataError, match=r"Could not read the MNIST files in .* truncated or not IDX files"):
        dm.setup()


def test_labels_and_images_of_different_lengths_are_a_data_error(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    images, labels = synthetic_digits(30, seed=0)
    write_idx(raw, True, images, labels[:20])
    write_idx(raw, False, images, labels)
    dm = MNISTDataModule(root=str(tmp_path), verify=False, val_size=5)
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


# ---------------------------------------------------------------------------------------------
# Every file read is checked to be the data set's original, in every form the data comes in

TITLES = {"mnist": ("MNIST", "MNIST"), "fashion_mnist": ("FashionMNIST", "Fashion-MNIST")}
OTHER = {"mnist": "fashion_mnist", "fashion_mnist": "mnist"}
NAMES = [name for pair in IDX_NAMES.values() for name in pair]


@pytest.fixture
def two_originals(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, dict[str, bytes]]:
    """Small synthetic MNIST and Fashion-MNIST, different from each other, taken as the originals: their
    sha256s and shapes replace the real ones. Returns data set (config name) -> file name -> content."""
    contents = {}
    for offset, key in enumerate(("mnist", "fashion_mnist")):
        folder = tmp_path / "originals" / key
        write_idx(folder, True, *synthetic_digits(200, seed=10 + offset))
        write_idx(folder, False, *synthetic_digits(50, seed=20 + offset))
        contents[key] = {name: (folder / name).read_bytes() for name in NAMES}
        reference = {
            name: (hashlib.sha256(c).hexdigest(), tuple(data._idx_dims(c))) for name, c in contents[key].items()
        }
        monkeypatch.setitem(data.ORIGINALS, TITLES[key][0], reference)
    return contents


def place(contents: dict[str, bytes], folder: Path, packed: bool) -> Path:
    """The four files in `folder`, unpacked or as .gz; returns the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in contents.items():
        if packed:
            (folder / f"{name}.gz").write_bytes(gzip.compress(content))
        else:
            (folder / name).write_bytes(content)
    return folder


def snapshot(folder: Path) -> dict[str, tuple[str, int]]:
    """Every file under `folder`: its sha256 and modification time."""
    return {
        str(p.relative_to(folder)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def refusal(run_dir: Path, exit_code: int, output: str) -> str:
    """The one-paragraph message of a run refused before training (exit 2, failure.json, no traceback)."""
    assert exit_code == 2, output[-3000:]
    assert "Traceback" not in output
    failure = json.loads((run_dir / "failure.json").read_text())
    assert failure["error"] == "DataError" and not failure["is_result"]
    assert not (run_dir / "checkpoints").exists()  # nothing was trained
    return failure["message"]


FAST = ["trainer.max_epochs=1", "trainer.limit_train_batches=1", "logger=none", "callbacks=none"]
FORMS = ["unpacked_in_data_root", "gz_in_data_root", "unpacked_in_raw", "gz_in_raw"]


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("asked", ["mnist", "fashion_mnist"])
def test_another_data_sets_files_are_refused_in_every_form(
    tmp_path, two_originals, train_in_process, capfd, asked, form
):
    other = OTHER[asked]
    (folder_name, title), (_, other_title) = TITLES[asked], TITLES[other]
    if form.endswith("in_data_root"):
        root = place(two_originals[other], tmp_path / "mine", packed=form.startswith("gz"))
        folder = root
    else:
        root = tmp_path / "data"
        folder = place(two_originals[other], root / folder_name / "raw", packed=form.startswith("gz"))
    before = snapshot(root)
    run_dir = tmp_path / "run"
    code = train_in_process(f"data={asked}", f"data.root={root}", "data.val_size=20", *FAST, f"hydra.run.dir={run_dir}")
    message = refusal(run_dir, code, "".join(capfd.readouterr()))
    first = folder / ("train-images-idx3-ubyte" + (".gz" if form.startswith("gz") else ""))
    assert message.startswith(f"{first} is not {title}'s train-images-idx3-ubyte, which data.dataset={asked} reads: ")
    assert f"it holds {other_title}'s train-images-idx3-ubyte." in message
    assert f"The files in {folder} are {other_title}'s, not {title}'s." in message
    assert f"To train on {other_title}, use data={other}." in message
    assert "data.verify=false" not in message  # recognised: nothing to read unchecked
    assert snapshot(root) == before  # refused files stay where they are, untouched; nothing is unpacked


def alter(content: bytes, how: str, contents: dict[str, bytes], name: str) -> bytes:
    if how == "one_byte_changed":  # header and size still those of the original
        changed = bytearray(content)
        changed[-1] ^= 0x01
        return bytes(changed)
    if how == "truncated":
        return content[: len(content) // 2]
    if how == "extended":
        return content + b"\x00" * 784
    # replaced by the data set's file of the other split: a well-formed IDX file of the same kind
    return contents[name.replace("train", "t10k") if name.startswith("train") else name.replace("t10k", "train")]


ALTERATIONS = ["one_byte_changed", "truncated", "extended", "other_split"]
WHAT_IT_HOLDS = {
    "one_byte_changed": r"it has the original's header and size \(.*\) but other content \(sha256 [0-9a-f]{12}\.\.\., "
    r"the original's [0-9a-f]{12}\.\.\.\): it was altered",
    "truncated": r"it holds .*, in [\d,]+ bytes where its header announces [\d,]+; the original holds",
    "extended": r"it holds .*, in [\d,]+ bytes where its header announces [\d,]+; the original holds",
    "other_split": r"it holds (Fashion-)?MNIST's (t10k|train)-",
}


@pytest.mark.parametrize(("name", "how"), list(zip(NAMES, ALTERATIONS, strict=True)))  # each file, each alteration
def test_an_unpacked_file_altered_after_it_was_unpacked_is_refused_and_left_as_it_is(
    tmp_path, two_originals, train_in_process, capfd, name, how
):
    """<root>/<Dataset>/raw/ after a first run: each .gz and the file unpacked beside it. The unpacked
    file is then altered; the .gz, still the original, is what the message points to."""
    asked = "fashion_mnist" if NAMES.index(name) % 2 else "mnist"  # both data sets, over the four files
    folder_name, title = TITLES[asked]
    raw = place(two_originals[asked], tmp_path / "data" / folder_name / "raw", packed=True)
    place(two_originals[asked], raw, packed=False)
    (raw / name).write_bytes(alter(two_originals[asked][name], how, two_originals[asked], name))
    before = snapshot(raw)
    run_dir = tmp_path / "run"
    code = train_in_process(
        f"data={asked}", f"data.root={tmp_path / 'data'}", "data.val_size=20", *FAST, f"hydra.run.dir={run_dir}"
    )
    message = refusal(run_dir, code, "".join(capfd.readouterr()))
    assert message.startswith(f"{raw / name} is not {title}'s {name}, which data.dataset={asked} reads: ")
    assert re.search(WHAT_IT_HOLDS[how], message), message
    assert f"{name}.gz beside it holds the original: delete {name} and the next run unpacks it again." in message
    assert snapshot(raw) == before
    (raw / name).unlink()  # as the message says
    dm = MNISTDataModule(root=str(tmp_path / "data"), dataset=asked, val_size=20)
    dm.prepare_data()
    dm.setup()
    assert (raw / name).read_bytes() == two_originals[asked][name]


@pytest.mark.parametrize("how", ALTERATIONS)
def test_an_altered_file_in_a_folder_of_the_users_is_refused_with_what_it_holds(tmp_path, two_originals, how):
    mine = place(two_originals["mnist"], tmp_path / "mine", packed=False)
    name = "t10k-labels-idx1-ubyte"
    (mine / name).write_bytes(alter(two_originals["mnist"][name], how, two_originals["mnist"], name))
    before = snapshot(mine)
    dm = MNISTDataModule(root=str(mine), val_size=20)
    dm.prepare_data()
    with pytest.raises(DataError) as refused:
        dm.setup()
    message = str(refused.value)
    assert message.startswith(f"{mine / name} is not MNIST's {name}, which data.dataset=mnist reads: ")
    assert re.search(WHAT_IT_HOLDS[how], message), message
    assert "Point data.root at a folder that holds MNIST's original files" in message
    assert f"Nothing was changed in {mine}." in message
    assert snapshot(mine) == before


def test_own_files_are_read_unchecked_only_when_asked_and_then_said_to_be(synthetic_root, caplog):
    with pytest.raises(DataError, match=r"If these are your own files in MNIST's format on purpose, data.verify=false"):
        MNISTDataModule(root=str(synthetic_root), val_size=20).setup()
    dm = MNISTDataModule(root=str(synthetic_root), val_size=20, verify=False)
    dm.setup()
    assert len(dm.splits["test"][1]) == 300
    assert "data.verify=false: the MNIST files under" in caplog.text and "are read unchecked" in caplog.text


def test_mnists_unpacked_files_given_as_fashion_mnist_are_refused_through_the_cli(tmp_path, train_in_process, capfd):
    """The real files: MNIST's four, unpacked in a folder of the user's, with data=fashion_mnist."""
    if not all((SHARED_MNIST / f"{name}.gz").is_file() for name in NAMES):
        pytest.skip(f"real MNIST not found in {SHARED_MNIST}")
    mine = tmp_path / "mnist-unpacked"
    mine.mkdir()
    for name in NAMES:
        (mine / name).write_bytes(gzip.decompress((SHARED_MNIST / f"{name}.gz").read_bytes()))
    before = snapshot(mine)
    run_dir = tmp_path / "run"
    code = train_in_process("data=fashion_mnist", f"data.root={mine}", *FAST, f"hydra.run.dir={run_dir}")
    message = refusal(run_dir, code, "".join(capfd.readouterr()))
    assert message.startswith(
        f"{mine / 'train-images-idx3-ubyte'} is not Fashion-MNIST's train-images-idx3-ubyte, which "
        "data.dataset=fashion_mnist reads: it holds MNIST's train-images-idx3-ubyte. "
        f"The files in {mine} are MNIST's, not Fashion-MNIST's."
    )
    assert snapshot(mine) == before
