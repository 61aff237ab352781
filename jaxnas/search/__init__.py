"""The search driver and its run directory: ``search``, ``load`` and what they return.

A module per job: ``config`` (``SearchConfig``, records, results), ``context``
(building a strategy from the context every factory is offered), ``run`` (one
generation: ask, train, tell), ``driver`` (the loop, the final retraining),
``rundir`` (run directory, lock, checkpoint), ``one_shot`` (DARTS as a strategy),
``plots`` and ``predictor`` (a trained model read back). ``jaxnas.search`` on the top-level
package is the ``search`` function; import the other names from here
(``from jaxnas.search import read_log``).
"""

from jaxnas import strategies as _strategies
from jaxnas.search.config import (
    OBJECTIVE_WEIGHTS,
    OBJECTIVES,
    Record,
    SearchConfig,
    SearchError,
    SearchInterrupted,
    SearchResult,
)
from jaxnas.search.driver import search
from jaxnas.search.one_shot import darts as _darts
from jaxnas.search.plots import write_plots
from jaxnas.search.predictor import Predictor, load
from jaxnas.search.rundir import read_log

__all__ = ["OBJECTIVES", "OBJECTIVE_WEIGHTS", "Predictor", "Record", "SearchConfig",
           "SearchError", "SearchInterrupted", "SearchResult", "load", "read_log", "search",
           "write_plots"]

# DARTS trains on the search's data, so it joins the strategies from this layer.
_strategies.register("darts", _darts)
