"""The static layout of a model: shapes, op tables and the macro skeleton's choices."""

from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np

from jaxnas.nn._ops import OpSpec, parse_op, tap_mask
from jaxnas.spaces import Space

NORMS = ("batch", "layer")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Static model settings (hashable, so a jit cache key).

    Attributes:
      width: channels of conv cells, units of dense cells and of "dense-<act>" ops;
        ops named with a width ("dense64-relu") carry their own.
      num_cells: cells stacked in the macro skeleton, each with its own weights, same arch.
      stem_kernel: kernel size of the stem convolution in spatial spaces.
      node_loop: how a cell walks its nodes: "scan" (``lax.scan`` over the stacked node
        parameters), "unroll" (a Python loop over the N static nodes) or "auto":
        unroll where nodes branch (``apply(..., branch=True)``) and in dense spaces,
        scan spatial cells in the vmapped programs, the accelerator program's typed
        slots included (unrolled, XLA's fusions of the backward pass recompute shared
        node values: 2.4x slower there; ``docs/scaling.md``).
      init: "auto" (PyTorch's default init where ops normalise, He-normal otherwise),
        "torch" or "he" (see ``init_params``).
      norm: the normalisation of conv-norm ops and of the spatial stem: "batch"
        (NAS-Bench-101/201's batch norm: batch statistics in training, running
        statistics for evaluation, PyTorch's momentum 0.1 and eps 1e-5; the running
        statistics are the non-trainable "mean" and "var" leaves of the params) or
        "layer" (a layer norm over channels: no state). Spaces without such ops
        (the dense spaces) are unaffected.
    """

    width: int = 32
    num_cells: int = 1
    stem_kernel: int = 3
    node_loop: str = "auto"
    init: str = "auto"
    norm: str = "batch"

    def __post_init__(self):
        if self.width < 1:
            raise ValueError(f"ModelConfig.width must be positive; got {self.width}")
        if self.num_cells < 1:
            raise ValueError(f"ModelConfig.num_cells must be at least 1; got {self.num_cells}")
        if self.stem_kernel < 1 or self.stem_kernel % 2 == 0:
            raise ValueError(f"ModelConfig.stem_kernel must be odd; got {self.stem_kernel}")
        if self.node_loop not in ("auto", "scan", "unroll"):
            raise ValueError("ModelConfig.node_loop must be 'auto', 'scan' or 'unroll'; got "
                             f"{self.node_loop!r}")
        if self.init not in ("auto", "torch", "he"):
            raise ValueError("ModelConfig.init must be 'auto', 'torch' or 'he'; got "
                             f"{self.init!r}")
        if self.norm not in NORMS:
            raise ValueError(f"ModelConfig.norm must be one of {', '.join(NORMS)}; "
                             f"got {self.norm!r}")


@dataclasses.dataclass(frozen=True)
class Layout:
    """Everything static about one (space, input shape, classes, config).

    Attributes:
      space, input_shape, num_classes, config: what the model was built for.
      specs: the parsed op of every op id.
      spatial_shape: () in dense spaces, (L,) for sequences, (H, W) for images.
      in_channels: channels of the input in spatial spaces; flattened input size in
        dense spaces.
      features: D, the padded feature size every node holds (units or channels).
      raw_input: chain spaces skip the stem: node 0 holds the flattened input and only
        node 1 reads it, with its own (in_features, D) kernel.
    """

    space: Space
    input_shape: tuple[int, ...]
    num_classes: int
    config: ModelConfig
    specs: tuple[OpSpec, ...]
    spatial_shape: tuple[int, ...]
    in_channels: int
    features: int
    raw_input: bool

    @property
    def num_nodes(self) -> int:
        return self.space.max_nodes

    def scan_nodes(self, branch: bool) -> bool:
        """Whether cells walk their nodes with ``lax.scan`` (else a Python loop); ``branch``:
        the nodes branch (``lax.switch``), which runs 5-6x faster unrolled."""
        if self.config.node_loop == "auto":
            return self.spatial and not branch
        return self.config.node_loop == "scan"

    @property
    def rank(self) -> int:
        return len(self.spatial_shape)

    @property
    def spatial(self) -> bool:
        return bool(self.spatial_shape)

    @property
    def positions(self) -> int:
        """Spatial positions per example (1 in dense spaces)."""
        return math.prod(self.spatial_shape)

    @property
    def first_node(self) -> int:
        """First node whose parameters live in the stacked ``nodes`` arrays."""
        return 2 if self.raw_input else 1

    @property
    def num_stacked(self) -> int:
        return self.num_nodes - 1 - self.first_node

    @functools.cached_property
    def linear_specs(self) -> tuple[OpSpec, ...]:
        return tuple(s for s in self.specs if s.kind == "linear")

    @property
    def max_kernel(self) -> int:
        return max((s.kernel for s in self.linear_specs), default=1)

    @property
    def taps(self) -> int:
        """Taps of a node kernel: max_kernel ** rank."""
        return self.max_kernel ** self.rank

    @property
    def stem_taps(self) -> int:
        return self.config.stem_kernel ** self.rank

    @property
    def has_bias(self) -> bool:
        return any(s.bias for s in self.specs)

    @property
    def has_norm(self) -> bool:
        return any(s.norm for s in self.specs)

    @property
    def init(self) -> str:
        """The initialisation scheme, "torch" or "he" (``ModelConfig.init`` resolved)."""
        if self.config.init == "auto":
            return "torch" if self.has_norm else "he"
        return self.config.init

    def op_width(self, spec: OpSpec) -> int:
        return self.config.width if spec.width is None else spec.width

    def stem_width(self) -> int:
        return self.config.width

    def cell_input_features(self, cell: int) -> int:
        """Size of node 0's value in a cell (the raw input only in a chain's first cell)."""
        return self.in_channels if self.raw_input and cell == 0 else self.features

    def tap_table(self, kernel: int | None = None) -> np.ndarray:
        """(K, kernel**rank) float32: the taps of a ``kernel`` window (default the node
        kernel's, ``max_kernel``) each op uses; zeros for ops that are not linear or whose
        kernel is larger."""
        kernel = self.max_kernel if kernel is None else kernel
        return np.stack([tap_mask(s.kernel, kernel, self.rank)
                         if s.kind == "linear" and s.kernel <= kernel
                         else np.zeros(kernel ** self.rank, np.float32) for s in self.specs])

    @functools.cached_property
    def slot_classes(self) -> tuple[int, ...]:
        """The kinds of typed node slot (``Model.apply(..., template=...)``), cheapest
        first: 0 runs pooling only; k > 0 runs the linear ops of kernel <= k (on a
        k-window) and pooling."""
        kernels = sorted({s.kernel for s in self.linear_specs})
        return ((0,) if any(s.kind == "pool" for s in self.specs) else ()) + tuple(kernels)

    @functools.cached_property
    def op_class(self) -> tuple[int, ...]:
        """The cheapest slot class that runs each op id; -1 for ops that need no slot
        (skip and zero, folded away by compaction)."""
        return tuple(s.kernel if s.kind == "linear" else 0 if s.kind == "pool" else -1
                     for s in self.specs)


def make_layout(space: Space, input_shape: tuple[int, ...], num_classes: int,
                config: ModelConfig) -> Layout:
    """Checks that the interpreter can run ``space`` on this data and fixes the layout."""
    input_shape = tuple(int(s) for s in input_shape)
    if not 1 <= len(input_shape) <= 3 or min(input_shape) < 1:
        raise ValueError("input_shape must be (features,), (length, channels) or "
                         f"(height, width, channels) with positive sizes; got {input_shape}")
    if num_classes < 2:
        raise ValueError(f"num_classes must be at least 2; got {num_classes}")
    specs = tuple(parse_op(name) for name in space.op_names)
    spatial = any(s.spatial for s in specs)
    raw_input = space.topology == "chain"
    if raw_input:
        if space.min_layers < 1:
            raise ValueError("the interpreter needs chains of at least one layer (min_layers "
                             ">= 1): the first layer reads the raw input")
        if any(s.kind != "linear" or s.spatial for s in specs):
            raise ValueError(f"chain space {space.name} may only hold dense ops; got "
                             f"{', '.join(space.op_names)}")
    named_widths = {s.width for s in specs if s.width is not None}
    if spatial:
        if named_widths - {config.width}:
            raise ValueError(f"space {space.name} mixes convolutions with dense ops of their "
                             f"own width ({sorted(named_widths)}); in spatial spaces every op "
                             f"has ModelConfig.width = {config.width} channels")
        if len(input_shape) == 1:
            spatial_shape, in_channels = input_shape, 1
        else:
            spatial_shape, in_channels = input_shape[:-1], input_shape[-1]
        features = config.width
    else:
        spatial_shape, in_channels = (), math.prod(input_shape)
        unnamed = any(s.kind == "linear" and s.width is None for s in specs)
        stem_or_unnamed = {config.width} if (unnamed or not raw_input) else set()
        features = max(named_widths | stem_or_unnamed)
    return Layout(space=space, input_shape=input_shape, num_classes=num_classes, config=config,
                  specs=specs, spatial_shape=tuple(spatial_shape), in_channels=in_channels,
                  features=features, raw_input=raw_input)
