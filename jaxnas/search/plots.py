"""The plots of a search: best-so-far loss and accuracy against size (PNG)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from jaxnas.search.config import Record


def plot_history(plots: Path, history: list[Record]) -> list[Path]:
    """Writes best-so-far loss against evaluations and time, and accuracy against params
    (PNG) into the directory ``plots`` (created); returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plots.mkdir(exist_ok=True)
    loss = np.array([r.val_loss if math.isfinite(r.val_loss) else np.nan for r in history])
    best = np.fmin.accumulate(np.where(np.isnan(loss), np.inf, loss))
    seconds = np.cumsum([r.seconds for r in history])
    written = []
    for name, x, label in (("best_vs_evaluations.png", np.arange(1, len(best) + 1),
                            "unique evaluations"),
                           ("best_vs_time.png", seconds, "search seconds")):
        fig, ax = plt.subplots(figsize=(5, 3.5))
        ax.plot(x, best, drawstyle="steps-post")
        ax.set_xlabel(label)
        ax.set_ylabel("best validation loss so far")
        fig.tight_layout()
        fig.savefig(plots / name, dpi=100)
        plt.close(fig)
        written.append(plots / name)
    params = np.array([r.params for r in history], float)
    acc = np.array([r.val_acc for r in history])
    front = _pareto_front(params, acc)
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.scatter(params, acc, s=10, alpha=0.6, label="evaluated")
    ax.plot(params[front], acc[front], "r.-", drawstyle="steps-post", label="Pareto front")
    ax.set_xscale("log")
    ax.set_xlabel("parameters")
    ax.set_ylabel("validation accuracy")
    ax.legend()
    fig.tight_layout()
    fig.savefig(plots / "accuracy_vs_params.png", dpi=100)
    plt.close(fig)
    written.append(plots / "accuracy_vs_params.png")
    return written


def _pareto_front(cost: np.ndarray, gain: np.ndarray) -> np.ndarray:
    """Indices, by increasing cost, of points no other point beats in both."""
    order = np.lexsort((-gain, cost))
    front, best = [], -np.inf
    for i in order:
        if gain[i] > best:
            front.append(i)
            best = gain[i]
    return np.array(front, int)
