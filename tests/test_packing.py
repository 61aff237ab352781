"""The accelerator program's packer against brute force: its fill condition against a
matching of candidates to rows, and its chunks against every choice of chunk templates."""

import functools
import itertools

import jax
import numpy as np

from jaxnas.train import _packing
from jaxnas.train._packing import _assign, _Fits, pack


def _matching_fills(fits: np.ndarray, counts: np.ndarray, chunk: int) -> bool:
    """Whether every candidate gets a row of a chunk it fits: Kuhn's augmenting paths
    over the rows themselves (``chunk`` per chunk)."""
    rows = [t for t in range(len(counts)) for _ in range(chunk * counts[t])]
    owner = [-1] * len(rows)

    def place(candidate, seen):
        for row, template in enumerate(rows):
            if fits[candidate, template] and row not in seen:
                seen.add(row)
                if owner[row] < 0 or place(owner[row], seen):
                    owner[row] = candidate
                    return True
        return False

    return all(place(c, set()) for c in range(len(fits)))


def _slowest(chunks, work, devices, num_chunks):
    """The slowest device's work when ``chunks`` ((members, template)) are dealt."""
    counts = np.bincount([t for _, t in chunks], minlength=len(work))
    return _packing._slowest(counts, np.asarray(work, np.float64), devices, num_chunks)


def _check_chunks(chunks, fits, chunk, limit=None):
    members = np.concatenate([m for m, _ in chunks])
    np.testing.assert_array_equal(np.sort(members), np.arange(len(fits)))
    for m, t in chunks:
        assert 0 < len(m) <= chunk and fits[m, t].all()
    assert limit is None or len(chunks) <= limit


def _by_cheapest(fits, work, chunk):
    """A plain packing: each candidate in its cheapest fitting template, whole chunks."""
    own = np.argmin(np.where(fits, work, np.inf), axis=1)
    return [(members[i:i + chunk], t) for t in range(fits.shape[1])
            for members in [np.flatnonzero(own == t)] for i in range(0, len(members), chunk)]


def test_the_fill_condition_is_a_matching_and_assign_finds_one():
    rng = np.random.default_rng(0)
    seen = {True: 0, False: 0}
    for _ in range(400):
        population, chunk = int(rng.integers(1, 14)), int(rng.integers(1, 5))
        fits = rng.random((population, 4)) < 0.45
        counts = rng.integers(0, 3, 4)
        fills = _matching_fills(fits, counts, chunk)
        seen[fills] += 1
        assert _Fits(fits).fillable(counts, chunk) == fills
        if fills:
            chunks = _assign(fits, counts, chunk)
            _check_chunks(chunks, fits, chunk)
            assert (np.bincount([t for _, t in chunks], minlength=4) <= counts).all()
    assert min(seen.values()) > 80, seen


def test_packing_finds_the_best_chunk_templates_of_small_populations():
    """Against every choice of chunk counts that some assignment fills (checked by a
    matching), on random populations: the packer's slowest device is the best there is
    (its search is local, but on these it never stops short)."""
    rng = np.random.default_rng(1)
    work = np.array([9.0, 5.0, 3.0, 1.5])  # template 0 fits everything, as the full one
    devices, num_chunks, chunk = 2, 3, 4
    for _ in range(60):
        population = int(rng.integers(3, 17))
        fits = rng.random((population, 4)) < np.array([1.0, 0.6, 0.4, 0.3])
        start = _by_cheapest(fits, work, chunk)
        if len(start) > devices * num_chunks:
            continue
        packed = pack(fits, work, start, chunk, devices, num_chunks)
        _check_chunks(packed, fits, chunk, devices * num_chunks)
        best = min(
            _slowest([(None, t) for t in range(4) for _ in range(c[t])], work, devices,
                     num_chunks)
            for c in itertools.product(range(devices * num_chunks + 1), repeat=4)
            if 0 < sum(c) <= devices * num_chunks and _matching_fills(fits, np.array(c), chunk))
        found = _slowest(packed, work, devices, num_chunks)
        assert found == best <= _slowest(start, work, devices, num_chunks)


def test_nasbench201_cells_get_the_best_chunk_templates():
    """64 NAS-Bench-201 cells in chunks of 16 on two devices, the trainer's 8 templates:
    the greedy packing left one device with 1.26 times the other's work (a full
    template's chunk against three cheaper ones); the packer's deal is the best over every
    choice of 4 to 6 chunk templates that holds the cells."""
    from test_accelerator import _setup

    from jaxnas.nn import compact
    from jaxnas.train import plan, template_family
    from jaxnas.train._templates import _chunks, signatures

    space, model, _ = _setup("nasbench201")
    family = template_family(model, 8)
    archs = space.sample(jax.random.key(0), 64)
    compacted = jax.vmap(functools.partial(compact, model.layout,
                                           size=model.layout.num_nodes))(archs)
    arrays = tuple(np.asarray(a) for a in (compacted.adj, compacted.ops, compacted.node))
    fits = np.stack([family.fits(s) for s in signatures(model.layout, *arrays[:2])])
    work = family.chunk_work(np.arange(len(family.templates)))
    devices, num_chunks = 2, 6
    placed = plan(family, arrays, devices, num_chunks, 16)
    used = placed.chunk_templates[placed.chunk_templates < len(work)]
    found = _slowest([(None, t) for t in used], work, devices, num_chunks)
    greedy = _slowest(_chunks(family, fits, 16, devices * num_chunks), work, devices,
                      num_chunks)
    fill = _Fits(fits)
    best = min(
        _slowest([(None, t) for t in combo], work, devices, num_chunks)
        for size in (4, 5, 6) for combo in itertools.combinations_with_replacement(
            range(len(work)), size)
        if fill.fillable(np.bincount(combo, minlength=len(work)), 16))
    assert found == best < greedy
