"""Typed slot templates: how the accelerator program runs only each candidate's work.

A vmapped chunk runs the same node program for every candidate in it. The padded
select program gives every node slot the space's largest kernel, so a 1x1
convolution, a pooling node or a skip pays for a 3x3 or 5x5 one. The accelerator
program instead runs a chunk through a **template**: a static sequence of slot
classes (``Layout.slot_classes``: 0 pools only, k runs the linear ops of kernel <= k
on a k-window). A candidate is compacted (skips folded, zero / dead nodes dropped,
``jaxnas.nn.Compact``) and its compute nodes are placed, in one of their topological
orders, into slots of their class or a larger one. The function is the select
program's; the executed work is the template's.

Every chunk picks one template of a small **family** (one branch of a ``lax.switch``
in one compiled program), chosen per space once: a greedy cover, by executed FLOPs,
of architectures the space samples with a fixed key, always holding the full
template (every slot of the largest kernel), which fits every candidate.

All of it is host-side numpy on small arrays: signatures, fits and placements are
cached per distinct compacted graph.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import itertools
from typing import NamedTuple

import numpy as np

from jaxnas.nn import Layout
from jaxnas.train._packing import deal, pack

_MAX_POOL = 4096  # candidate templates enumerated when choosing a family
# A chunk's training step does work besides its convolutions, in every slot whatever its
# class: the node buffer, norms, activations, pools. Profiled in the trainer's program
# (NAS-Bench-201 cells, width 16, chunks of 16, two CPU devices), a chunk's step took
# 7.1 ms per tap plus 17 ms per slot (from 86 ms for (0, 0, 1, 0, 0) to 487 ms for the
# full template; docs/scaling.md): a slot's fixed part is worth 2.4 taps.
_SLOT_FIXED_TAPS = 2.4


@dataclasses.dataclass(frozen=True)
class Signature:
    """A compacted candidate's compute nodes in slot order: their classes and, per
    node, the bit mask of the earlier nodes it reads."""

    classes: tuple[int, ...]
    preds: tuple[int, ...]


def signatures(layout: Layout, adj: np.ndarray, ops: np.ndarray) -> list[Signature]:
    """Signatures of compacted candidates (``Compact`` host arrays adj (P, K, K), ops
    (P, K) with their compute nodes in consecutive slots from ``first_node``)."""
    first = layout.first_node
    op_class = np.asarray(layout.op_class + (-1,))  # -1 (empty) indexes the last entry
    result = []
    for a, o in zip(adj, ops, strict=True):
        count = int((o[first:-1] >= 0).sum())
        classes = tuple(int(c) for c in op_class[o[first:first + count]])
        reads = a[first:first + count, first:first + count] != 0
        preds = tuple(int(sum(1 << j for j in np.flatnonzero(reads[:, i])))
                      for i in range(count))
        result.append(Signature(classes, preds))
    return result


def _next_slots(templates: np.ndarray, num_classes: int) -> np.ndarray:
    """(T, L + 2, C) int: for each template (class ranks, -1 past its end), start
    position p and class rank c, one past the first slot at or after p whose class rank
    is >= c (L + 1: none)."""
    count, length = templates.shape
    table = np.full((count, length + 2, num_classes), length + 1, np.int64)
    for p in range(length - 1, -1, -1):
        table[:, p] = table[:, p + 1]
        for c in range(num_classes):
            table[:, p, c] = np.where(templates[:, p] >= c, p + 1, table[:, p, c])
    return table


def _fits(signature: Signature, table: np.ndarray, rank: dict[int, int]) -> np.ndarray:
    """(T,) bool: whether the signature's nodes embed, in some topological order, into
    each template of ``table`` (``_next_slots``).

    Placing nodes leftmost, the state after a set of placed nodes is only the last
    position used, and an earlier one is never worse; so a DP over the sets of placed
    nodes (closed under predecessors) is exact.
    """
    m = len(signature.classes)
    end = {0: np.zeros(table.shape[0], np.int64)}
    for mask in range(1, 1 << m):
        best = None
        for v in range(m):
            rest = mask & ~(1 << v)
            # rest is a reachable state, so closed under predecessors: v reads only it.
            if not mask >> v & 1 or rest not in end or signature.preds[v] & ~rest:
                continue
            position = np.minimum(end[rest], table.shape[1] - 1)
            reached = table[np.arange(table.shape[0]), position, rank[signature.classes[v]]]
            best = reached if best is None else np.minimum(best, reached)
        if best is not None:
            end[mask] = best
    return end[(1 << m) - 1] <= table.shape[1] - 2


def place(signature: Signature, template: tuple[int, ...],
          rank: dict[int, int]) -> tuple[int, ...] | None:
    """The template position of each node (leftmost, in the first topological order
    that fits), or None if the signature does not fit the template."""
    m = len(signature.classes)

    @functools.cache
    def search(placed: int, start: int) -> tuple[int, ...] | None:
        if placed == (1 << m) - 1:
            return ()
        for v in range(m):
            if placed >> v & 1 or signature.preds[v] & ~placed:
                continue
            for p in range(start, len(template)):
                if rank[template[p]] >= rank[signature.classes[v]]:
                    rest = search(placed | 1 << v, p + 1)
                    if rest is not None:
                        return ((v, p),) + rest
                    break
        return None

    found = search(0, 0)
    if found is None:
        return None
    positions = dict(found)
    return tuple(positions[v] for v in range(m))


def slot_cost(layout: Layout, kernel: int) -> int:
    """Taps of one slot of class ``kernel`` (its executed matmul work per channel pair)."""
    return kernel ** layout.rank if kernel else 0


@dataclasses.dataclass(frozen=True, eq=False)
class Family:
    """The templates of one layout's accelerator program and the fits of signatures.

    Attributes:
      layout: the model layout (classes, kernels).
      templates: the templates, the full one (every slot of the largest class) first.
    """

    layout: Layout
    templates: tuple[tuple[int, ...], ...]

    @functools.cached_property
    def _rank(self) -> dict[int, int]:
        return {c: i for i, c in enumerate(self.layout.slot_classes)}

    @functools.cached_property
    def _table(self) -> np.ndarray:
        return _next_slots(_as_array(self.templates, self.layout, self._rank),
                           len(self._rank))

    @functools.cached_property
    def costs(self) -> np.ndarray:
        """(T,) taps executed per template."""
        return np.array([sum(slot_cost(self.layout, k) for k in t) for t in self.templates])

    def chunk_work(self, templates: np.ndarray) -> np.ndarray:
        """The work of chunks of ``templates`` that the plan balances over the devices, in
        taps: each template's taps plus a fixed part per slot (``_SLOT_FIXED_TAPS``)."""
        slots = np.array([len(t) for t in self.templates])
        return self.costs[templates] + _SLOT_FIXED_TAPS * slots[templates]

    @functools.lru_cache(maxsize=65536)  # noqa: B019 (one family per layout, kept for good)
    def fits(self, signature: Signature) -> np.ndarray:
        """(T,) bool: the templates ``signature`` fits."""
        return _fits(signature, self._table, self._rank)

    @functools.lru_cache(maxsize=65536)  # noqa: B019
    def place(self, signature: Signature, template: int) -> tuple[int, ...]:
        return place(signature, self.templates[template], self._rank)


