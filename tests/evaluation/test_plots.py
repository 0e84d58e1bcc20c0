"""Plots are written as real, non-trivial PNG files."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lmforge.evaluation import (
    classification_metrics,
    plot_confusion_matrix,
    plot_reliability_diagram,
    write_classification_plots,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def assert_png(path: str | Path) -> None:
    data = Path(path).read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert len(data) > 5_000  # axes, labels and curves; an empty canvas is far smaller


def random_probs(n: int, c: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, c, size=n)
    logits = rng.normal(size=(n, c))
    logits[np.arange(n), y] += 1.5
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return y, probs


def test_write_all_plots_multiclass(tmp_path):
    y, probs = random_probs(200, 3)
    names = ["neg", "neu", "pos"]
    metrics = classification_metrics(y, probs, names)
    paths = write_classification_plots(y, probs, names, metrics, tmp_path / "plots")
    assert set(paths) == {"confusion_matrix", "roc", "pr", "reliability"}
    for name, path in paths.items():
        assert Path(path).name == f"{name}.png"
        assert_png(path)


def test_write_plots_binary_and_multilabel(tmp_path):
    y, probs = random_probs(100, 2, seed=1)
    metrics = classification_metrics(y, probs, ["no", "yes"])
    for path in write_classification_plots(y, probs, ["no", "yes"], metrics, tmp_path).values():
        assert_png(path)

    rng = np.random.default_rng(2)
    y_ml = rng.integers(0, 2, size=(80, 3))
    p_ml = np.clip(y_ml * 0.6 + rng.random((80, 3)) * 0.4, 0, 1)
    names = ["a", "b", "c"]
    metrics = classification_metrics(y_ml, p_ml, names, multi_label=True)
    paths = write_classification_plots(y_ml, p_ml, names, metrics, tmp_path / "ml")
    assert set(paths) == {"roc", "pr"}  # no confusion matrix / calibration for multi-label
    for path in paths.values():
        assert_png(path)


def test_single_plots_return_their_path(tmp_path):
    out = plot_confusion_matrix([[5, 1], [2, 7]], ["a", "b"], tmp_path / "cm.png", normalize=True)
    assert out == str(tmp_path / "cm.png")
    assert_png(out)
    bins = [
        {"lower": 0.0, "upper": 0.5, "confidence": None, "accuracy": None, "count": 0},
        {"lower": 0.5, "upper": 1.0, "confidence": 0.8, "accuracy": 0.6, "count": 10},
    ]
    assert_png(plot_reliability_diagram(bins, 0.2, tmp_path / "rel.png"))
