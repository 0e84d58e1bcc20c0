"""Continual-learning metrics from the accuracy matrix, and their plots.

R[i][j] is the accuracy on experience j's evaluation set after training on experiences
0..i (T x T), b[j] the accuracy of the initial model (pretrained backbone, untrained heads)
on experience j. Following Lopez-Paz & Ranzato (2017) and Chaudhry et al. (2018)::

    ACC  = 1/T sum_j R[T-1][j]                          average accuracy at the end
    BWT  = 1/(T-1) sum_{j<T-1} (R[T-1][j] - R[j][j])    backward transfer (< 0: forgetting)
    FWT  = 1/(T-1) sum_{j>0} (R[j-1][j] - b[j])         forward transfer, against the
                                                         initial model
    F    = 1/(T-1) sum_{j<T-1} max_{j<=l<T-1} (R[l][j] - R[T-1][j])   average forgetting

(forgetting takes the best accuracy reached once experience j was learned, l >= j, as
Chaudhry et al. and Avalanche do; rows before j measure an untrained head.)

Díaz-Rodríguez et al. (2018) average over the whole lower (A) / upper triangle instead;
``acc_triangle`` reports their A (mean of R[i][j] for j <= i) too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from lmforge.evaluation.plots import _new_figure, _save


def stream_metrics(matrix: list[list[float]], initial: list[float] | None) -> dict[str, Any]:
    """ACC, BWT, FWT, forgetting and the triangle accuracy A of a full T x T matrix."""
    r = np.asarray(matrix, dtype=np.float64)
    t = r.shape[0]
    out: dict[str, Any] = {"average_accuracy": float(r[-1].mean())}
    if t < 2:
        return out
    out["bwt"] = float(np.mean([r[-1, j] - r[j, j] for j in range(t - 1)]))
    out["forgetting"] = float(np.mean([r[j:t - 1, j].max() - r[-1, j] for j in range(t - 1)]))
    if initial is not None:
        b = np.asarray(initial, dtype=np.float64)
        out["fwt"] = float(np.mean([r[j - 1, j] - b[j] for j in range(1, t)]))
    out["acc_triangle"] = float(np.mean([r[i, j] for i in range(t) for j in range(i + 1)]))
    return out


def format_matrix(names: list[str], matrix: list[list[float]], metrics: dict[str, Any],
                  initial: list[float] | None = None) -> str:
    """The accuracy matrix and the metrics as a plain-text table (rows: after experience)."""
    width = max(8, *(len(n) for n in names))
    head = f"{'after / on':>{width}} " + " ".join(f"{n[:width]:>{width}}" for n in names)
    lines = [head]
    if initial is not None:
        lines.append(f"{'(initial)':>{width}} " + " ".join(f"{v:>{width}.4f}" for v in initial))
    for name, row in zip(names, matrix, strict=False):
        lines.append(f"{name[:width]:>{width}} " + " ".join(f"{v:>{width}.4f}" for v in row))
    for key in ("average_accuracy", "bwt", "fwt", "forgetting"):
        if key in metrics:
            lines.append(f"{key:>18}: {metrics[key]:+.4f}")
    return "\n".join(lines)


def plot_matrix(names: list[str], matrix: list[list[float]], path: Path,
                row_names: list[str] | None = None) -> str:
    """Heat map of R (rows: after training on, columns: evaluated on) as a PNG."""
    r = np.asarray(matrix, dtype=np.float64)
    rows = row_names or names[:r.shape[0]]
    fig = _new_figure(1.2 * len(names) + 2.5, 0.9 * len(rows) + 2.0)
    ax = fig.add_subplot(1, 1, 1)
    image = ax.imshow(r, vmin=0.0, vmax=1.0, cmap="viridis")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
    ax.set_yticks(range(len(rows)), rows)
    ax.set_xlabel("evaluated on")
    ax.set_ylabel("after training on")
    ax.set_title("accuracy matrix R[i][j]")
    for i in range(r.shape[0]):
        for j in range(r.shape[1]):
            ax.text(j, i, f"{r[i, j]:.2f}", ha="center", va="center",
                    color="white" if r[i, j] < 0.6 else "black", fontsize=8)
    return _save(fig, path)


def plot_curves(names: list[str], matrix: list[list[float]], path: Path,
                initial: list[float] | None = None) -> str:
    """Each experience's accuracy over the stream (x: after experience i) as a PNG."""
    r = np.asarray(matrix, dtype=np.float64)
    fig = _new_figure(7.0, 4.2)
    ax = fig.add_subplot(1, 1, 1)
    xs = list(range(r.shape[0]))
    labels = [names[i] for i in xs]
    if initial is not None:
        r = np.vstack([np.asarray(initial)[None, :], r])
        xs = [-1, *xs]
        labels = ["initial", *labels]
    for j, name in enumerate(names):
        ax.plot(xs, r[:, j], marker="o", label=name)
        ax.axvline(j, color="grey", alpha=0.15)
    ax.set_xticks(xs, labels, rotation=30, ha="right")
    ax.set_ylim(0.0, 1.0)
    ax.set_xlabel("after training on")
    ax.set_ylabel("accuracy")
    ax.set_title("accuracy of each experience along the stream")
    ax.legend(fontsize=8, loc="lower left")
    return _save(fig, path)
