"""LeNet-5 (LeCun et al. 1998) as a PyTorch Lightning + Hydra experiment project."""

from pathlib import Path

# The configs live beside the package in the repository (`conf/`), as in lightning-hydra-template:
# the project is used from its clone, installed in editable mode.
CONFIG_DIR = Path(__file__).resolve().parents[2] / "conf"
