"""The population trainer: whole populations of different architectures in one program.

``train_population(key, space, archs, data, config)`` trains and validates P
candidates and returns a ``TrainResult``; ``make_train(space, config)`` returns the
underlying pure ``train(key, archs, data, state=None)``. Populations are padded to
a few rounded sizes, trained in chunks under a memory budget and sharded over every
device (every process after ``initialize_distributed``).
"""

from jaxnas.train._config import OPTIMIZERS, PROGRAMS, SCHEDULES, Hyperparams, TrainConfig
from jaxnas.train._distributed import initialize_distributed
from jaxnas.train._evaluate import evaluate, make_evaluate
from jaxnas.train._layout import PopulationLayout, population_layout
from jaxnas.train._memory import chunk_memory, chunk_size_for, memory_budget
from jaxnas.train._placement import DeviceData, put_data
from jaxnas.train._plans import ProgramCost, program_cost, template_family
from jaxnas.train._programs import training_programs_built
from jaxnas.train._state import TrainState, pad_rows, stack_candidates, take_candidates
from jaxnas.train._steps import batch_indices
from jaxnas.train._templates import Family, Plan, plan
from jaxnas.train._trainer import TrainResult, init_state, make_train, train_population

__all__ = [
    "OPTIMIZERS", "PROGRAMS", "SCHEDULES", "DeviceData", "Family", "Hyperparams", "Plan",
    "PopulationLayout", "ProgramCost", "TrainConfig", "TrainResult", "TrainState",
    "batch_indices", "chunk_memory", "chunk_size_for", "evaluate", "init_state",
    "initialize_distributed", "make_evaluate", "make_train", "memory_budget", "pad_rows",
    "program_cost", "plan", "population_layout", "put_data", "stack_candidates",
    "take_candidates", "template_family", "train_population", "training_programs_built"
]
