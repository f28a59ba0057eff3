"""Print LeNet-5's layer table (output shape, parameters, connections) for a config.

python -m lenet_pl.summary                       # the default model
python -m lenet_pl.summary activation=relu pooling=max model.input_size=28
python -m lenet_pl.summary experiment=lenet1998

It takes `python -m lenet_pl.train`'s arguments (its --help lists them all); those below shape the table.
"""

import sys

from lenet_pl import CONFIG_DIR
from lenet_pl.model import format_layer_table, layer_table
from lenet_pl.runtime.cli import EXIT_CODES, command, format_keys
from lenet_pl.runtime.compose import compose_config
from lenet_pl.runtime.values import instantiate_node

KEYS = {
    "experiment": "a whole preset",
    "model": "the architecture",
    "activation": "the squashing function",
    "pooling": "S2 and S4",
    "norm": "normalisation after each convolution (none by default)",
}


def help_text() -> str:
    """The docstring, then the keys that shape the table, with the choices in conf/."""
    groups = [
        (f"{group}=", f"{meaning}: {', '.join(sorted(p.stem for p in (CONFIG_DIR / group).glob('*.yaml')))}")
        for group, meaning in KEYS.items()
    ]
    values = [
        ("model.input_size=32", "the input's side in pixels (28: MNIST unpadded)"),
        ("model.num_classes=10", "the number of outputs"),
        ("--config-dir DIR", "a folder of your own configs, laid out like conf/"),
    ]
    return f"{__doc__.strip()}\n\nKeys:\n{format_keys(groups + values)}\n\n{EXIT_CODES}"


def show(args: list[str]) -> int:
    cfg = compose_config(args)
    net = instantiate_node(cfg, "model")  # a refused value is named by its key
    print(format_layer_table(layer_table(net)))
    return 0


def main(argv: list[str] | None = None) -> int:
    return command(show, argv, help_text, renamed=("data_root", "paths.data_dir"))


if __name__ == "__main__":
    sys.exit(main())
