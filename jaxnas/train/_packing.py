"""Packing a population's candidates into the accelerator program's chunks.

Each chunk runs one template of the family, on all its rows; a candidate may go to any
chunk whose template it fits. Which templates the chunks run decides the program's
time: the devices run their chunks one after another and wait for the slowest at the
end. So the packer chooses how many chunks run each template, keeps the choices that
some assignment of the candidates can fill (Hall's condition), and searches them for the
shortest slowest device (``deal``), then assigns the candidates by a maximum flow.

Host-side numpy on (templates,) counts: the candidates enter only through how many of
them fit each set of templates.
"""

from __future__ import annotations

import collections
import itertools

import numpy as np

# Hall's condition is checked over every set of the templates in use: the search runs
# while at most this many are (2 ** 12 sets); beyond, the greedy packing is kept.
_MAX_SEARCHED_TEMPLATES = 12


def deal(work: np.ndarray, devices: int, num_chunks: int) -> list[int]:
    """The program slot of each chunk: the most expensive first, each to the device with
    the least work so far that has a slot free (devices wait for the slowest at the end
    of a program, so their totals should be even)."""
    load, taken = np.zeros(devices), np.zeros(devices, np.int64)
    slots = [0] * len(work)
    for k in np.argsort(-np.asarray(work), kind="stable"):
        device = int(np.argmin(np.where(taken < num_chunks, load, np.inf)))
        slots[k] = device * num_chunks + int(taken[device])
        load[device] += work[k]
        taken[device] += 1
    return slots


