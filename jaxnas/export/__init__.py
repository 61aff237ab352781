"""The found model outside jaxnas: PyTorch, ONNX and Flax.

Each export holds only the architecture's live nodes (no padding, masks or op
selection); batch norm runs in evaluation mode with the running statistics.

* ``torch_program``: a self-contained ``torch.export`` program of one architecture
  with its trained parameters (and, optionally, the input normalisation): plain
  PyTorch loads it with ``torch.export.load`` and needs neither jaxnas nor JAX. It
  holds only the architecture's live nodes; batch norm runs in evaluation mode with
  the running statistics.
* ``seed_module`` / ``state_dict``: the same network as an ``nn.Module`` built by
  jaxnas (``jaxnas.export.pytorch.SeedModule``), and its state dict.
* ``onnx_model``: the ``torch_program`` as a dynamic-batch ONNX model (needs torch,
  onnx and onnxscript: ``pip install 'jaxnas[onnx]'``); onnxruntime runs it.
* ``to_flax``: a Flax NNX module with the trained weights; ``flax_files``: the same as
  a ``model.py`` and its weights, which Flax loads without jaxnas.

Inputs are in jaxnas's layout, (B, *input_shape).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from jaxnas.arch import Arch
from jaxnas.export._flax import flax_files, to_flax
from jaxnas.export._onnx import ONNX_HINT, onnx_model
from jaxnas.nn import ModelConfig
from jaxnas.spaces import Space


def _torch_module():
    try:
        from jaxnas.export import pytorch
    except ImportError:
        raise ImportError("exporting to PyTorch needs torch (pip install torch)") from None
    return pytorch


def seed_module(space: Space, arch: Arch, params: Any, input_shape: tuple[int, ...],
                num_classes: int, config: ModelConfig = ModelConfig()):  # noqa: B008 (frozen)
    """One architecture with its jaxnas parameters as a PyTorch module in eval mode."""
    module = _torch_module().SeedModule(space, arch, input_shape, num_classes, config)
    return module.load_jax_params(params).eval()


def state_dict(space: Space, arch: Arch, params: Any, input_shape: tuple[int, ...],
               num_classes: int, config: ModelConfig = ModelConfig()):  # noqa: B008 (frozen)
    """The state dict of ``seed_module``'s network (tensors by module path)."""
    return seed_module(space, arch, params, input_shape, num_classes, config).state_dict()


def torch_program(space: Space, arch: Arch, params: Any, input_shape: tuple[int, ...],
                  num_classes: int, config: ModelConfig = ModelConfig(),  # noqa: B008 (frozen)
                  mean: np.ndarray | None = None, std: np.ndarray | None = None):
    """A ``torch.export`` program: raw inputs (B, *input_shape) -> logits (B, num_classes),
    any batch size B.

    With ``mean`` and ``std`` (each of shape ``input_shape``, as a run's dataset) the
    program normalises its inputs first, as ``jaxnas.load(...).logits`` does. Save it
    with ``torch.export.save``; ``torch.export.load(file).module()`` runs it without
    jaxnas.
    """
    import torch

    module = _torch_module().Normalised(seed_module(space, arch, params, input_shape,
                                                    num_classes, config), mean, std).eval()
    example = torch.zeros((2, *input_shape), dtype=torch.float32)
    batch = torch.export.Dim("batch", min=1)
    return torch.export.export(module, (example,), dynamic_shapes={"x": {0: batch}})


__all__ = ["ONNX_HINT", "flax_files", "onnx_model", "seed_module", "state_dict",
           "to_flax", "torch_program"]
