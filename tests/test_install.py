"""The project as a wheel: built from this repo, installed apart from it, run from elsewhere, with user presets;
its optional parts declared as extras, which a clone's `make install` installs."""

import importlib.util
import json
import os
import subprocess
import sys
import tomllib
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from conftest import REPO, run_cli, write_dataset
from lenet_pl.runtime.errors import EXTRAS

# A user's own config folder: a new activation choice and a preset that uses it.
USER_CONFIGS = {
    "activation/silu.yaml": "_target_: torch.nn.SiLU\n_partial_: true\n",
    "experiment/mine.yaml": (
        "# @package _global_\ndefaults:\n  - override /activation: silu\n  - override /pooling: max\n"
        "optimizer:\n  lr: 0.05\n"
    ),
}


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """The wheel `pip wheel .` builds, installed with `pip install --target` into a folder outside the
    clone; (that folder, an environment whose PYTHONPATH puts it first, ahead of any editable install)."""
    tmp = tmp_path_factory.mktemp("wheel")
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(tmp / "dist"), str(REPO)]
    if importlib.util.find_spec("hatchling") is not None:
        command.append("--no-build-isolation")  # offline: the build backend is here already
    built = subprocess.run(command, capture_output=True, text=True, timeout=600)
    if built.returncode != 0 and "hatchling" in built.stderr and "No matching distribution" in built.stderr:
        pytest.skip("building the wheel needs hatchling, which is not installed and pip could not download")
    assert built.returncode == 0, built.stderr[-3000:]
    [wheel] = (tmp / "dist").glob("lenet_pl-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {"lenet_pl/conf/train.yaml", "lenet_pl/conf/experiment/lenet1998.yaml", "lenet_pl/__init__.py"} <= set(names)
    site = tmp / "site"
    install = [sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", "--target", str(site), str(wheel)]
    result = subprocess.run(install, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    env = dict(os.environ, PYTHONPATH=str(site))  # first on sys.path: before site-packages and its .pth entries
    return site, env


def test_the_installed_package_finds_its_own_configs(installed, tmp_path):
    site, env = installed
    probe = "import lenet_pl; print(lenet_pl.__file__); print(lenet_pl.CONFIG_DIR)"
    result = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True)
    module_file, config_dir = result.stdout.split()
    assert Path(module_file).is_relative_to(site) and Path(config_dir) == site / "lenet_pl" / "conf"
    summary = run_cli("lenet_pl.summary", "experiment=lenet1998", cwd=tmp_path, env=env)
    assert summary.returncode == 0, summary.stderr[-3000:]
    assert "total                       60,000" in summary.stdout


def test_the_installed_package_trains_with_a_users_own_config_folder(installed, tmp_path):
    _, env = installed
    user = tmp_path / "my_configs"
    for name, text in USER_CONFIGS.items():
        (user / name).parent.mkdir(parents=True, exist_ok=True)
        (user / name).write_text(text)
    root = write_dataset(tmp_path / "data", n_train=300, n_test=50)
    run = tmp_path / "run"
    result = run_cli(
        "lenet_pl.train",
        "--config-dir",
        str(user),
        "experiment=mine",
        f"data.root={root}",
        "data.verify=false",
        "data.val_size=50",
        "trainer.fast_dev_run=true",
        "logger=none",
        "threads=1",
        f"hydra.run.dir={run}",
        cwd=tmp_path,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    hparams = json.loads((run / "metrics.json").read_text())["hparams"]
    assert (hparams["experiment"], hparams["activation"], hparams["pooling"]) == ("mine", "silu", "max")
    assert hparams["optimizer.lr"] == 0.05
    config = (run / ".hydra" / "config.yaml").read_text()
    assert "torch.nn.SiLU" in config

    # the commands that compose without Hydra's app take --config-dir too
    summary = run_cli("lenet_pl.summary", "--config-dir", str(user), "experiment=mine", cwd=tmp_path, env=env)
    assert summary.returncode == 0, summary.stderr[-3000:]
    missing = run_cli("lenet_pl.summary", "--config-dir", str(tmp_path / "nope"), cwd=tmp_path, env=env)
    assert missing.returncode == 2 and "is not a folder" in missing.stderr


def test_the_wheel_declares_onnx_optuna_and_slurm_as_extras_of_the_packages_their_errors_name(installed):
    site, _ = installed
    [metadata] = site.glob("lenet_pl-*.dist-info/METADATA")
    fields = Parser().parsestr(metadata.read_text())
    requires: dict[str | None, set[str]] = {extra: set() for extra in [None, *fields.get_all("Provides-Extra")]}
    for line in fields.get_all("Requires-Dist"):  # extra -> what it installs (None: a plain `pip install`)
        requirement = Requirement(line)
        marker = requirement.marker
        for extra in [None] if marker is None else [e for e in requires if e and marker.evaluate({"extra": e})]:
            requires[extra].add(requirement.name)
    optional = set().union(*(requires[extra] for extra in EXTRAS))
    assert not optional & requires[None]  # none of them comes with a plain `pip install`
    for extra, needs in EXTRAS.items():
        assert set(needs.modules.values()) <= requires[extra], extra  # what MissingExtra says it installs
    assert {"sqlalchemy", "alembic"} <= requires["optuna"]  # the pins optuna 2.10's storage needs
    assert requires["all"] == optional


def test_make_install_installs_every_extra():
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert set(extras) == {*EXTRAS, "all", "dev"}
    [everything] = map(Requirement, extras["all"])
    assert (everything.name, everything.extras) == ("lenet-pl", set(EXTRAS))
    assert "pip install -e '.[all,dev]'" in (REPO / "Makefile").read_text()
