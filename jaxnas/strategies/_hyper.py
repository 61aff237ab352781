"""Training hyper-parameters as part of the genome: a declared space in unit coordinates.

A joint search carries, beside each architecture, H numbers in [0, 1] (``units``, one
per declared dimension); ``HyperSpace.values`` maps them to the training numbers.
Strategies sample, mutate, encode and enumerate the unit coordinates, so they stay
pure and jittable with a fixed shape: a population's genome is the pair
``(archs (P,), units (P, H))``, which the population helpers (``take``, ``where``,
``concat``, ``set_rows``, ``broadcast``) handle as any pytree. ``JointSpace`` gives such
pairs the space's interface (``sample``, ``mutate``, ``neighbours``).
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

from jaxnas.arch import Arch
from jaxnas.spaces import Space

# Standard deviation, in unit coordinates, of the move of a continuous dimension.
MUTATION_SCALE = 0.15
# Steps, in unit coordinates, of a continuous dimension's neighbours (local search).
NEIGHBOUR_STEP = 0.1


@dataclasses.dataclass(frozen=True)
class Dimension:
    """One searched number: a range (``low``..``high``, on a log scale if ``log``) or
    discrete ``choices``.

    A unit coordinate u in [0, 1] maps to ``low + u (high - low)`` (log scale: the same
    between the logarithms), or to ``choices[min(floor(u K), K - 1)]`` of K choices.
    """

    name: str
    low: float = 0.0
    high: float = 1.0
    log: bool = False
    choices: tuple[float, ...] | None = None

    def __post_init__(self):
        if self.choices is not None:
            if not self.choices or not all(math.isfinite(c) for c in self.choices):
                raise ValueError(f"{self.name}: choices must be one or more finite numbers; "
                                 f"got {list(self.choices)}")
            if len(set(self.choices)) != len(self.choices):
                raise ValueError(f"{self.name}: choices must differ; got {list(self.choices)}")
            return
        if not (math.isfinite(self.low) and math.isfinite(self.high) and self.low < self.high):
            raise ValueError(f"{self.name}: a range needs finite LOW < HIGH; got "
                             f"{self.low}:{self.high}")
        if self.log and self.low <= 0:
            raise ValueError(f"{self.name}: a log range needs LOW > 0; got {self.low}")

    @property
    def size(self) -> int | None:
        """K, the number of choices (None for a range)."""
        return None if self.choices is None else len(self.choices)

    def value(self, unit: np.ndarray) -> np.ndarray:
        """Values (float64) of unit coordinates (host)."""
        unit = np.clip(np.asarray(unit, np.float64), 0.0, 1.0)
        if self.choices is not None:
            index = np.minimum((unit * len(self.choices)).astype(np.int64), len(self.choices) - 1)
            return np.asarray(self.choices, np.float64)[index]
        if self.log:
            low, high = math.log(self.low), math.log(self.high)
            return np.exp(low + unit * (high - low))
        return self.low + unit * (self.high - self.low)

    def spec(self) -> str:
        """The command line's form: ``LOW:HIGH``, ``LOW:HIGH:log`` or ``A,B,C``."""
        if self.choices is not None:
            return ",".join(repr(float(c)) for c in self.choices)
        return f"{float(self.low)!r}:{float(self.high)!r}" + (":log" if self.log else "")


def _last_axis(per_dimension: np.ndarray, like: jax.Array) -> jax.Array:
    """(H,) numbers shaped to broadcast along the last axis of ``like`` (..., H)."""
    return jnp.asarray(per_dimension).reshape((1,) * (jnp.ndim(like) - 1) + (-1,))


