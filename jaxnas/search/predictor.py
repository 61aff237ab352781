"""A trained architecture read back from a run directory (``jaxnas.load``)."""

from __future__ import annotations

import os

import jax
import numpy as np

from jaxnas import spaces as spaces_lib
from jaxnas.arch import from_json
from jaxnas.nn import ModelConfig, make_model
from jaxnas.search.config import SearchError, unknown_space_hint
from jaxnas.search.rundir import RunDir


class Predictor:
    """A trained architecture loaded from a run directory (``jaxnas.load``)."""

    def __init__(self, out: str | os.PathLike):
        rundir = RunDir(out)
        rundir.check()
        meta, arch, params = rundir.model()
        if meta["space"] not in spaces_lib.names():
            raise SearchError(unknown_space_hint(meta["space"]))
        self.space = spaces_lib.get(meta["space"])
        self.arch = from_json(arch, self.space.op_names)
        self.input_shape = tuple(meta["input_shape"])
        self.num_classes = int(meta["num_classes"])
        # Runs written before batch norm existed used the layer norm.
        self.model_config = ModelConfig(width=int(meta["width"]),
                                        num_cells=int(meta.get("cells", 1)),
                                        norm=meta.get("norm", "layer"))
        self.model = make_model(self.space, self.input_shape, self.num_classes,
                                self.model_config)
        template = self.model.init(jax.random.key(0))
        self.params = rundir.best_params(params, template)
        self.mean = None if meta["mean"] is None else np.asarray(meta["mean"], np.float32)
        self.std = None if meta["std"] is None else np.asarray(meta["std"], np.float32)
        # The training numbers it was retrained with (runs before joint search: unknown).
        self.hyperparameters: dict[str, float] = dict(meta.get("hyperparameters") or {})
        self._logits = jax.jit(lambda params, x: self.model.apply(params, self.arch, x))

    def logits(self, x: np.ndarray, normalised: bool = False) -> np.ndarray:
        """(B, num_classes) logits for raw inputs x (B, *input_shape)."""
        x = np.asarray(x, np.float32)
        if x.shape[1:] != self.input_shape:
            raise ValueError(f"inputs must have shape (B, {', '.join(map(str, self.input_shape))})"
                             f"; got {x.shape}")
        if not normalised and self.mean is not None:
            x = (x - self.mean) / self.std
        return np.asarray(self._logits(self.params, x))

    def predict(self, x: np.ndarray, normalised: bool = False) -> np.ndarray:
        """(B,) predicted class ids."""
        return self.logits(x, normalised).argmax(-1)


def load(out: str | os.PathLike) -> Predictor:
    """The best trained model of a finished run directory.

    Raises:
      RunDirectoryError: a damaged file of the run directory, named in one line.
      SearchError: no trained model, or its space is not registered here.
    """
    return Predictor(out)
