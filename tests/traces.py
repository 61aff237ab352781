"""``programs_traced_once``: an autouse fixture for modules that claim one compilation
per population shape, proved with ``chex.assert_max_traces``."""

import functools
import itertools

import chex
import jax
import pytest

from jaxnas.train import _programs


@pytest.fixture(scope="module", autouse=True)
def programs_traced_once():
    """Every training and evaluation program built in this module is traced once, whatever
    populations it then trains or evaluates: ``chex.assert_max_traces`` raises on a second
    trace. The programs are built anew here (fresh caches), each under its own name, as
    chex counts the traces of a function by its name, source and the stack it was
    wrapped from."""
    numbers = itertools.count()

    def counted(fn, **options):
        @functools.wraps(fn)
        def program(*args):
            return fn(*args)

        program.__name__ = f"{fn.__qualname__} #{next(numbers)}"
        return jax.jit(chex.assert_max_traces(program, n=1), **options)

    chex.clear_trace_counter()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_programs, "jit_program", counted)
        for name in ("train_program", "evaluate_program"):
            patch.setattr(_programs, name,
                          functools.lru_cache(getattr(_programs, name).__wrapped__))
        yield
