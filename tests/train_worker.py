"""The tiny training setup the trainer tests share, and a subprocess entry point.

Run as a script it trains ``population()`` for ``CONFIG.steps`` steps, continues it
for as many again, and prints the metrics of both calls as one JSON line. The
sharding test runs it with several host devices, the distributed test as several
processes (``--coordinator host:port --num-processes n --process-id i``).
"""

import argparse
import json

import jax

from jaxnas import data, spaces
from jaxnas.arch._encoding import Arch
from jaxnas.nn import ModelConfig
from jaxnas.train import TrainConfig, initialize_distributed, put_data, train_population

# A tiny chain space enumerates 20 distinct architectures without compiling a sampler.
SPACE = spaces.mlp(widths=(8, 16), activations=("relu", "tanh"), max_layers=2)
CONFIG = TrainConfig(steps=6, batch_size=16, learning_rate=1e-2, curve_points=3,
                     eval_batch_size=128, model=ModelConfig(width=8))


def population(indices) -> Arch:
    """The architectures of SPACE at ``indices`` of its enumeration."""
    pool = SPACE.enumerate().to_numpy()
    return Arch(adj=pool.adj[list(indices)], ops=pool.ops[list(indices)])


def run(dataset, devices=None) -> dict:
    """Five candidates trained twice CONFIG.steps steps; metrics after each call."""
    device_data = put_data(dataset, devices)
    archs = population(range(5))
    first = train_population(jax.random.key(0), SPACE, archs, device_data, CONFIG,
                             devices=devices)
    second = train_population(jax.random.key(1), SPACE, archs, device_data, CONFIG,
                              state=first.state, devices=devices)
    return {
        "devices": len(device_data.devices),
        "val_loss": first.val_loss.tolist(),
        "val_acc": first.val_acc.tolist(),
        "train_curve": first.train_curve.tolist(),
        "continued_val_loss": second.val_loss.tolist(),
        "step": int(second.state.step),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--coordinator")
    parser.add_argument("--num-processes", type=int, default=1)
    parser.add_argument("--process-id", type=int, default=0)
    args = parser.parse_args()
    jax.config.update("jax_numpy_rank_promotion", "raise")
    if args.coordinator:
        initialize_distributed(args.coordinator, args.num_processes, args.process_id)
    print(json.dumps(run(data.load("digits"))), flush=True)


if __name__ == "__main__":
    main()
