"""The search driver and its run directory: ``search``, ``load`` and what they return.

A module per job: ``config`` (``SearchConfig``, records, results), ``context``
(building a strategy from the context every factory is offered), ``run`` (one
generation: ask, train, tell; the ``Snapshot`` it gives and takes), ``driver``
(the loop, the final retraining), ``rundir`` (``RunDir``, the one owner of the run
directory: file names, lock, log, checkpoint, outputs), ``checkpoint`` (snapshots
by field path, format versions), ``logfile`` (the log's lines), ``outputs`` (what
a finished search leaves), ``hyper`` (the training numbers a joint search declares),
``one_shot`` (DARTS as a strategy), ``plots``, ``predictor`` (a trained model read
back) and ``tracking`` (the records for TensorBoard's HParams dashboard or an MLflow
store, ``search(track=...)``). ``jaxnas.search`` on the top-level
package is the ``search`` function; import the other names from here
(``from jaxnas.search import read_log``).
"""

from jaxnas import strategies as _strategies
from jaxnas.search.checkpoint import Snapshot
from jaxnas.search.config import (
    OBJECTIVE_WEIGHTS,
    OBJECTIVES,
    Record,
    SearchConfig,
    SearchError,
    SearchInterrupted,
    SearchResult,
    SettingError,
    describe_hyperparameters,
    flag_name,
    flag_of,
    rank_stability,
    unknown_space_hint,
)
from jaxnas.search.driver import search
from jaxnas.search.one_shot import darts as _darts
from jaxnas.search.predictor import Predictor, load
from jaxnas.search.rundir import (
    RunDir,
    RunDirectoryError,
    atomic_write,
    read_log,
    write_plots,
)

__all__ = ["OBJECTIVES", "OBJECTIVE_WEIGHTS", "Predictor", "Record", "RunDir",
           "RunDirectoryError", "SearchConfig", "SearchError", "SearchInterrupted",
           "SearchResult", "SettingError", "Snapshot", "atomic_write", "describe_hyperparameters",
           "flag_name", "flag_of", "load", "rank_stability", "read_log", "search",
           "unknown_space_hint", "write_plots"]

# DARTS trains on the search's data, so it joins the strategies from this layer.
_strategies.register("darts", _darts)
