"""The found model as an ONNX model: ``torch_program`` through ``torch.onnx.export``.

torch, onnx and onnxscript (the dynamo exporter's op library) are imported on use.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from typing import Any

import numpy as np

from jaxnas.arch import Arch
from jaxnas.nn import ModelConfig
from jaxnas.spaces import Space

ONNX_HINT = ("exporting to ONNX needs torch, onnx and onnxscript "
             "(pip install 'jaxnas[onnx]')")


def onnx_model(space: Space, arch: Arch, params: Any, input_shape: tuple[int, ...],
               num_classes: int, config: ModelConfig = ModelConfig(),  # noqa: B008 (frozen)
               mean: np.ndarray | None = None, std: np.ndarray | None = None):
    """An ``onnx.ModelProto``: input "x", raw float32 inputs (batch, *input_shape), to
    output "logits" (batch, num_classes), for any batch size.

    The ``torch.export`` program of ``torch_program`` (with the input normalisation
    when ``mean`` and ``std`` are given) exported by ``torch.onnx``'s dynamo exporter
    and checked with ``onnx.checker``. Save it with ``onnx.save`` or
    ``SerializeToString``; ``onnxruntime.InferenceSession`` runs it.

    Raises:
      ImportError: torch, onnx or onnxscript is missing (``ONNX_HINT`` says what to
        install).
    """
    try:
        import onnx
        import onnxscript  # noqa: F401 (torch.onnx's dynamo exporter needs it)
        import torch
    except ImportError:
        raise ImportError(ONNX_HINT) from None
    from jaxnas.export import torch_program

    program = torch_program(space, arch, params, input_shape, num_classes, config, mean, std)
    with _quiet_exporter():
        exported = torch.onnx.export(program, dynamo=True, verbose=False, input_names=["x"],
                                     output_names=["logits"])
    model = exported.model_proto
    for value in (*model.graph.input, *model.graph.output):
        value.type.tensor_type.shape.dim[0].dim_param = "batch"
    onnx.checker.check_model(model, full_check=True)
    return model


@contextlib.contextmanager
def _quiet_exporter():
    """Silences the exporter's progress log and deprecation warnings (about torch's own
    internals, nothing the caller can act on)."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)
