"""Every command through the one command-line harness (lenet_pl.runtime.cli): --help, bad and renamed keys,
one-line errors with one exit code, commands that import no other command, and the optional extras' absence."""

import ast
import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from conftest import REPO, run_cli, run_together, without_packages_env
from lenet_pl.divergence import TrainingDiverged
from lenet_pl.runtime.cli import EXIT_CODES, RENAMED, command, config_keys
from lenet_pl.runtime.compose import compose_config
from lenet_pl.runtime.errors import FAILED, USAGE, ConfigError, DataError, OutputError, RunFileError, UserError

COMMANDS = ("train", "evaluate", "predict", "export", "inside", "summary", "report", "bench", "error_per_pass")
CONFIG_COMMANDS = ("evaluate", "predict", "export", "inside")  # key=value, composed with conf/<name>.yaml


def run_command(name: str, args: list[str], train_in_process, capfd) -> tuple[int, str, str]:
    """`python -m lenet_pl.<name> <args>` in this process: (exit code, stdout, stderr)."""
    main = train_in_process if name == "train" else lambda *a: importlib.import_module(f"lenet_pl.{name}").main(list(a))
    code = main(*args)
    out, err = capfd.readouterr()
    return code, out, err


def one_error_line(err: str) -> str:
    """The single line a user error prints on stderr, without its `error: ` prefix."""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0].removeprefix("error: ")


def leaf_keys(name: str) -> set[str]:
    """Every value's dotted key in conf/<name>.yaml as Hydra composes it."""
    flat = OmegaConf.to_container(compose_config([], config_name=name), resolve=False)

    def walk(node: dict, prefix: str) -> set[str]:
        keys = set()
        for key, value in node.items():
            keys |= walk(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}"}
        return keys

    return walk(flat, "")


# What each command's --help must name: its keys or options, and an example command.
HELP_NAMES = {
    "train": ["data.root", "seed", "threads", "ckpt_path", "compile", "channels_last", "keep_freed_memory"],
    "summary": ["activation=", "pooling=", "model=", "model.input_size", "--config-dir"],
    "report": ["sweep_dir", "--output"],
    "bench": ["--steps", "--repeats", "--tta", "--output", "overrides"],
    "error_per_pass": ["runs", "--label", "--title", "--output"],
    **{name: [f"{key}=" for key in sorted(leaf_keys(name))] for name in CONFIG_COMMANDS},
}


@pytest.mark.parametrize("name", COMMANDS)
def test_help_exits_0_and_lists_the_keys_an_example_and_the_exit_codes(name, train_in_process, capfd):
    code, out, err = run_command(name, ["--help"], train_in_process, capfd)
    assert code == 0, err
    for key in HELP_NAMES[name]:
        assert key in out, f"{name} --help does not name {key}"
    assert f"python -m lenet_pl.{name} " in out  # an example command
    assert " ".join(EXIT_CODES.split()) in " ".join(out.split())  # argparse may wrap the epilog


@pytest.mark.parametrize("name", CONFIG_COMMANDS)
def test_config_help_gives_every_key_of_the_composed_config_one_line_of_meaning(name):
    listed = {key: meaning for key, _, meaning in config_keys(name)}
    assert set(listed) == leaf_keys(name)
    assert all(meaning and "\n" not in meaning for meaning in listed.values()), listed


def test_config_keys_reads_nested_keys_dotted_with_their_default_and_comment():
    keys = {key: (default, meaning) for key, default, meaning in config_keys("evaluate")}
    assert keys["data.root"] == ("null", "where the data set lives now; null: the run's own data.root")
    assert keys["ckpt_path"][0] == "???" and keys["worst"][0] == "16"
    assert "data" not in keys  # a parent is no key of its own


# A key no command has, placed where each command reads keys or options.
BAD_KEY = {
    "train": (["nope=1"], "nope is not a key"),
    "summary": (["nope=1"], "nope is not a key"),
    "report": (["sweep", "--nope"], "unrecognized arguments: --nope"),
    "bench": (["--nope"], "unrecognized arguments: --nope"),
    "error_per_pass": (["run", "--output", "fig.png", "--nope"], "unrecognized arguments: --nope"),
    **{name: (["ckpt_path=run", "nope=1"], "nope is not a key") for name in CONFIG_COMMANDS},
}


@pytest.mark.parametrize("name", COMMANDS)
def test_a_bad_key_exits_2_with_one_line_naming_it(name, train_in_process, capfd, tmp_path):
    args, message = BAD_KEY[name]
    if name == "train":
        args = [*args, f"hydra.run.dir={tmp_path / 'run'}"]
    code, _, err = run_command(name, args, train_in_process, capfd)
    assert code == USAGE == 2
    assert message in one_error_line(err) and "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_an_unknown_choice_names_the_valid_ones_in_one_line(capfd):
    code, _, err = run_command("summary", ["activation=swish"], None, capfd)
    assert code == USAGE
    assert one_error_line(err) == (
        "In 'train': Could not find 'activation/swish'. "
        "Available options in 'activation': gelu, relu, scaled_tanh, sigmoid, tanh."
    )