def _as_array(templates, layout: Layout, rank: dict[int, int]) -> np.ndarray:
    """Templates as (T, M) class ranks, -1 past each template's end."""
    out = np.full((len(templates), layout.num_stacked), -1, np.int64)
    for i, template in enumerate(templates):
        out[i, :len(template)] = [rank[c] for c in template]
    return out


def choose_family(layout: Layout, sample: list[Signature], size: int) -> Family:
    """At most ``size`` templates: the full template, then greedily the one that lowers
    the sample's executed FLOPs most (each signature in its cheapest fitting template).

    Candidate templates are every class sequence of length <= M when there are at most
    ``_MAX_POOL`` of them, else the signatures' own class sequences.
    """
    classes = layout.slot_classes
    full = (classes[-1],) * layout.num_stacked if classes else ()
    if not classes or size == 1:
        return Family(layout, (full,))
    lengths = range(layout.num_stacked + 1)
    if sum(len(classes) ** n for n in lengths) <= _MAX_POOL:
        pool = [t for n in lengths for t in itertools.product(classes, repeat=n)]
    else:
        pool = sorted({s.classes for s in sample} | {()})
    pool = [t for t in pool if t != full]
    everything = Family(layout, (full, *pool))
    tally = collections.Counter(sample)
    counts = np.array(list(tally.values()))
    fits = np.stack([everything.fits(s) for s in tally])  # (S, T)
    cost = np.where(fits, everything.costs[None, :], np.inf)  # (S, T)
    chosen = [0]
    best = cost[:, 0]
    while len(chosen) < size:
        totals = (np.minimum(best[:, None], cost) * counts[:, None]).sum(0)
        totals[chosen] = np.inf
        pick = int(np.argmin(totals))
        if not totals[pick] < (best * counts).sum():
            break
        chosen.append(pick)
        best = np.minimum(best, cost[:, pick])
    return Family(layout, tuple(everything.templates[i] for i in chosen))


class Plan(NamedTuple):
    """Where the accelerator program runs each candidate of a population.

    Attributes:
      order: (size,) int the population row of each program row (a chunk's padding rows
        repeat its first member, a chunk that runs nothing row 0: their results are
        dropped).
      first: (P,) int each candidate's own program row.
      chunk_templates: (devices * num_chunks,) int32 each chunk's template index;
        ``len(family.templates)`` for a chunk of padding only (it runs nothing).
      archs: the program rows' ``Compact`` host arrays, each candidate's compute nodes
        placed in its chunk's template.
    """

    order: np.ndarray
    first: np.ndarray
    chunk_templates: np.ndarray
    archs: tuple[np.ndarray, np.ndarray, np.ndarray]


