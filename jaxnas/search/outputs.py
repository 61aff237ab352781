"""What a finished search leaves: the best model's files and the result summary."""

from __future__ import annotations

import dataclasses
import json

import jax
from flax import serialization

from jaxnas import data as data_lib
from jaxnas import spaces as spaces_lib
from jaxnas.arch import to_json
from jaxnas.drawing import arch_png, arch_svg
from jaxnas.importance import run_importance
from jaxnas.search.config import SearchResult


def best_files(outcome: SearchResult, data: data_lib.Dataset, params) -> dict[str, bytes]:
    """The retrained best model by role (``RunDir.write_best``): architecture JSON,
    parameters, model description and drawings."""
    space: spaces_lib.Space = outcome.space
    config = outcome.config
    arch_json = {"space": space.name, **to_json(outcome.best_arch, space.op_names)}
    model = {"space": space.name, "input_shape": list(data.input_shape),
             "num_classes": data.num_classes, "width": config.width, "cells": config.cells,
             "norm": config.norm, "mean": None if data.mean is None else data.mean.tolist(),
             "std": None if data.std is None else data.std.tolist(),
             "hyperparameters": outcome.hyperparameters}
    return {"arch": json.dumps(arch_json, indent=1).encode(),
            "params": serialization.to_bytes(params),
            "model": json.dumps(model).encode(),
            "svg": arch_svg(outcome.best_arch, space.op_names, title=outcome.best.hash).encode(),
            "png": arch_png(outcome.best_arch, space.op_names)}


def result_summary(outcome: SearchResult) -> dict:
    """result.json: the best record, its test scores, the training numbers it was
    retrained with, the settings, versions, device, time and the importance of ops,
    positions, edges and searched training numbers."""
    from jaxnas import __version__

    best = outcome.best
    devices = jax.devices()
    space = outcome.space
    return {
        "best": {"hash": best.hash, "arch": best.arch, "val_loss": best.val_loss,
                 "val_acc": best.val_acc, "params": best.params, "flops": best.flops,
                 **({"hyperparameters": best.hyperparameters} if best.hyperparameters else {})},
        "hyperparameters": outcome.hyperparameters,
        "val_loss": best.val_loss, "val_acc": best.val_acc,
        "test_accuracy": outcome.test_accuracy, "test_loss": outcome.test_loss,
        "config": dataclasses.asdict(outcome.config),
        "versions": {"jaxnas": __version__, "jax": jax.__version__},
        "device": {"kind": devices[0].device_kind, "platform": devices[0].platform,
                   "count": len(devices)},
        "wall_seconds": round(outcome.wall_seconds, 3), "generations": outcome.generations,
        "unique_evaluations": len(outcome.history),
        "importance": run_importance([dataclasses.asdict(r) for r in outcome.history],
                                     space.op_names, edge_labelled=space.edge_labelled),
    }
