"""Print LeNet-5's layer table (output shape, parameters, connections) for a config.

python -m lenet_pl.summary                       # the default model
python -m lenet_pl.summary activation=relu pooling=max model.input_size=28
"""

import sys

from hydra.errors import HydraException

from lenet_pl.config import compose_config, instantiate_node
from lenet_pl.errors import UserError, user_message
from lenet_pl.model import format_layer_table, layer_table


def main(argv: list[str] | None = None) -> int:
    try:
        cfg = compose_config(sys.argv[1:] if argv is None else argv)
        net = instantiate_node(cfg, "model")  # a refused value is named by its key
    except (HydraException, UserError) as err:
        print(f"error: {user_message(err)}", file=sys.stderr)
        return 2
    print(format_layer_table(layer_table(net)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
