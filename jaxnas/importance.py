"""Which ops, positions and edges go with a low validation loss in a run's evaluations.

Each evaluated architecture becomes three groups of features, read from its JSON
form (nodes off every input -> output path are left out, as the network ignores them):

- ``op``: how many nodes carry each op;
- ``position``: whether node i carries op k (for NAS-Bench-201, whether cell edge
  j<-i does);
- ``edge``: how many edges run from a node with op a to a node with op b (input and
  output included);
- ``hyperparameter`` (joint searches): each searched training number (its log10 where
  its values span a decade or more, all positive) in standard deviations from its mean
  over the evaluations, and the square of that, whose positive effect says the loss is
  lowest inside the range searched.

One ridge regression per group fits the validation loss on that group's features, so
an op's effect is not split with the positions that hold it. Its penalty is the one
with the smallest leave-one-out error, and runs that mix fidelities (successive
halving) get one extra column per step count, fitted but not reported. An effect is
the change in validation loss that goes with one more node (or edge) of that feature,
the others held fixed: negative is good. 200 bootstrap refits of the same model give
a 90% interval. Everything here is a pure function of its arguments.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from jaxnas.arch import NB201_EDGES, live_mask

ARCH_KINDS = ("op", "position", "edge")
KINDS = (*ARCH_KINDS, "hyperparameter")
MIN_EVALUATIONS = 5
_ALPHAS = np.logspace(-3, 3, 13)


def position_labels(num_nodes: int, edge_labelled: bool) -> list[str]:
    """A readable name for each node index: NAS-Bench-201 edges, else ``node i``."""
    if edge_labelled and num_nodes == len(NB201_EDGES) + 2:
        inner = [f"edge {target}<-{source}" for target, source in NB201_EDGES]
        return ["input", *inner, "output"]
    return [f"node {i}" for i in range(num_nodes)]


def arch_features(archs: Sequence[Mapping], op_names: Sequence[str],
                  edge_labelled: bool = False) -> dict[str, tuple[np.ndarray, list[str]]]:
    """The three feature groups of architectures in their JSON form.

    Returns:
      kind -> (matrix (E, F_kind) float64, the F_kind feature names); only features
      that vary across the E architectures and that at least two of them have are kept.
    """
    ops = list(op_names)
    ends = ["input", *ops, "output"]
    rows: dict[str, list[dict[str, float]]] = {kind: [] for kind in ARCH_KINDS}
    for arch in archs:
        nodes = arch["nodes"]
        adj = np.zeros((len(nodes), len(nodes)), np.int8)
        for source, target in arch["edges"]:
            adj[source, target] = 1
        live = live_mask(adj)
        live = np.zeros(len(nodes), bool) if live is None else live
        labels = position_labels(len(nodes), edge_labelled)
        op_row: dict[str, float] = {}
        position_row: dict[str, float] = {}
        for node in np.flatnonzero(live[1:-1]) + 1:
            name = nodes[node]
            op_row[name] = op_row.get(name, 0.0) + 1
            position_row[f"{labels[node]}: {name}"] = 1.0
        edge_row: dict[str, float] = {}
        for source, target in arch["edges"]:
            if live[source] and live[target]:
                pair = f"{nodes[source]} -> {nodes[target]}"
                edge_row[pair] = edge_row.get(pair, 0.0) + 1
        rows["op"].append(op_row)
        rows["position"].append(position_row)
        rows["edge"].append(edge_row)
    order = {
        "op": ops,
        "position": [f"{label}: {op}" for label in position_labels(
            max((len(a["nodes"]) for a in archs), default=0), edge_labelled) for op in ops],
        "edge": [f"{a} -> {b}" for a in ends for b in ends],
    }
    groups = {}
    for kind in ARCH_KINDS:
        seen = set().union(*rows[kind]) if rows[kind] else set()
        names = [name for name in order[kind] if name in seen]
        matrix = np.array([[row.get(name, 0.0) for name in names] for row in rows[kind]],
                          np.float64).reshape(len(archs), len(names))
        # A feature seen in one evaluation only would just fit that evaluation's residual.
        keep = (matrix.std(0) > 0) & ((matrix > 0).sum(0) >= 2)
        groups[kind] = (matrix[:, keep], [n for n, k in zip(names, keep, strict=True) if k])
    return groups


def hyperparameter_features(evaluations: Sequence[Mapping]) -> tuple[np.ndarray, list[str]]:
    """(E, 2H) features of the training numbers of a joint search's evaluations (records'
    ``hyperparameters``; none: (E, 0)): per number, its value or log10 standardised over
    the evaluations, then the square of that; constant ones are left out."""
    names = sorted({name for e in evaluations for name in (e.get("hyperparameters") or {})})
    columns, labels = [], []
    for name in names:
        values = np.array([float((e.get("hyperparameters") or {}).get(name, np.nan))
                           for e in evaluations], np.float64)
        if not np.isfinite(values).all() or values.std() == 0:
            continue
        if values.min() > 0 and values.max() >= 10 * values.min():
            values, name = np.log10(values), f"log10 {name}"
        standard = (values - values.mean()) / values.std()
        columns += [standard, standard ** 2]
        labels += [f"{name} (sd)", f"{name} (sd)^2"]
    matrix = np.stack(columns, 1) if columns else np.zeros((len(evaluations), 0))
    return matrix, labels


def _centre(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return x - x.mean(0), y - y.mean()


def _ridge(x: np.ndarray, y: np.ndarray, alpha: float) -> np.ndarray:
    """(F,) coefficients of a ridge fit with an unpenalised intercept."""
    xc, yc = _centre(x, y)
    return np.linalg.solve(xc.T @ xc + alpha * np.eye(x.shape[1]), xc.T @ yc)


def loo_error(x: np.ndarray, y: np.ndarray, alpha: float) -> float:
    """Mean squared leave-one-out error of the ridge fit (closed form, via the SVD)."""
    xc, yc = _centre(x, y)
    u, s, _ = np.linalg.svd(xc, full_matrices=False)
    shrink = s**2 / (s**2 + alpha)
    fitted = u @ (shrink * (u.T @ yc))
    # Below 1 so that a point the fit interpolates gives a large, finite error.
    leverage = np.minimum(1.0 / len(y) + (u**2 * shrink).sum(1), 1.0 - 1e-6)
    return float(np.mean(((yc - fitted) / (1.0 - leverage)) ** 2))


def ridge_effects(x: np.ndarray, y: np.ndarray, *, rng: np.random.Generator,
                  reported: int | None = None, bootstrap: int = 200) -> dict:
    """Ridge effects of the columns of x on y, with bootstrap intervals.

    Args:
      x: (E, F) features; only the first ``reported`` columns are reported (the rest,
        e.g. fidelity indicators, are fitted as covariates).
      y: (E,) the target.
      rng: numpy generator for the bootstrap resamples.
      bootstrap: refits on resampled evaluations.

    Returns:
      {"effect", "low", "high": (reported,) arrays (5% and 95% bootstrap quantiles),
      "alpha": the penalty, "r2": leave-one-out R^2 (1 - LOO error / variance of y)}.
    """
    reported = x.shape[1] if reported is None else reported
    errors = [loo_error(x, y, alpha) for alpha in _ALPHAS]
    alpha = float(_ALPHAS[int(np.argmin(errors))])
    effect = _ridge(x, y, alpha)[:reported]
    draws = np.empty((bootstrap, reported))
    for b in range(bootstrap):
        index = rng.integers(0, len(y), len(y))
        draws[b] = _ridge(x[index], y[index], alpha)[:reported]
    low, high = np.quantile(draws, [0.05, 0.95], axis=0)
    variance = float(np.var(y))
    r2 = 1.0 - min(errors) / variance if variance > 0 else 0.0
    return {"effect": effect, "low": low, "high": high, "alpha": alpha, "r2": r2}


def run_importance(evaluations: Sequence[Mapping], op_names: Sequence[str], *,
                   edge_labelled: bool = False, seed: int = 0,
                   bootstrap: int = 200) -> dict | None:
    """Importance of ops, positions, edges and searched training numbers for a run's
    evaluations.

    Args:
      evaluations: log records (mappings with ``arch`` in JSON form, ``val_loss``,
        ``steps`` and, in a joint search, ``hyperparameters``). A non-finite loss (a
        diverged candidate) counts as the worst finite one.
      op_names: the space's op names.
      edge_labelled: the space is NAS-Bench-201's (positions are named by cell edge).
      seed: seed of the bootstrap resamples.
      bootstrap: refits per group for the intervals.

    Returns:
      None with fewer than ``MIN_EVALUATIONS`` finite evaluations; else a JSON-ready
      dict: ``model``, ``target``, ``evaluations``, ``bootstrap``, ``groups`` (per kind:
      ``alpha`` and leave-one-out ``r2``) and ``features``, a list of ``{"kind", "name",
      "effect", "low", "high", "frequency"}`` sorted by effect, best (most negative)
      first; ``frequency`` is the share of evaluations that have the feature.
    """
    loss = np.array([float(e["val_loss"]) for e in evaluations], np.float64)
    finite = np.isfinite(loss)
    if finite.sum() < MIN_EVALUATIONS:
        return None
    loss = np.where(finite, loss, loss[finite].max())
    steps = np.array([int(e["steps"]) for e in evaluations])
    levels = np.unique(steps)
    fidelity = (steps[:, None] == levels[None, 1:]).astype(np.float64)
    rng = np.random.default_rng(seed)
    groups, features = {}, []
    feature_groups = arch_features([e["arch"] for e in evaluations], op_names, edge_labelled)
    feature_groups["hyperparameter"] = hyperparameter_features(evaluations)
    for kind, (matrix, names) in feature_groups.items():
        if not names:
            continue
        fit = ridge_effects(np.concatenate([matrix, fidelity], 1), loss, rng=rng,
                            reported=len(names), bootstrap=bootstrap)
        groups[kind] = {"alpha": fit["alpha"], "r2": round(fit["r2"], 4)}
        # Every evaluation has every searched number.
        frequency = np.ones(len(names)) if kind == "hyperparameter" else (matrix > 0).mean(0)
        for i, name in enumerate(names):
            features.append({"kind": kind, "name": name,
                             "effect": round(float(fit["effect"][i]), 6),
                             "low": round(float(fit["low"][i]), 6),
                             "high": round(float(fit["high"][i]), 6),
                             "frequency": round(float(frequency[i]), 4)})
    features.sort(key=lambda f: (f["effect"], f["kind"], f["name"]))
    return {"model": "ridge", "target": "val_loss", "evaluations": len(evaluations),
            "bootstrap": bootstrap, "groups": groups, "features": features}


__all__ = ["KINDS", "MIN_EVALUATIONS", "arch_features", "hyperparameter_features", "loo_error",
           "position_labels", "ridge_effects", "run_importance"]