def _slowest(counts: np.ndarray, work: np.ndarray, devices: int, num_chunks: int) -> float:
    """The slowest device's work when chunks of ``counts`` per template are dealt."""
    chunk_work = np.repeat(work, counts)
    load = np.zeros(devices)
    for k, slot in enumerate(deal(chunk_work, devices, num_chunks)):
        load[slot // num_chunks] += chunk_work[k]
    return float(load.max())


def _subset_sums(values: np.ndarray, bits: int) -> np.ndarray:
    """(2 ** bits,) the sum of ``values`` (indexed by bit mask) over each mask's subsets."""
    total = values.astype(np.int64).copy()
    for b in range(bits):
        view = total.reshape(-1, 2, 1 << b)
        view[:, 1] += view[:, 0]
    return total


def _masks(fits: np.ndarray) -> np.ndarray:
    """(P,) int64 each candidate's fitting templates as a bit mask (at most 62)."""
    return (fits.astype(np.int64) << np.arange(fits.shape[1], dtype=np.int64)).sum(1)


class _Fits:
    """How many candidates fit each set of templates exactly: ``masks`` (distinct bit
    masks over the templates) and their ``counts``."""

    def __init__(self, fits: np.ndarray):
        self.masks, self.counts = np.unique(_masks(fits), return_counts=True)

    def fillable(self, counts: np.ndarray, chunk: int) -> bool:
        """Whether ``chunk`` rows per chunk of ``counts`` hold every candidate, each in a
        chunk it fits: for every set S of the templates in use, the candidates that fit
        no template in use outside S number at most S's rows (Hall's condition)."""
        used = np.flatnonzero(counts)
        # Each candidate's mask over the templates in use, as bits 0..len(used)-1.
        own = np.zeros(len(self.masks), np.int64)
        for bit, template in enumerate(used):
            own |= ((self.masks >> template) & 1) << bit
        if (own == 0).any():
            return False
        need = np.zeros(1 << len(used), np.int64)
        np.add.at(need, own, self.counts)
        rows = np.zeros(1 << len(used), np.int64)
        rows[1 << np.arange(len(used))] = chunk * counts[used]
        return bool((_subset_sums(need, len(used)) <= _subset_sums(rows, len(used))).all())


def _moves(templates: int):
    """Changes to the chunk counts, single ones first: one chunk changes template, goes
    or comes (-1: no template); then two such changes at once."""
    single = [(a, b) for a in range(-1, templates) for b in range(-1, templates) if a != b]
    return [(move,) for move in single], list(itertools.combinations(single, 2))


def _search(counts: np.ndarray, work: np.ndarray, fits: _Fits, chunk: int, devices: int,
            num_chunks: int) -> np.ndarray:
    """Local search from ``counts``: the change (single ones first) that shortens the
    slowest device most, then the total work, while one does."""
    def score(c):
        return _slowest(c, work, devices, num_chunks), float(c @ work)

    best, stages = score(counts), _moves(len(work))
    while True:
        found = None
        for moves in stages:
            for move in moves:
                trial = counts.copy()
                for a, b in move:
                    if a >= 0:
                        trial[a] -= 1
                    if b >= 0:
                        trial[b] += 1
                if ((trial < 0).any() or not 0 < trial.sum() <= devices * num_chunks
                        or (trial > 0).sum() > _MAX_SEARCHED_TEMPLATES):
                    continue
                # No device does less than its share, nor less than the largest chunk.
                if max(trial @ work / devices, work[trial > 0].max()) > best[0]:
                    continue
                value = score(trial)
                if value < (best if found is None else found[0]) and fits.fillable(trial,
                                                                                   chunk):
                    found = (value, trial)
            if found is not None:
                break
        if found is None:
            return counts
        best, counts = found


def _assign(fits: np.ndarray, counts: np.ndarray, chunk: int) -> list[tuple[np.ndarray, int]]:
    """(members, template) chunks of ``counts`` holding every candidate in a chunk it fits
    (``_Fits.fillable`` must hold): a maximum flow from the candidates to the templates'
    rows by augmenting paths, over the candidates' sets of fitting templates; each
    template's candidates then fill its chunks in order."""
    used = [int(t) for t in np.flatnonzero(counts)]
    room = {t: chunk * int(counts[t]) for t in used}
    # held[t][mask]: the candidates in template t that fit the templates of ``mask``.
    held: dict[int, dict[int, list[int]]] = {t: collections.defaultdict(list) for t in used}
    for candidate, mask in enumerate(_masks(fits).tolist()):
        # Breadth-first search for a template with room, moving candidates on the way.
        parent = {t: None for t in used if mask >> t & 1}
        queue = collections.deque(parent)
        while queue:
            t = queue.popleft()
            if room[t] > 0:
                break
            for other, members in held[t].items():
                for u in used:
                    if members and other >> u & 1 and u not in parent:
                        parent[u] = (t, other)
                        queue.append(u)
        else:
            raise AssertionError("the chunk counts cannot hold the population")
        room[t] -= 1
        while parent[t] is not None:  # a candidate of set `other` moves from source to t
            source, other = parent[t]
            held[t][other].append(held[source][other].pop())
            t = source
        held[t][mask].append(candidate)
    chunks = []
    for t in used:
        members = np.sort([m for group in held[t].values() for m in group]).astype(np.int64)
        chunks += [(members[i:i + chunk], t) for i in range(0, len(members), chunk)]
    return chunks


def pack(fits: np.ndarray, work: np.ndarray, start: list[tuple[np.ndarray, int]], chunk: int,
         devices: int, num_chunks: int) -> list[tuple[np.ndarray, int]]:
    """(members, template) chunks for candidates whose fits are (P, T) bool, templates of
    ``work`` (T,), from the packing ``start``: the chunk counts per template that some
    assignment fills and whose deal over ``devices`` (``num_chunks`` each) has the
    least-loaded slowest device that a local search finds; ``start`` when none is better
    or when too many templates are in use to search."""
    counts = np.bincount([t for _, t in start], minlength=len(work))
    if len(work) > 62 or (counts > 0).sum() > _MAX_SEARCHED_TEMPLATES:  # masks are int64
        return start
    better = _search(counts, np.asarray(work, np.float64), _Fits(fits), chunk, devices,
                     num_chunks)
    if (better == counts).all():
        return start
    return _assign(fits, better, chunk)