@dataclasses.dataclass(frozen=True)
class HyperSpace:
    """H searched numbers (``Dimension``), static and hashable; functions of unit
    coordinates (H,) are jittable and vmappable unless marked host."""

    dimensions: tuple[Dimension, ...]

    def __post_init__(self):
        names = [d.name for d in self.dimensions]
        if not names:
            raise ValueError("a hyper-parameter space needs at least one dimension")
        if len(set(names)) != len(names):
            raise ValueError(f"hyper-parameter names must differ; got {', '.join(names)}")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(d.name for d in self.dimensions)

    @property
    def size(self) -> int:
        """H."""
        return len(self.dimensions)

    def _sizes(self) -> np.ndarray:
        """(H,) K per dimension, 0 for ranges."""
        return np.asarray([d.size or 0 for d in self.dimensions], np.int32)

    def snap(self, units: jax.Array) -> jax.Array:
        """Units (..., H) with each discrete coordinate at the centre of its choice's bin,
        so that equal choices have equal coordinates."""
        sizes = self._sizes()
        k = _last_axis(np.maximum(sizes, 1).astype(np.float32), units)
        centre = (jnp.minimum(jnp.floor(units * k), k - 1) + 0.5) / k
        return jnp.where(_last_axis(sizes > 0, units), centre, jnp.clip(units, 0.0, 1.0))

    def sample(self, key: jax.Array, n: int) -> jax.Array:
        """(n, H) float32 uniform unit coordinates (discrete ones snapped)."""
        return self.snap(jax.random.uniform(key, (n, self.size), jnp.float32))

    def mutate(self, key: jax.Array, units: jax.Array, dimension: jax.Array) -> jax.Array:
        """Units (H,) with ``dimension`` (a traced index) moved: a range by a Gaussian step
        of ``MUTATION_SCALE`` reflected into [0, 1], a choice to another one uniformly."""
        k_step, k_choice = jax.random.split(key)
        sizes = jnp.asarray(self._sizes())
        current = units[dimension]
        moved = jnp.abs(current + MUTATION_SCALE * jax.random.normal(k_step))
        moved = 1.0 - jnp.abs(1.0 - jnp.minimum(moved, 2.0))
        k = jnp.maximum(sizes[dimension], 1)
        index = jnp.minimum(jnp.floor(current * k), k - 1).astype(jnp.int32)
        shift = jax.random.randint(k_choice, (), 1, jnp.maximum(k, 2))
        other = ((index + jnp.where(k > 1, shift, 0)) % k + 0.5) / k
        return units.at[dimension].set(jnp.where(sizes[dimension] > 0, other, moved))

    def feature_width(self) -> int:
        return int(sum(d.size or 1 for d in self.dimensions))

    def features(self, units: jax.Array) -> jax.Array:
        """(F,) predictor features of units (H,): a range's coordinate, a one-hot of a
        choice."""
        parts = []
        for i, d in enumerate(self.dimensions):
            if d.size is None:
                parts.append(units[i:i + 1])
            else:
                index = jnp.minimum(jnp.floor(units[i] * d.size), d.size - 1).astype(jnp.int32)
                parts.append(jax.nn.one_hot(index, d.size))
        return jnp.concatenate(parts)

    def bin_counts(self, resolution: int) -> np.ndarray:
        """(H,) categories per dimension of a categorical controller: K choices, or
        ``resolution`` equal bins of a range."""
        return np.asarray([d.size or resolution for d in self.dimensions], np.int32)

    def from_bins(self, bins: jax.Array, resolution: int) -> jax.Array:
        """Units (..., H) at the centres of categories ``bins`` (..., H) int."""
        counts = _last_axis(self.bin_counts(resolution).astype(np.float32), bins)
        return (bins.astype(jnp.float32) + 0.5) / counts

    def to_bins(self, units: jax.Array, resolution: int) -> jax.Array:
        """The categories (..., H) int32 of units (..., H)."""
        counts = _last_axis(self.bin_counts(resolution).astype(np.float32), units)
        return jnp.minimum(jnp.floor(units * counts), counts - 1).astype(jnp.int32)

    def neighbours(self, units: np.ndarray) -> np.ndarray:
        """(Q, H) unit coordinates one move from units (H,) (host): a range
        ``NEIGHBOUR_STEP`` down and up (inside [0, 1]), a choice to each other one."""
        units = np.asarray(units, np.float32)
        rows = []
        for i, d in enumerate(self.dimensions):
            if d.size is None:
                targets = [units[i] - NEIGHBOUR_STEP, units[i] + NEIGHBOUR_STEP]
                targets = [t for t in targets if 0.0 <= t <= 1.0]
            else:
                own = min(int(units[i] * d.size), d.size - 1)
                targets = [(j + 0.5) / d.size for j in range(d.size) if j != own]
            for target in targets:
                row = units.copy()
                row[i] = target
                rows.append(row)
        return np.asarray(rows, np.float32).reshape(-1, self.size)

    def values(self, units: np.ndarray) -> np.ndarray:
        """(..., H) float32 values of unit coordinates (..., H) (host): what a candidate
        trains with, rounded to float32."""
        units = np.asarray(units)
        columns = [d.value(units[..., i]) for i, d in enumerate(self.dimensions)]
        return np.stack(columns, -1).astype(np.float32)

    def describe(self, units: np.ndarray) -> dict[str, float]:
        """{name: value} of one member's units (H,) (host), each value the shortest
        decimal of its float32."""
        return {name: float(str(v)) for name, v in zip(self.names, self.values(units),
                                                       strict=True)}


