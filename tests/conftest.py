"""Strict numerics for every test, one compilation cache for the session (test processes
and the searches they start in subprocesses), and the CLI run in this process."""

import atexit
import os
import shutil
import tempfile
import types

# Tests assert behaviour, and most of their time is XLA compiling small programs: they
# compile without XLA's backend optimisations (more than twice as fast to compile; the
# same semantics). Subprocesses inherit it; benchmarks and users keep the default.
os.environ["XLA_FLAGS"] = " ".join(
    [os.environ.get("XLA_FLAGS", ""), "--xla_backend_optimization_level=0"]).strip()

import jax  # noqa: E402 (after XLA_FLAGS)
import pytest  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")

# Every test process (each xdist worker) and every search that tests start in a
# subprocess share one compilation cache for the whole session, so a program compiled by
# one is loaded by the next (tests/test_compile_cache.py shows the cache changes no
# result). The user's cache is left alone; tests of the cache name their own directory.
SUBPROCESS_CACHE = "JAXNAS_TEST_SUBPROCESS_CACHE"
if not os.environ.get(SUBPROCESS_CACHE):
    os.environ[SUBPROCESS_CACHE] = tempfile.mkdtemp(prefix="jaxnas-test-xla-")
    atexit.register(shutil.rmtree, os.environ[SUBPROCESS_CACHE], ignore_errors=True)
os.environ["JAXNAS_COMPILE_CACHE"] = os.environ[SUBPROCESS_CACHE]
from jaxnas import compile_cache  # noqa: E402

compile_cache.enable(os.environ[SUBPROCESS_CACHE])


@pytest.fixture
def cli_main(capsys):
    """``jaxnas ARGS`` run by ``jaxnas.cli.main`` in this process, for commands that stop
    before training (bad input, reports): no interpreter and JAX start for each.

    Returns a function of the arguments giving (returncode, stdout, stderr) like
    ``subprocess.run``. An exception other than argparse's exit propagates (the console
    script would print a traceback). The console entry itself (``python -m jaxnas.cli``)
    is exercised by the subprocess searches of tests/test_search.py, including their
    one-line errors.
    """
    from jaxnas.cli import main

    def run(*args):
        capsys.readouterr()
        try:
            code = main([str(arg) for arg in args])
        except SystemExit as stop:  # argparse's usage errors
            code = stop.code
        out, err = capsys.readouterr()
        return types.SimpleNamespace(returncode=code, stdout=out, stderr=err)

    return run
