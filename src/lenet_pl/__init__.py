"""LeNet-5 (LeCun et al. 1998) as a PyTorch Lightning + Hydra experiment project."""

from pathlib import Path


def _config_dir() -> Path:
    """The project's configs: `lenet_pl/conf/` in an installed wheel (pyproject.toml's force-include puts
    them there), else the clone's top-level `conf/` beside `src/` (a checkout, or an editable install)."""
    package = Path(__file__).resolve().parent
    for candidate in (package / "conf", package.parents[1] / "conf"):
        if (candidate / "train.yaml").is_file():
            return candidate
    raise RuntimeError(f"lenet_pl's configs are missing: neither {package / 'conf'} nor {package.parents[1] / 'conf'}")


CONFIG_DIR = _config_dir()