def identity(genome) -> Arch:
    """An ``Arch`` whose exact equality (``same``, ``repeats``) is the genome's: a plain
    population passes through; a pair (archs, units) gets the units' bits appended to
    the ops."""
    if isinstance(genome, Arch):
        return genome
    archs, units = genome
    return Arch(adj=archs.adj, ops=jnp.concatenate(
        [archs.ops, jax.lax.bitcast_convert_type(units, jnp.int32)], -1))


@dataclasses.dataclass(frozen=True)
class JointSpace:
    """Genome pairs (arch, units (H,)) behind the space's interface, for strategies that
    only sample, mutate and enumerate: a mutation moves the architecture or one
    hyper-parameter, each of the H + 1 equally likely."""

    space: Space
    hyper: HyperSpace

    def sample_one(self, key: jax.Array):
        k_arch, k_units = jax.random.split(key)
        return self.space.sample_one(k_arch), self.hyper.sample(k_units, 1)[0]

    def sample(self, key: jax.Array, n: int):
        return jax.vmap(self.sample_one)(jax.random.split(key, n))

    def mutate(self, key: jax.Array, genome):
        arch, units = genome
        k_gene, k_arch, k_units = jax.random.split(key, 3)
        gene = jax.random.randint(k_gene, (), 0, self.hyper.size + 1)
        new_arch = self.space.mutate(k_arch, arch)
        new_units = self.hyper.mutate(k_units, units, jnp.maximum(gene - 1, 0))
        arch = jax.tree_util.tree_map(lambda a, b: jnp.where(gene == 0, a, b), new_arch, arch)
        return arch, jnp.where(gene == 0, units, new_units)

    def neighbours(self, genome):
        """Host: the architecture's neighbours at the same units, then the units'
        neighbours with the same architecture."""
        arch, units = genome
        archs = self.space.neighbours(arch)
        moved = self.hyper.neighbours(units)
        count = len(np.asarray(archs.ops))
        same_arch = jax.tree_util.tree_map(
            lambda leaf: np.broadcast_to(np.asarray(leaf), (len(moved),) + np.shape(leaf)), arch)
        joint_archs = jax.tree_util.tree_map(lambda a, b: np.concatenate([np.asarray(a), b]),
                                             archs, same_arch)
        joint_units = np.concatenate([np.broadcast_to(np.asarray(units, np.float32),
                                                      (count, self.hyper.size)), moved])
        return joint_archs, joint_units
