"""The population trainer: whole populations of different architectures in one program.

``train_population(key, space, archs, data, config)`` trains and validates P
candidates and returns a ``TrainResult``; ``make_train(space, config)`` returns the
underlying pure ``train(key, archs, data, state=None)``. Populations are padded to
a few rounded sizes, trained in chunks under a memory budget and sharded over every
device (every process after ``initialize_distributed``).
"""

from jaxnas.train._config import OPTIMIZERS, SCHEDULES, Hyperparams, TrainConfig
from jaxnas.train._distributed import initialize_distributed
from jaxnas.train._layout import PopulationLayout, population_layout
from jaxnas.train._programs import (
    TrainState,
    batch_indices,
    pad_rows,
    stack_candidates,
    take_candidates,
)
from jaxnas.train._trainer import (
    DeviceData,
    TrainResult,
    bucket_limits,
    evaluate,
    init_state,
    make_evaluate,
    make_train,
    put_data,
    train_population,
)

__all__ = [
    "OPTIMIZERS", "SCHEDULES", "DeviceData", "Hyperparams", "PopulationLayout", "TrainConfig",
    "TrainResult", "TrainState", "batch_indices", "bucket_limits", "evaluate", "init_state",
    "initialize_distributed", "make_evaluate", "make_train", "pad_rows", "population_layout",
    "put_data", "stack_candidates", "take_candidates", "train_population",
]