def test_an_option_given_to_a_key_value_command_is_refused_by_name(capfd):
    code, _, err = run_command("evaluate", ["ckpt_path=run", "--nope"], None, capfd)
    assert code == USAGE
    assert one_error_line(err) == "--nope is not an option: arguments are key=value (--help lists the keys)."


# Old names in scripts: (command, arguments, the old name, the new one as the refusal writes it).
OLD_NAMES = [
    ("train", ["data_root=/data"], "data_root", "data.root=/data"),
    ("train", ["paths.data_dir=/data"], "paths.data_dir", "data.root=/data"),
    ("summary", ["paths.data_dir=/data"], "paths.data_dir", "data.root=/data"),
    ("evaluate", ["ckpt_path=run", "data_root=/data"], "data_root", "data.root=/data"),
    ("evaluate", ["ckpt_path=run", "output_dir=eval"], "output_dir", "output=eval"),
    ("export", ["ckpt_path=run", "data_root=/data"], "data_root", "data.root=/data"),
    ("inside", ["ckpt_path=run", "data_root=/data"], "data_root", "data.root=/data"),
    ("report", ["sweep", "--out", "docs/x"], "--out", "--output ..."),
    ("error_per_pass", ["run", "--out=fig.png"], "--out", "--output fig.png"),
    ("bench", ["--json", "bench.json"], "--json", "--output ..."),
    ("bench", ["--tta", "data_root=/data"], "data_root", "data.root=/data"),
]


@pytest.mark.parametrize(("name", "args", "old", "written"), OLD_NAMES)
def test_an_old_key_name_is_refused_with_the_new_one(name, args, old, written, train_in_process, capfd):
    code, out, err = run_command(name, args, train_in_process, capfd)
    assert code == USAGE
    line = one_error_line(err)
    new = written.split("=")[0].split()[0]
    assert line == (
        f"{old} is an old name: every command now calls {RENAMED[old][1]} {new}. Write {written} instead "
        "(--help lists every name)."
    )
    assert out == ""  # refused before anything ran


def test_a_key_a_command_never_had_is_not_called_an_old_name(capfd):
    # predict reads no data set: data_root there is just an unknown key, not a rename to data.root
    code, _, err = run_command("predict", ["ckpt_path=run", "inputs=x.png", "data_root=/data"], None, capfd)
    assert code == USAGE
    assert one_error_line(err).startswith("data_root is not a key of this command")


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (ConfigError("optimizer.lr=-1 is not allowed."), USAGE),
        (DataError("MNIST is not in /nowhere."), USAGE),
        (RunFileError("run/metrics.json", "is empty"), USAGE),
        (UserError("ckpt_path='x' does not exist."), USAGE),
        (TrainingDiverged("Training diverged at step 3."), FAILED),
        (OutputError("Could not write run/: the disk is full."), FAILED),
    ],
)
def test_a_user_error_exits_2_and_a_run_that_failed_exits_1_each_in_one_line(error, code, capsys):
    def job(args: list[str]) -> int:
        raise error

    assert command(job, [], str) == code
    assert one_error_line(capsys.readouterr().err) == str(error)
    assert (USAGE, FAILED) == (2, 1)


def test_a_message_over_several_lines_is_printed_as_one(capsys):
    def job(args: list[str]) -> int:
        raise UserError("first line\n  second line\n")

    assert command(job, [], str) == USAGE
    assert one_error_line(capsys.readouterr().err) == "first line second line"


def test_a_bug_keeps_its_traceback():
    def job(args: list[str]) -> int:
        raise KeyError("a bug")

    with pytest.raises(KeyError, match="a bug"):
        command(job, [], str)


def test_python_m_answers_help_and_refuses_an_old_name_as_a_user_would(tmp_path):
    helped, refused = run_together(
        lambda: run_cli("lenet_pl.predict", "--help", cwd=tmp_path),
        lambda: run_cli("lenet_pl.report", str(tmp_path), "--out", str(tmp_path / "r"), cwd=tmp_path),
    )
    assert helped.returncode == 0 and helped.stderr == ""
    assert "inputs=???" in helped.stdout and "python -m lenet_pl.predict ckpt_path=" in helped.stdout
    assert refused.returncode == 2 and refused.stdout == ""
    assert one_error_line(refused.stderr).startswith("--out is an old name: every command now calls ")


# ---------------------------------------------------------------------------------------------------------
# Commands are leaves: they share helpers through modules, never through each other.