def _chunks(family: Family, fits: np.ndarray, chunk: int,
            limit: int) -> list[tuple[np.ndarray, int]]:
    """(members, template) of at most ``limit`` chunks of a population whose fits are
    (P, T).

    Every candidate goes to its cheapest template; each template's group fills whole
    chunks. The remainders, most expensive template first, first take the free rows of
    chunks already open whose template they fit (a free row runs anyway, as padding),
    then open a chunk of their own. Should that need more than ``limit`` chunks, the
    remainders are cut in order of cost instead, each chunk in the cheapest template
    all its members fit (ceil(P / chunk) chunks in all).
    """
    cost = np.where(fits, family.costs[None, :], np.inf)
    own = np.argmin(cost, axis=1)
    chunks = []
    open_chunks: list[tuple[list[int], int]] = []
    for template in np.argsort(-family.costs, kind="stable"):
        members = np.flatnonzero(own == template)
        whole = len(members) // chunk * chunk
        chunks += [(members[i:i + chunk], int(template)) for i in range(0, whole, chunk)]
        rest = list(members[whole:])
        for taken, other in sorted(open_chunks, key=lambda c: family.costs[c[1]]):
            fitting = [m for m in rest if fits[m, other]][:chunk - len(taken)]
            taken.extend(fitting)
            rest = [m for m in rest if m not in set(fitting)]
        if rest:
            open_chunks.append((rest, int(template)))
    if len(chunks) + len(open_chunks) <= limit:
        return chunks + [(np.asarray(taken, np.int64), template)
                         for taken, template in open_chunks]
    rest = np.asarray(sorted((m for taken, _ in open_chunks for m in taken),
                             key=lambda m: (family.costs[own[m]], own[m])), np.int64)
    for i in range(0, len(rest), chunk):
        members = rest[i:i + chunk]
        common = np.where(fits[members].all(0), family.costs, np.inf)
        chunks.append((members, int(np.argmin(common))))
    return chunks


def plan(family: Family, archs: tuple[np.ndarray, np.ndarray, np.ndarray],
         devices: int, num_chunks: int, chunk: int) -> Plan:
    """Packs compacted candidates (host ``Compact`` arrays adj (P, K, K), ops (P, K),
    node (P, K), compute nodes in consecutive slots) into ``devices * num_chunks``
    chunks of ``chunk`` and places each in its chunk's template. The chunks' templates are
    chosen (``jaxnas.train._packing.pack``, from the greedy ``_chunks``) and dealt to
    the devices so that the slowest device's work (``Family.chunk_work``) is as small as
    the search finds."""
    adj, ops, node = archs
    layout = family.layout
    signature = signatures(layout, adj, ops)
    fits = np.stack([family.fits(s) for s in signature])
    total = devices * num_chunks
    work = family.chunk_work(np.arange(len(family.templates)))
    chunks = pack(fits, work, _chunks(family, fits, chunk, total), chunk, devices, num_chunks)
    idle = len(family.templates)
    slot_of = deal(work[[template for _, template in chunks]], devices, num_chunks)
    order = np.zeros(total * chunk, np.int64)
    own_row = np.zeros(len(adj), np.int64)
    chunk_templates = np.full(total, idle, np.int32)
    placed_adj = np.zeros((total * chunk,) + adj.shape[1:], adj.dtype)
    placed_ops = np.full((total * chunk,) + ops.shape[1:], -1, ops.dtype)
    placed_node = np.zeros((total * chunk,) + node.shape[1:], node.dtype)
    first, size = layout.first_node, adj.shape[-1]
    for (members, template), slot in zip(chunks, slot_of, strict=True):
        chunk_templates[slot] = template
        rows = slot * chunk + np.arange(chunk)
        order[rows] = np.r_[members, members[:1].repeat(chunk - len(members))]
        own_row[members] = rows[:len(members)]
        for row, member in zip(rows, order[rows], strict=True):
            # Its slots `kept` go to `where`: the compute nodes to their template
            # positions; the input, the output and a chain's input layer stay.
            count = len(signature[member].classes)
            kept = np.r_[np.arange(first + count), size - 1]
            where = np.r_[np.arange(first), first + np.asarray(
                family.place(signature[member], template), np.int64), size - 1]
            placed_adj[row][np.ix_(where, where)] = adj[member][np.ix_(kept, kept)]
            placed_ops[row][where] = ops[member][kept]
            placed_node[row][where] = node[member][kept]
    return Plan(order, own_row, chunk_templates, (placed_adj, placed_ops, placed_node))
