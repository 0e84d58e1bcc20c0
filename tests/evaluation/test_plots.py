"""Plots are written as real, non-trivial PNG files."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

import lmforge.evaluation.plots as plots_module
from lmforge.evaluation import (
    classification_metrics,
    plot_confusion_matrix,
    plot_reliability_diagram,
    write_classification_plots,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def assert_png(path: str | Path, figure: dict[str, Any] | None = None) -> None:
    data = Path(path).read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert len(data) > 5_000  # axes, labels and curves; an empty canvas is far smaller
    # The decoded image: the recorded figure's size in pixels, and drawn on (a blank or
    # one-colour canvas has no ink and a handful of colours).
    from matplotlib.image import imread

    rgb = imread(str(path))[..., :3]  # (H, W, 3) in [0, 1]
    if figure is not None:
        assert rgb.shape[:2] == figure["pixels"]
    ink = float((rgb.min(axis=-1) < 0.9).mean())
    assert 0.02 < ink < 0.9, ink
    packed = (rgb * 255).astype(np.uint32) @ np.array([1 << 16, 1 << 8, 1], dtype=np.uint32)
    assert len(np.unique(packed)) > 50  # colours


def record_figures(monkeypatch: pytest.MonkeyPatch,
                   module: ModuleType = plots_module) -> dict[str, dict[str, Any]]:
    """Patch ``module._save`` to record what each figure drew, by file name, as it is saved.

    Per figure: ``pixels`` (height, width) and, per axes, its ``images`` (arrays), ``lines``
    ({label: (N, 2) points}), ``bars`` ((x, bottom, height) of each rectangle) and ``texts``.
    """
    figures: dict[str, dict[str, Any]] = {}
    save = module._save

    def spy(fig: Any, path: str | Path) -> str:
        height, width = fig.get_size_inches()[::-1] * fig.dpi
        figures[Path(path).name] = {
            "pixels": (round(height), round(width)),
            "axes": [{"images": [np.asarray(im.get_array()) for im in ax.get_images()],
                      "lines": {line.get_label(): np.asarray(line.get_xydata())
                                for line in ax.get_lines()},
                      "bars": [(p.get_x(), p.get_y(), p.get_height()) for p in ax.patches],
                      "texts": [t.get_text() for t in ax.texts]} for ax in fig.axes]}
        return save(fig, path)

    monkeypatch.setattr(module, "_save", spy)
    return figures


def _curve(drawn: dict[str, Any], name: str) -> np.ndarray:
    (points,) = [xy for label, xy in drawn["lines"].items() if label.startswith(f"{name} (")]
    return points


def _same(points: np.ndarray, x: np.ndarray, y: np.ndarray) -> bool:
    """Whether a drawn line's (N, 2) points are exactly the curve (x, y)."""
    return points.shape == (len(x), 2) and np.allclose(points, np.stack([x, y], axis=1))


def random_probs(n: int, c: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, c, size=n)
    logits = rng.normal(size=(n, c))
    logits[np.arange(n), y] += 1.5
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return y, probs


