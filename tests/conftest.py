"""Shared test helpers: small IDX data sets written by the tests, real MNIST from ../shared, the CLI."""

import contextlib
import io
import json
import os
import shutil
import struct
import subprocess
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]

if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs one worker per core: each keeps to one thread, and so do the runs it starts
    # (OMP_NUM_THREADS reaches subprocesses), or every core would be asked for twice.
    torch.set_num_threads(1)
    os.environ["OMP_NUM_THREADS"] = "1"
SHARED_MNIST = Path(os.environ.get("LENET_SHARED_MNIST", REPO.parent / "shared" / "data" / "MNIST" / "raw"))
IDX_NAMES = {
    True: ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    False: ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def synthetic_digits(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """n 28x28 uint8 images whose class is a bright 8x8 block at one of ten places, over faint noise."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 10
    labels = labels[torch.randperm(n, generator=g)]
    images = torch.randint(0, 40, (n, 28, 28), generator=g, dtype=torch.uint8)
    for i, label in enumerate(labels.tolist()):
        row, col = divmod(label, 5)
        top, left = 4 + row * 10, 1 + col * 5
        images[i, top : top + 8, left : left + 5] = 255
    return images, labels


def write_idx(folder: Path, train: bool, images: torch.Tensor, labels: torch.Tensor) -> None:
    """Write images and labels as the unpacked IDX files torchvision's MNIST reads."""
    folder.mkdir(parents=True, exist_ok=True)
    image_name, label_name = IDX_NAMES[train]
    n, rows, cols = images.shape
    (folder / image_name).write_bytes(struct.pack(">IIII", 0x0803, n, rows, cols) + images.numpy().tobytes())
    (folder / label_name).write_bytes(struct.pack(">II", 0x0801, n) + labels.to(torch.uint8).numpy().tobytes())


def write_dataset(root: Path, folder_name: str = "MNIST", n_train: int = 1200, n_test: int = 300) -> Path:
    raw = root / folder_name / "raw"
    write_idx(raw, True, *synthetic_digits(n_train, seed=1))
    write_idx(raw, False, *synthetic_digits(n_test, seed=2))
    return root


@pytest.fixture
def synthetic_root(tmp_path: Path) -> Path:
    """A data root with a small synthetic MNIST (1,200 train / 300 test images): read it with
    data.verify=false (`verify=False`), since its files are not MNIST's originals."""
    return write_dataset(tmp_path / "data")


@pytest.fixture(scope="session")
def real_mnist_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data root holding a copy of the real MNIST files from ../shared (skips where there are none)."""
    if not all((SHARED_MNIST / f"{name}.gz").is_file() for pair in IDX_NAMES.values() for name in pair):
        pytest.skip(f"real MNIST not found in {SHARED_MNIST}")
    root = tmp_path_factory.mktemp("mnist")
    shutil.copytree(SHARED_MNIST, root / "MNIST" / "raw")
    for path in (root / "MNIST" / "raw").iterdir():
        path.chmod(0o644)
    return root


def offline_env(tmp_path: Path) -> dict[str, str]:
    """Environment for a subprocess in which every network look-up fails, as on a machine with no network."""
    hook = tmp_path / "offline_hook"
    hook.mkdir(exist_ok=True)
    (hook / "sitecustomize.py").write_text(
        "import socket\n"
        "def _offline(*args, **kwargs):\n"
        "    raise socket.gaierror(-3, 'Temporary failure in name resolution (network disabled by the test)')\n"
        "socket.getaddrinfo = _offline\n"
    )
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(hook), env.get("PYTHONPATH")]))
    return env


# sitecustomize for `without_packages_env`: the packages HIDDEN cannot be imported, as if not installed.
HIDING_HOOK = """\
import sys

HIDDEN = {hidden!r}


def _hidden(name):
    return any(name == hidden or name.startswith(hidden + ".") for hidden in HIDDEN)


class _Hiding:
    \"\"\"A finder of sys.meta_path that does not find the hidden packages (`import onnx` fails with
    "No module named 'onnx'", importlib.util.find_spec returns None), and finds everything else as before.\"\"\"

    def __init__(self, finder):
        self._finder = finder

    def find_spec(self, name, path=None, target=None):
        return None if _hidden(name) else self._finder.find_spec(name, path, target)

    def __getattr__(self, attr):
        return getattr(self._finder, attr)


sys.meta_path[:] = [_Hiding(finder) for finder in sys.meta_path]
# Hydra's plugin scan loads hydra_plugins.* from their files, past sys.meta_path; None in sys.modules stops it
# (and makes their import fail the same way).
for name in HIDDEN:
    if name.startswith("hydra_plugins."):
        sys.modules[name] = None
"""


def without_packages_env(folder: Path, *hidden: str) -> dict[str, str]:
    """Environment for a subprocess in which the packages `hidden` (top-level modules such as onnx, or Hydra
    plugins such as hydra_plugins.hydra_optuna_sweeper) are not installed: a sitecustomize in `folder` hides them."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(HIDING_HOOK.format(hidden=hidden))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(folder), env.get("PYTHONPATH")]))
    return env


def run_cli(module: str, *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: int = 600):
    """Run `python -m <module> <args>` as a user would; returns the CompletedProcess (text output)."""
    env = dict(env or os.environ)
    env.pop("LENET_DATA_ROOT", None)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_together(*calls: Callable[[], Any]) -> list[Any]:
    """Run independent CLI calls (each a `lambda: run_cli(...)`) side by side, one per core.

    Most of a tiny CLI run is its single-threaded start-up (imports), so on 2 cores two of them
    take little longer than one; the results come back in the order given.
    """
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        return list(pool.map(lambda call: call(), calls))


def train_to_metrics(data_root: Path, run_dir: Path, *overrides: str, timeout: int) -> dict:
    """Train a whole preset on `data_root` as a user would (no progress bar) and return its metrics.json metrics."""
    result = run_cli(
        "lenet_pl.train",
        *overrides,
        f"data.root={data_root}",
        "trainer.enable_progress_bar=false",
        f"hydra.run.dir={run_dir}",
        cwd=REPO,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return json.loads((run_dir / "metrics.json").read_text())["metrics"]


def tiny_args(data_root: Path, run_dir: Path, *overrides: str) -> list[str]:
    """Overrides for a run of a few seconds on a synthetic data root, written to `run_dir`."""
    return [
        f"data.root={data_root}",
        "data.verify=false",  # synthetic digits, not MNIST's original files
        "data.val_size=200",
        "data.batch_size=50",
        "data.eval_batch_size=100",
        "trainer.max_epochs=2",
        "trainer.log_every_n_steps=5",
        "trainer.enable_progress_bar=false",
        f"hydra.run.dir={run_dir}",
        *overrides,
    ]


@pytest.fixture(scope="session")
def mnist_run(real_mnist_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The run dir of a LeNet-5 trained briefly on real MNIST (experiment=modern, 250 steps, ~96% test
    accuracy) with the default callbacks and loggers; evaluate, predict, export and callback tests share it."""
    run_dir = tmp_path_factory.mktemp("mnist_run") / "run"
    result = run_in_process(
        "lenet_pl.train",
        "experiment=modern",
        f"data.root={real_mnist_root}",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=250",
        "trainer.limit_val_batches=2",
        "trainer.enable_progress_bar=false",
        f"hydra.run.dir={run_dir}",
        cwd=REPO,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return run_dir


@pytest.fixture(scope="session")
def rbf_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The run dir of the 1998 LeNet-5's parts (Table I C3, trainable subsampling, scaled tanh, RBF output
    with the MAP loss) trained for 2 epochs on synthetic digits with plain SGD: a model unlike the default."""
    tmp = tmp_path_factory.mktemp("rbf_run")
    run_dir = tmp / "run"
    overrides = ["model=lenet5_1998", "activation=scaled_tanh", "pooling=subsample", "loss=rbf_map"]
    result = run_in_process("lenet_pl.train", *tiny_args(write_dataset(tmp / "data"), run_dir, *overrides), cwd=tmp)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return run_dir


@pytest.fixture(scope="session")
def fashion_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The run dir of a LeNet-5 trained for one epoch at a tiny rate on synthetic images in Fashion-MNIST's
    place (data=fashion_mnist): a model that still makes mistakes, whose classes have names."""
    tmp = tmp_path_factory.mktemp("fashion_run")
    run_dir = tmp / "run"
    root = write_dataset(tmp / "data", folder_name="FashionMNIST")
    overrides = ["data=fashion_mnist", "optimizer.lr=1e-5", "trainer.max_epochs=1"]
    result = run_in_process("lenet_pl.train", *tiny_args(root, run_dir, *overrides), cwd=tmp)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return run_dir


@contextlib.contextmanager
def _process_state(cwd: Path | None) -> Iterator[None]:
    """Undo afterwards what a command sets for its process: the environment, working folder, argv, torch's
    thread count, the root logger's handlers (the console and a run's train.log) and level, warning
    filters, the thread and logging error hooks, and the run dirs noted for error messages."""
    import logging
    import threading
    import warnings

    from lenet_pl.runtime import outputs

    environ, argv, folder, threads = dict(os.environ), sys.argv[:], os.getcwd(), torch.get_num_threads()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    hook, raise_exceptions = threading.excepthook, logging.raiseExceptions
    noted = outputs.output_dirs[:], outputs.created_dirs[:]
    outputs.output_dirs.clear()
    outputs.created_dirs.clear()
    try:
        with warnings.catch_warnings():
            if cwd is not None:
                os.chdir(cwd)
            yield
    finally:
        os.chdir(folder)
        os.environ.clear()
        os.environ.update(environ)
        sys.argv[:] = argv
        torch.set_num_threads(threads)
        for handler in root.handlers:
            if handler not in handlers:
                handler.close()
        root.handlers[:] = handlers
        root.setLevel(level)
        threading.excepthook, logging.raiseExceptions = hook, raise_exceptions
        outputs.output_dirs[:], outputs.created_dirs[:] = noted


def run_in_process(module: str, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """`python -m <module> <args>` run in this process, as `run_cli` runs it in a new one (same result type),
    without the interpreter's start-up and imports (~5 s of a tiny run's ~7 on one core). For what a
    separate process adds nothing to: messages, exit codes and files. A test about processes (kills,
    DDP, concurrent starts, the environment, an installed copy) uses `run_cli`."""
    import importlib

    out, err = io.StringIO(), io.StringIO()
    with _process_state(cwd), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        os.environ.pop("LENET_DATA_ROOT", None)
        if module == "lenet_pl.train":  # Hydra's app reads sys.argv and ends with sys.exit
            from lenet_pl import train

            sys.argv = [module, *args]
            try:
                train.cli()
                code = 0
            except SystemExit as exit:
                code = exit.code if isinstance(exit.code, int) else 1
        else:
            code = importlib.import_module(module).main(list(args))
    return subprocess.CompletedProcess([module, *args], code, out.getvalue(), err.getvalue())


@pytest.fixture
def train_in_process() -> Callable[..., int]:
    """`python -m lenet_pl.train <args>` run in this process (`run_in_process`): returns its exit status,
    its output left on the real stdout and stderr for `capfd`."""

    def run(*args: str) -> int:
        result = run_in_process("lenet_pl.train", *args)
        sys.stdout.write(result.stdout)
        sys.stderr.write(result.stderr)
        return result.returncode

    return run
