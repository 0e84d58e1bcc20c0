"""Contextual calibration (Zhao et al., 2021, "Calibrate Before Use").

A prompt biases a model towards some labels regardless of the input (majority label,
recency, common-token bias). Estimate that bias with content-free inputs (``"N/A"``,
``""``, ``"[MASK]"``) in the *same* prompt (same template and demonstrations):

    p_cf = mean over content-free inputs of p(y | T(x_cf))
    W = diag(p_cf)^-1,   q(y | x) = normalize(W p(y | x)) = normalize(p(y | x) / p_cf)

so a content-free input maps to the uniform distribution.
"""

from __future__ import annotations

import numpy as np

from lmforge.errors import DataError


def content_free_prior(cf_probs: np.ndarray) -> np.ndarray:
    """p_cf: the mean label distribution of the content-free inputs, renormalized.

    Args:
        cf_probs: (K, C) label probabilities of K content-free inputs.

    Returns:
        (C,) p_cf.
    """
    cf_probs = np.asarray(cf_probs, dtype=np.float64)
    if cf_probs.ndim != 2 or cf_probs.shape[0] == 0:
        raise DataError("calibration needs at least one content-free input; set content_free")
    p_cf = cf_probs.mean(axis=0)
    return p_cf / p_cf.sum()


def calibrate(probs: np.ndarray, p_cf: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Apply W = diag(p_cf)^-1 and renormalize each row.

    Args:
        probs: (N, C) label probabilities.
        p_cf: (C,) content-free prior from :func:`content_free_prior`.
        eps: Floor on p_cf (a label the prompt never predicts would divide by zero).

    Returns:
        (N, C) calibrated probabilities (rows sum to 1).
    """
    q = np.asarray(probs, dtype=np.float64) / np.maximum(np.asarray(p_cf, np.float64), eps)
    return q / q.sum(axis=1, keepdims=True)