def test_write_all_plots_multiclass(tmp_path, monkeypatch):
    from sklearn.metrics import precision_recall_curve, roc_curve

    figures = record_figures(monkeypatch)
    y, probs = random_probs(200, 3)
    names = ["neg", "neu", "pos"]
    metrics = classification_metrics(y, probs, names)
    paths = write_classification_plots(y, probs, names, metrics, tmp_path / "plots")
    assert set(paths) == {"confusion_matrix", "roc", "pr", "reliability"}
    for name, path in paths.items():
        assert Path(path).name == f"{name}.png"
        assert_png(path, figures[f"{name}.png"])
    # The plotted data is the data: the counts (image and cell numbers), each class's
    # one-vs-rest ROC / PR curve, and each confidence bin's accuracy and size.
    cm = figures["confusion_matrix.png"]["axes"][0]
    counts = np.asarray(metrics["confusion_matrix"])
    assert counts.sum() == 200 and np.array_equal(cm["images"][0], counts)
    assert cm["texts"] == [str(c) for c in counts.ravel()]
    roc = figures["roc.png"]["axes"][0]
    pr = figures["pr.png"]["axes"][0]
    for k, name in enumerate(names):
        fpr, tpr, _ = roc_curve(y == k, probs[:, k])
        assert _same(_curve(roc, name), fpr, tpr)
        prec, rec, _ = precision_recall_curve(y == k, probs[:, k])
        assert _same(_curve(pr, name), rec, prec)
    bins = [b for b in metrics["reliability"] if b["count"]]
    accuracy, sizes = figures["reliability.png"]["axes"][0], figures["reliability.png"]["axes"][1]
    assert [h for _, _, h in accuracy["bars"][:len(bins)]] == pytest.approx(
        [b["accuracy"] for b in bins])
    assert [h for _, _, h in sizes["bars"]] == [b["count"] for b in metrics["reliability"]]


def test_write_plots_binary_and_multilabel(tmp_path, monkeypatch):
    from sklearn.metrics import roc_curve

    figures = record_figures(monkeypatch)
    y, probs = random_probs(100, 2, seed=1)
    metrics = classification_metrics(y, probs, ["no", "yes"])
    for path in write_classification_plots(y, probs, ["no", "yes"], metrics, tmp_path).values():
        assert_png(path, figures[Path(path).name])
    roc = figures["roc.png"]["axes"][0]  # binary: the positive class's curve only
    assert [label.split(" (")[0] for label in roc["lines"]] == ["yes", "chance"]
    fpr, tpr, _ = roc_curve(y, probs[:, 1])
    assert _same(_curve(roc, "yes"), fpr, tpr)

    rng = np.random.default_rng(2)
    y_ml = rng.integers(0, 2, size=(80, 3))
    p_ml = np.clip(y_ml * 0.6 + rng.random((80, 3)) * 0.4, 0, 1)
    names = ["a", "b", "c"]
    metrics = classification_metrics(y_ml, p_ml, names, multi_label=True)
    paths = write_classification_plots(y_ml, p_ml, names, metrics, tmp_path / "ml")
    assert set(paths) == {"roc", "pr"}  # no confusion matrix / calibration for multi-label
    for path in paths.values():
        assert_png(path, figures[Path(path).name])
    roc = figures["roc.png"]["axes"][0]
    for k, name in enumerate(names):  # each label against its own 0/1 column
        fpr, tpr, _ = roc_curve(y_ml[:, k], p_ml[:, k])
        assert _same(_curve(roc, name), fpr, tpr)


def test_single_plots_return_their_path(tmp_path, monkeypatch):
    figures = record_figures(monkeypatch)
    out = plot_confusion_matrix([[5, 1], [2, 7]], ["a", "b"], tmp_path / "cm.png", normalize=True)
    assert out == str(tmp_path / "cm.png")
    assert_png(out, figures["cm.png"])
    cm = figures["cm.png"]["axes"][0]  # each row as fractions of its true class
    assert np.allclose(cm["images"][0], [[5 / 6, 1 / 6], [2 / 9, 7 / 9]])
    assert cm["texts"] == ["0.83", "0.17", "0.22", "0.78"]
    bins = [
        {"lower": 0.0, "upper": 0.5, "confidence": None, "accuracy": None, "count": 0},
        {"lower": 0.5, "upper": 1.0, "confidence": 0.8, "accuracy": 0.6, "count": 10},
    ]
    assert_png(plot_reliability_diagram(bins, 0.2, tmp_path / "rel.png"), figures["rel.png"])
    # The filled bin: accuracy 0.6, its gap to confidence 0.8 stacked on top; 0 and 10 rows.
    rel, sizes = figures["rel.png"]["axes"][:2]
    assert np.allclose(rel["bars"], [(0.5, 0.0, 0.6), (0.5, 0.6, 0.2)])
    assert [h for _, _, h in sizes["bars"]] == [0, 10]
