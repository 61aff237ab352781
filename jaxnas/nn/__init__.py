"""The padded interpreter: one compiled program runs every architecture of a space.

``make_model(space, input_shape, num_classes, config)`` returns a ``Model`` of pure
functions (``init``, ``apply``, ``apply_train``, ``apply_relaxed``, ``num_params``,
``flops``) and the static ``executed_flops``; the semantics are documented in ``jaxnas.nn._model``.
``compact`` folds an architecture into the node slots it computes (a ``Compact``);
``executed_flops(layout, template=...)`` counts what a typed-slot program runs.
``make_layout`` gives the static layout alone (shapes and parsed ops), for code
that mirrors the interpreter elsewhere (the PyTorch twin, exporters).
"""

from jaxnas.nn._compact import Compact, compact, compute_nodes
from jaxnas.nn._cost import executed_flops
from jaxnas.nn._layout import NORMS, Layout, ModelConfig, make_layout
from jaxnas.nn._model import Model, make_model, node_values
from jaxnas.nn._ops import BN_MOMENTUM, NORM_EPS, OpSpec, parse_op, tap_mask
from jaxnas.nn._params import STAT_KEYS, with_stats

__all__ = ["BN_MOMENTUM", "NORMS", "NORM_EPS", "STAT_KEYS", "Compact", "Layout", "Model",
           "ModelConfig", "OpSpec",
           "compact", "compute_nodes", "executed_flops", "make_layout", "make_model",
           "node_values", "parse_op", "tap_mask", "with_stats"]
