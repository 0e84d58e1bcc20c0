"""Expected calibration error and the reliability table behind a reliability diagram."""

from __future__ import annotations

from typing import Any

import numpy as np

from lmforge.errors import DataError


def expected_calibration_error(
    confidences: np.ndarray, correct: np.ndarray, n_bins: int = 15
) -> tuple[float, list[dict[str, Any]]]:
    """Top-label expected calibration error over equal-width confidence bins (Guo et al. 2017).

    ``ECE = sum_b |B_b| / N * |acc(B_b) - conf(B_b)|`` where bin ``b`` holds the examples whose
    confidence lies in ``((b-1)/M, b/M]`` (the first bin also takes confidence 0).

    Args:
        confidences: ``(N,)`` confidence of the predicted label (the max probability).
        correct: ``(N,)`` whether the predicted label was right (bool or 0/1).
        n_bins: Number of equal-width bins ``M`` on ``[0, 1]``.

    Returns:
        ``(ece, bins)`` where ``bins`` is a list of ``{lower, upper, confidence, accuracy,
        count}``; ``confidence`` and ``accuracy`` are ``None`` for empty bins.

    Raises:
        DataError: Empty input, mismatched lengths, or ``n_bins < 1``.
    """
    conf = np.asarray(confidences, dtype=np.float64).reshape(-1)
    hit = np.asarray(correct, dtype=np.float64).reshape(-1)
    if n_bins < 1:
        raise DataError(f"n_bins must be at least 1, got {n_bins}; pass n_bins=15 (the default)")
    if conf.size == 0:
        raise DataError("no examples to compute calibration on; evaluate on a non-empty split")
    if conf.shape != hit.shape:
        raise DataError(
            f"{conf.size} confidences but {hit.size} correctness flags; "
            "pass one of each per example"
        )
    # ceil(conf * M) - 1 puts conf exactly on an upper edge into the lower bin, as in
    # ((b-1)/M, b/M]; the clip keeps conf == 0 in bin 0 and guards float error above 1.
    idx = np.clip(np.ceil(conf * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    counts = np.bincount(idx, minlength=n_bins)
    conf_sum = np.bincount(idx, weights=conf, minlength=n_bins)
    hit_sum = np.bincount(idx, weights=hit, minlength=n_bins)
    n = conf.size
    ece = 0.0
    bins: list[dict[str, Any]] = []
    for b in range(n_bins):
        count = int(counts[b])
        mean_conf = float(conf_sum[b] / count) if count else None
        mean_acc = float(hit_sum[b] / count) if count else None
        if count:
            ece += count / n * abs(mean_acc - mean_conf)
        bins.append(
            {
                "lower": b / n_bins,
                "upper": (b + 1) / n_bins,
                "confidence": mean_conf,
                "accuracy": mean_acc,
                "count": count,
            }
        )
    return float(ece), bins
