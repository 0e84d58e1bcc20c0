"""PNG plots for classification results: confusion matrix, ROC, PR and reliability diagram.

Figures are built on :class:`matplotlib.figure.Figure` with an explicit Agg canvas rather than
through ``pyplot``: that needs no display, never switches the backend of a notebook or GUI that
imported lmforge, and leaves no figure in pyplot's global registry to leak. matplotlib is
imported inside each function so that importing lmforge stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from lmforge.evaluation.classification import _skm, _to_numpy

DPI = 110


def _new_figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Any, path: str | Path) -> str:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    fig.clear()  # drop the artists now instead of waiting for garbage collection
    return str(path)


def plot_confusion_matrix(
    cm: Any, label_names: list[str], path: str | Path, normalize: bool = False
) -> str:
    """Heat map of a confusion matrix (rows = true, cols = predicted).

    Args:
        cm: ``(C, C)`` counts, e.g. ``metrics["confusion_matrix"]``.
        label_names: Class names in matrix order.
        path: Output PNG path (parent folders are created).
        normalize: Show each row as fractions of its true class (recall on the diagonal).

    Returns:
        ``path`` as a string.
    """
    counts = np.asarray(cm, dtype=np.float64)
    values = counts
    if normalize:
        rows = counts.sum(axis=1, keepdims=True)
        values = np.divide(counts, rows, out=np.zeros_like(counts), where=rows > 0)
    n = len(label_names)
    side = min(max(4.0, 0.5 * n + 2.5), 20.0)
    fig = _new_figure(side + 1.0, side)
    ax = fig.add_subplot()
    image = ax.imshow(values, cmap="Blues", vmin=0.0, vmax=1.0 if normalize else None)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ax.set_xticks(range(n), labels=label_names, rotation=45, ha="right")
    ax.set_yticks(range(n), labels=label_names)
    ax.set_xlabel("Predicted label")
    ax.set_ylabel("True label")
    ax.set_title("Confusion matrix" + (" (row-normalized)" if normalize else ""))
    if n <= 30:  # beyond that the numbers overlap and only the colours are readable
        top = values.max() if values.size else 0.0
        for i in range(n):
            for j in range(n):
                text = f"{values[i, j]:.2f}" if normalize else f"{int(counts[i, j])}"
                color = "white" if top and values[i, j] > top / 2 else "black"
                ax.text(j, i, text, ha="center", va="center", color=color, fontsize=8)
    return _save(fig, path)


def _curves(y_true: Any, probs: Any, label_names: list[str], kind: str, path: str | Path) -> str:
    """ROC (``kind="roc"``) or precision-recall (``kind="pr"``) curves, one per class."""
    skm = _skm()

    y = _to_numpy(y_true, np.int64)
    p = _to_numpy(probs, np.float64)
    if p.ndim == 1:
        p = np.stack([1.0 - p, p], axis=1)
    n = p.shape[1]
    onehot = y if y.ndim == 2 else np.eye(n, dtype=np.int64)[y]
    # Binary single-label: one curve for the positive class (class 1), as usually reported.
    if y.ndim == 1 and n == 2:
        series = [(label_names[1], onehot[:, 1], p[:, 1])]
    else:
        series = [(label_names[k], onehot[:, k], p[:, k]) for k in range(n)]
        series.append(("micro-average", onehot.ravel(), p.ravel()))

    fig = _new_figure(6.5, 5.5)
    ax = fig.add_subplot()
    for name, col, score in series:
        if col.min() == col.max():  # a curve needs both positives and negatives
            continue
        style = {"linestyle": "--", "linewidth": 2.0} if name == "micro-average" else {}
        if kind == "roc":
            fpr, tpr, _ = skm.roc_curve(col, score)
            ax.plot(fpr, tpr, label=f"{name} (AUC = {skm.auc(fpr, tpr):.3f})", **style)
        else:
            prec, rec, _ = skm.precision_recall_curve(col, score)
            ap = skm.average_precision_score(col, score)
            ax.step(rec, prec, where="post", label=f"{name} (AP = {ap:.3f})", **style)
    if kind == "roc":
        ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="chance")
        ax.set_xlabel("False positive rate")
        ax.set_ylabel("True positive rate")
        ax.set_title("ROC curve" + ("" if len(series) == 1 else "s (one-vs-rest)"))
        ax.legend(loc="lower right", fontsize=8)
    else:
        ax.set_xlabel("Recall")
        ax.set_ylabel("Precision")
        ax.set_title("Precision-recall curve" + ("" if len(series) == 1 else "s (one-vs-rest)"))
        ax.legend(loc="lower left", fontsize=8)
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_roc_curves(y_true: Any, probs: Any, label_names: list[str], path: str | Path) -> str:
    """ROC curves with AUC in the legend.

    Binary single-label: one curve for class 1. Multi-class: one-vs-rest per class plus the
    micro-average. Multi-label (``y_true`` is ``(N, C)`` 0/1): one per label plus micro.
    Classes with only positives or only negatives are skipped (their curve is undefined).

    Args:
        y_true: ``(N,)`` class ids or ``(N, C)`` 0/1 targets.
        probs: ``(N, C)`` probabilities.
        label_names: Class names in column order.
        path: Output PNG path.

    Returns:
        ``path`` as a string.
    """
    return _curves(y_true, probs, label_names, "roc", path)


def plot_pr_curves(y_true: Any, probs: Any, label_names: list[str], path: str | Path) -> str:
    """Precision-recall curves with average precision in the legend; see :func:`plot_roc_curves`.

    Returns:
        ``path`` as a string.
    """
    return _curves(y_true, probs, label_names, "pr", path)


def plot_reliability_diagram(
    reliability_bins: list[dict[str, Any]], ece: float, path: str | Path
) -> str:
    """Reliability diagram: accuracy per confidence bin against the diagonal, plus bin counts.

    Args:
        reliability_bins: ``metrics["reliability"]`` (``{lower, upper, confidence, accuracy,
            count}`` per bin).
        ece: ``metrics["ece"]``, shown in the title.
        path: Output PNG path.

    Returns:
        ``path`` as a string.
    """
    lower = np.array([b["lower"] for b in reliability_bins], dtype=np.float64)
    upper = np.array([b["upper"] for b in reliability_bins], dtype=np.float64)
    counts = np.array([b["count"] for b in reliability_bins], dtype=np.float64)
    acc = np.array([b["accuracy"] or 0.0 for b in reliability_bins], dtype=np.float64)
    conf = np.array(
        [b["confidence"] if b["confidence"] is not None else 0.0 for b in reliability_bins]
    )
    width = upper - lower
    filled = counts > 0

    fig = _new_figure(6.0, 6.5)
    grid = fig.add_gridspec(2, 1, height_ratios=(3, 1))
    ax = fig.add_subplot(grid[0])
    ax.bar(lower[filled], acc[filled], width=width[filled], align="edge", edgecolor="black",
           color="tab:blue", label="accuracy")
    # The gap between a bin's accuracy and its mean confidence is what ECE averages.
    ax.bar(lower[filled], conf[filled] - acc[filled], bottom=acc[filled], width=width[filled],
           align="edge", color="tab:red", alpha=0.3, edgecolor="tab:red", hatch="//",
           label="gap to confidence")
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", label="perfect calibration")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_ylabel("Accuracy")
    ax.set_title(f"Reliability diagram (ECE = {ece:.3f})")
    ax.legend(loc="upper left", fontsize=8)

    hist = fig.add_subplot(grid[1], sharex=ax)
    hist.bar(lower, counts, width=width, align="edge", color="grey", edgecolor="black")
    hist.set_xlabel("Confidence (max probability)")
    hist.set_ylabel("Examples")
    return _save(fig, path)


def write_classification_plots(
    y_true: Any, probs: Any, label_names: list[str], metrics: dict[str, Any],
    out_dir: str | Path,
) -> dict[str, str]:
    """Write ``confusion_matrix.png``, ``roc.png``, ``pr.png`` and ``reliability.png``.

    The confusion matrix and reliability diagram come from ``metrics`` (the output of
    :func:`~lmforge.evaluation.classification_metrics`); multi-label metrics have neither, so
    only the ROC and PR plots are written for them.

    Args:
        y_true: ``(N,)`` class ids or ``(N, C)`` 0/1 targets.
        probs: ``(N, C)`` probabilities.
        label_names: Class names in column order.
        metrics: The metrics dict computed from the same data.
        out_dir: Folder to write into (created if missing).

    Returns:
        ``{"confusion_matrix": path, "roc": path, "pr": path, "reliability": path}`` (only the
        plots that were written).
    """
    out = Path(out_dir)
    paths: dict[str, str] = {}
    if "confusion_matrix" in metrics:
        paths["confusion_matrix"] = plot_confusion_matrix(
            metrics["confusion_matrix"], label_names, out / "confusion_matrix.png"
        )
    paths["roc"] = plot_roc_curves(y_true, probs, label_names, out / "roc.png")
    paths["pr"] = plot_pr_curves(y_true, probs, label_names, out / "pr.png")
    if "reliability" in metrics:
        paths["reliability"] = plot_reliability_diagram(
            metrics["reliability"], metrics["ece"], out / "reliability.png"
        )
    return paths
