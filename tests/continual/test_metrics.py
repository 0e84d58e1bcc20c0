"""ACC, BWT, FWT and forgetting from a hand-made accuracy matrix."""

from __future__ import annotations

from pathlib import Path

import pytest

from lmforge.continual.metrics import format_matrix, plot_curves, plot_matrix, stream_metrics

R = [[0.9, 0.1, 0.2],
     [0.6, 0.8, 0.3],
     [0.5, 0.7, 0.9]]
B = [0.5, 0.2, 0.1]


def test_metrics_follow_the_published_definitions() -> None:
    m = stream_metrics(R, B)
    assert m["average_accuracy"] == pytest.approx((0.5 + 0.7 + 0.9) / 3)
    # BWT: (R[2][0] - R[0][0] + R[2][1] - R[1][1]) / 2
    assert m["bwt"] == pytest.approx(((0.5 - 0.9) + (0.7 - 0.8)) / 2)
    # FWT: (R[0][1] - b1 + R[1][2] - b2) / 2
    assert m["fwt"] == pytest.approx(((0.1 - 0.2) + (0.3 - 0.1)) / 2)
    # Forgetting: best accuracy once learned (rows l >= j) minus the last row, for j < T-1.
    assert m["forgetting"] == pytest.approx(((0.9 - 0.5) + (0.8 - 0.7)) / 2)
    later = stream_metrics([[0.2, 0.9, 0.1], [0.3, 0.5, 0.1], [0.3, 0.5, 0.8]], B)
    assert later["forgetting"] == pytest.approx(((0.3 - 0.3) + (0.5 - 0.5)) / 2)
    assert m["acc_triangle"] == pytest.approx((0.9 + 0.6 + 0.8 + 0.5 + 0.7 + 0.9) / 6)


def test_single_row_has_only_average_accuracy() -> None:
    assert stream_metrics([[0.5, 0.7]], None) == {"average_accuracy": pytest.approx(0.6)}


def test_table_and_plots(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import numpy as np

    import lmforge.continual.metrics as metrics_module
    from tests.evaluation.test_plots import assert_png, record_figures

    figures = record_figures(monkeypatch, metrics_module)
    names = ["a", "b", "c"]
    table = format_matrix(names, R, stream_metrics(R, B), B)
    assert "(initial)" in table and "bwt" in table
    for path in (plot_matrix(names, R, tmp_path / "m.png"),
                 plot_curves(names, R, tmp_path / "c.png", B)):
        assert Path(path).read_bytes()[:4] == b"\x89PNG"
        assert_png(path, figures[Path(path).name])  # its size, drawn on
    # The heat map is R with its numbers; each experience's curve is b_j, then column j.
    heat = figures["m.png"]["axes"][0]
    assert np.allclose(heat["images"][0], R)
    assert heat["texts"] == [f"{v:.2f}" for row in R for v in row]
    curves = figures["c.png"]["axes"][0]["lines"]
    for j, name in enumerate(names):
        assert np.allclose(curves[name], [[-1, B[j]], *[[i, R[i][j]] for i in range(3)]])