SRC = REPO / "src"


def imported(path: Path) -> set[str]:
    """The modules a source file imports (`from lenet_pl import x` counts as lenet_pl.x)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return names


def test_no_module_imports_a_command_module():
    commands = {f"lenet_pl.{name}" for name in COMMANDS}
    found = {
        str(path.relative_to(SRC)): sorted(imported(path) & commands)
        for path in SRC.rglob("*.py")
        if imported(path) & commands
    }
    assert found == {}


def test_every_command_runs_through_the_harness_and_every_runnable_module_is_a_command():
    runnable = {
        path.stem for path in (SRC / "lenet_pl").glob("*.py") if 'if __name__ == "__main__":' in path.read_text()
    }
    assert runnable == set(COMMANDS)
    for name in COMMANDS:
        assert "lenet_pl.runtime.cli" in imported(SRC / "lenet_pl" / f"{name}.py"), name


# ---------------------------------------------------------------------------------------------------------
# The optional extras (pyproject.toml): a wheel installed without them runs everything else, and a command
# that needs one says which, and how to install it.

EXTRAS_MODULES = (
    "onnx",
    "onnxscript",
    "onnxruntime",
    "optuna",
    "hydra_plugins.hydra_optuna_sweeper",
    "submitit",
    "hydra_plugins.hydra_submitit_launcher",
)
# Every command's --help in one process (imports are most of a command's start-up): {command: exit code},
# and what importing onnx says (that the hook hides it as pip leaves it when not installed).
HELP_OF_EVERY_COMMAND = """
import importlib, json, sys
try:
    import onnx
    hidden = "onnx imported"
except ModuleNotFoundError as err:
    hidden = str(err)
codes = {}
for name in %r:
    module = importlib.import_module(f"lenet_pl.{name}")
    if name == "train":
        sys.argv = ["lenet_pl.train", "--help"]
        try:
            module.cli()
        except SystemExit as exit:
            codes[name] = exit.code or 0
    else:
        codes[name] = module.main(["--help"])
print(json.dumps({"codes": codes, "import onnx": hidden}))
"""


def test_every_command_imports_and_answers_help_without_any_extra(tmp_path):
    """train, evaluate, predict, export and the others need none of onnx, optuna, submitit or their Hydra plugins."""
    env = without_packages_env(tmp_path / "hook", *EXTRAS_MODULES)
    command = [sys.executable, "-c", HELP_OF_EVERY_COMMAND % (COMMANDS,)]
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    answer = json.loads(result.stdout.splitlines()[-1])
    assert answer == {"codes": dict.fromkeys(COMMANDS, 0), "import onnx": "No module named 'onnx'"}
    for name in COMMANDS:
        assert f"python -m lenet_pl.{name} " in result.stdout  # each help's example


# What the train command says when a Hydra plugin that an extra installs is missing: (arguments, the packages
# hidden, the one line on stderr).
MISSING_PLUGINS = [
    (
        ["-m", "hparams_search=optuna", "experiment=modern"],
        ("hydra_plugins.hydra_optuna_sweeper", "optuna"),
        "The Optuna search (hparams_search=optuna) needs the optional packages hydra-optuna-sweeper and optuna, "
        "and hydra-optuna-sweeper is not installed here: pip install 'lenet-pl[optuna]' "
        "(a clone's `make install` installs every extra).",
    ),
    (
        ["-m", "sweep=ablation", "hydra/launcher=slurm"],
        ("hydra_plugins.hydra_submitit_launcher", "submitit"),
        "The SLURM launcher (hydra/launcher=slurm, or submitit_local) needs the optional package "
        "hydra-submitit-launcher, not installed here: pip install 'lenet-pl[slurm]' "
        "(a clone's `make install` installs every extra).",
    ),
]


def test_a_sweep_whose_plugin_is_not_installed_names_its_extra_and_writes_nothing(tmp_path):
    """Hydra alone says "Could not find 'hydra/sweeper/optuna'": the error names the package and pip's command."""
    folders = [tmp_path / f"work{i}" for i in range(len(MISSING_PLUGINS))]
    runs = []
    for folder, (args, hidden, _) in zip(folders, MISSING_PLUGINS, strict=True):
        folder.mkdir()
        env = without_packages_env(tmp_path / f"hook_{folder.name}", *hidden)
        runs.append(lambda args=args, folder=folder, env=env: run_cli("lenet_pl.train", *args, cwd=folder, env=env))
    for folder, (args, _, message), result in zip(folders, MISSING_PLUGINS, run_together(*runs), strict=True):
        assert result.returncode == USAGE == 2, result.stderr[-3000:]
        assert one_error_line(result.stderr) == message, args
        assert list(folder.iterdir()) == []  # no outputs/multirun/<sweep dir>
