"""Classification metrics (single- and multi-label) computed with scikit-learn.

Everything returned is plain Python (floats, ints, lists, dicts, ``None``) so a result can be
written with ``json.dump`` as-is. Undefined values (an AUC for a class with no positive or no
negative example) are ``None``, never NaN, and a line in ``notes`` says why.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lmforge.errors import DataError
from lmforge.evaluation._deps import require
from lmforge.evaluation.calibration import expected_calibration_error

_AVERAGES = ("micro", "macro", "weighted")
THRESHOLD_GRID = np.round(np.arange(0.05, 0.951, 0.05), 2)


def _skm():
    """``sklearn.metrics``, imported on first use (see :mod:`lmforge.evaluation._deps`)."""
    return require("sklearn.metrics", "scikit-learn", "classification metrics")


def _to_numpy(x: Any, dtype: Any) -> np.ndarray:
    """Convert a numpy array, torch tensor or nested list to a numpy array of ``dtype``."""
    if hasattr(x, "detach"):  # torch tensor; duck-typed so torch is not imported here
        x = x.detach().cpu()
        if x.is_floating_point():
            x = x.float()  # bfloat16/float16 have no numpy equivalent
        x = x.numpy()
    return np.asarray(x, dtype=dtype)


def _check_probs(probs: np.ndarray, num_labels: int) -> np.ndarray:
    """Validate a ``(N, C)`` probability matrix (``(N,)`` positive-class probs for binary)."""
    if probs.ndim == 1 and num_labels == 2:
        probs = np.stack([1.0 - probs, probs], axis=1)
    if probs.ndim != 2:
        raise DataError(
            f"probs must be a 2-D (examples, labels) array, got shape {tuple(probs.shape)}; "
            "pass one row of label probabilities per example"
        )
    if probs.shape[0] == 0:
        raise DataError("no examples to evaluate; evaluate on a non-empty split")
    if probs.shape[1] != num_labels:
        raise DataError(
            f"probs has {probs.shape[1]} columns but there are {num_labels} labels; "
            "pass one label name per model output"
        )
    if not np.isfinite(probs).all():
        raise DataError("probs contain NaN or inf; check the model outputs before evaluating")
    # Logits passed by mistake are the common error here; tolerate tiny float overshoot.
    if probs.min() < -1e-6 or probs.max() > 1 + 1e-6:
        raise DataError(
            f"probs must lie in [0, 1] (got {probs.min():.3g}..{probs.max():.3g}); "
            "apply softmax (single-label) or sigmoid (multi-label) to the logits first"
        )
    return probs


def _check_single_labels(y: np.ndarray, n: int, num_labels: int) -> np.ndarray:
    """Validate ``(N,)`` integer class ids in ``[0, num_labels)``."""
    y = y.reshape(-1) if y.ndim == 2 and y.shape[1] == 1 else y
    if y.ndim != 1:
        raise DataError(
            f"single-label targets must be a 1-D array of class ids, got shape {tuple(y.shape)}; "
            "pass multi_label=True for (examples, labels) 0/1 targets"
        )
    if y.shape[0] != n:
        raise DataError(
            f"probs has {n} rows but labels has {y.shape[0]}; pass one label per example"
        )
    if not np.all(np.equal(np.mod(y, 1), 0)):
        raise DataError("labels must be integer class ids; map label strings to ids first")
    y = y.astype(np.int64)
    bad = y[(y < 0) | (y >= num_labels)]
    if bad.size:
        raise DataError(
            f"label {int(bad[0])} is not in the model's {num_labels} labels "
            f"(ids 0..{num_labels - 1}); drop ignored rows (e.g. -100) or fix the label column "
            "or num_labels"
        )
    return y


def _check_multi_labels(y: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Validate ``(N, C)`` 0/1 multi-label targets."""
    if y.shape != shape:
        raise DataError(
            f"multi-label targets have shape {tuple(y.shape)} but probs have {shape}; "
            "pass one 0/1 row per example with one column per label"
        )
    if not np.isin(y, (0, 1)).all():
        raise DataError("multi-label targets must be 0/1; binarize the label column first")
    return y.astype(np.int64)


def _prf(y_true: np.ndarray, y_pred: np.ndarray, num_labels: int, averages: tuple[str, ...]):
    """Precision/recall/F1 for each average, plus the per-class arrays."""
    labels = list(range(num_labels))
    out: dict[str, dict[str, float]] = {"precision": {}, "recall": {}, "f1": {}}
    for avg in averages:
        p, r, f, _ = _skm().precision_recall_fscore_support(
            y_true, y_pred, labels=labels, average=avg, zero_division=0
        )
        out["precision"][avg], out["recall"][avg], out["f1"][avg] = float(p), float(r), float(f)
    per = _skm().precision_recall_fscore_support(
        y_true, y_pred, labels=labels, average=None, zero_division=0
    )
    return out, per


def _ranking_scores(
    onehot: np.ndarray, probs: np.ndarray, names: list[str], notes: list[str]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Per-class and macro ROC-AUC / average precision; undefined classes get ``None``."""
    roc: dict[str, float | None] = {}
    pr: dict[str, float | None] = {}
    undefined = []
    for k, name in enumerate(names):
        col = onehot[:, k]
        if col.min() == col.max():  # only positives or only negatives: the AUC is undefined
            roc[name] = pr[name] = None
            undefined.append(name)
            continue
        roc[name] = float(_skm().roc_auc_score(col, probs[:, k]))
        pr[name] = float(_skm().average_precision_score(col, probs[:, k]))
    if undefined:
        notes.append(
            f"ROC-AUC/PR-AUC undefined for {', '.join(undefined)} (all examples are positive or "
            "all negative for it); excluded from the macro average"
        )
    defined_roc = [v for v in roc.values() if v is not None]
    defined_pr = [v for v in pr.values() if v is not None]
    roc_out = {"macro": float(np.mean(defined_roc)) if defined_roc else None, "per_class": roc}
    pr_out = {"macro": float(np.mean(defined_pr)) if defined_pr else None, "per_class": pr}
    return roc_out, pr_out


def _micro_ranking(onehot: np.ndarray, probs: np.ndarray) -> tuple[float | None, float | None]:
    flat_y, flat_p = onehot.ravel(), probs.ravel()
    if flat_y.min() == flat_y.max():
        return None, None
    skm = _skm()
    return (float(skm.roc_auc_score(flat_y, flat_p)),
            float(skm.average_precision_score(flat_y, flat_p)))


def _per_class(names: list[str], per: tuple[np.ndarray, ...]) -> dict[str, dict[str, Any]]:
    p, r, f, s = per
    return {
        name: {"precision": float(p[k]), "recall": float(r[k]), "f1": float(f[k]),
               "support": int(s[k])}
        for k, name in enumerate(names)
    }


def _thresholds(thresholds: np.ndarray | float, num_labels: int) -> np.ndarray:
    thr = np.asarray(thresholds, dtype=np.float64)
    if thr.ndim == 0:
        thr = np.full(num_labels, float(thr))
    if thr.shape != (num_labels,):
        raise DataError(
            f"got {thr.size} thresholds for {num_labels} labels; pass a scalar or one per label"
        )
    return thr


def classification_metrics(
    y_true: Any,
    probs: Any,
    label_names: list[str],
    multi_label: bool = False,
    thresholds: np.ndarray | float = 0.5,
    n_bins: int = 15,
) -> dict[str, Any]:
    """Metrics for a classifier from its predicted probabilities.

    Single-label: prediction is the argmax; returns ``accuracy``, ``precision``/``recall``/``f1``
    (each ``{micro, macro, weighted}``), ``per_class`` (``{name: {precision, recall, f1,
    support}}``), ``confusion_matrix`` (rows = true, cols = predicted, in ``labels`` order),
    ``roc_auc`` and ``pr_auc`` (average precision) as ``{macro, per_class}`` (+ ``micro`` for
    more than two classes; + ``binary``, the positive class-1 score, for two classes), ``ece``
    and ``reliability`` (top-label calibration), ``num_examples``, ``labels``, ``notes``.

    Multi-label: label ``k`` is predicted when ``probs[:, k] >= thresholds[k]``; returns
    ``subset_accuracy`` (exact match), ``hamming_loss``, ``precision``/``recall``/``f1`` (each
    ``{micro, macro, weighted, samples}``), ``per_class`` (with each label's ``threshold``),
    ``roc_auc``/``pr_auc`` as ``{micro, macro, per_class}``, ``thresholds``, ``num_examples``,
    ``labels``, ``notes``.

    Args:
        y_true: ``(N,)`` class ids, or ``(N, C)`` 0/1 targets when ``multi_label``.
        probs: ``(N, C)`` probabilities (softmax or sigmoid); ``(N,)`` positive-class
            probabilities are accepted for binary single-label.
        label_names: One name per label, in id order.
        multi_label: Whether the task is multi-label.
        thresholds: Multi-label decision threshold, a scalar or one per label (see
            :func:`tune_thresholds`). Ignored for single-label.
        n_bins: Number of equal-width bins for the calibration error.

    Returns:
        A JSON-serializable dict, as above.

    Raises:
        DataError: Empty input, mismatched shapes, non-probabilities, or out-of-range labels.
    """
    names = [str(n) for n in label_names]
    num_labels = len(names)
    p = _check_probs(_to_numpy(probs, np.float64), num_labels)
    y = _to_numpy(y_true, np.float64)
    notes: list[str] = []
    out: dict[str, Any] = {"num_examples": int(p.shape[0]), "labels": names}
    if multi_label:
        y = _check_multi_labels(y, p.shape)
        thr = _thresholds(thresholds, num_labels)
        pred = (p >= thr[None, :]).astype(np.int64)
        out["subset_accuracy"] = float(_skm().accuracy_score(y, pred))
        out["hamming_loss"] = float(_skm().hamming_loss(y, pred))
        prf, per = _prf(y, pred, num_labels, (*_AVERAGES, "samples"))
        out.update(prf)
        out["per_class"] = _per_class(names, per)
        for k, name in enumerate(names):
            out["per_class"][name]["threshold"] = float(thr[k])
        out["thresholds"] = [float(t) for t in thr]
        out["roc_auc"], out["pr_auc"] = _ranking_scores(y, p, names, notes)
        out["roc_auc"]["micro"], out["pr_auc"]["micro"] = _micro_ranking(y, p)
    else:
        y = _check_single_labels(y, p.shape[0], num_labels)
        pred = p.argmax(axis=1)
        out["accuracy"] = float(_skm().accuracy_score(y, pred))
        prf, per = _prf(y, pred, num_labels, _AVERAGES)
        out.update(prf)
        out["per_class"] = _per_class(names, per)
        cm = _skm().confusion_matrix(y, pred, labels=list(range(num_labels)))
        out["confusion_matrix"] = cm.tolist()
        onehot = np.eye(num_labels, dtype=np.int64)[y]
        out["roc_auc"], out["pr_auc"] = _ranking_scores(onehot, p, names, notes)
        if num_labels == 2:
            # For two classes the convention is one number: the score of class 1 ("positive").
            out["roc_auc"]["binary"] = out["roc_auc"]["per_class"][names[1]]
            out["pr_auc"]["binary"] = out["pr_auc"]["per_class"][names[1]]
        else:
            out["roc_auc"]["micro"], out["pr_auc"]["micro"] = _micro_ranking(onehot, p)
        out["ece"], out["reliability"] = expected_calibration_error(
            p.max(axis=1), pred == y, n_bins=n_bins
        )
    out["notes"] = notes
    return out


def tune_thresholds(
    y_true: Any, probs: Any, grid: np.ndarray | None = None
) -> np.ndarray:
    """Per-label decision thresholds that maximize each label's F1 (tune on dev, not test).

    Ties go to the threshold closest to 0.5, so a label whose F1 is flat (e.g. no positives in
    the dev data) keeps the neutral default.

    Args:
        y_true: ``(N, C)`` 0/1 targets.
        probs: ``(N, C)`` sigmoid probabilities.
        grid: Candidate thresholds; defaults to 0.05, 0.10, ..., 0.95.

    Returns:
        ``(C,)`` float array of thresholds, usable as ``classification_metrics(thresholds=...)``.

    Raises:
        DataError: Empty input or mismatched shapes.
    """
    p = _to_numpy(probs, np.float64)
    if p.ndim != 2:
        raise DataError(f"probs must be (examples, labels), got shape {tuple(p.shape)}")
    p = _check_probs(p, p.shape[1])
    y = _check_multi_labels(_to_numpy(y_true, np.float64), p.shape)
    cand = THRESHOLD_GRID if grid is None else np.asarray(grid, dtype=np.float64).reshape(-1)
    # One (N, C) comparison per candidate (not a (T, N, C) block) keeps memory at O(N*C).
    pos = y.astype(bool)
    n_pos = pos.sum(axis=0)
    tp = np.stack([(pos & (p >= t)).sum(axis=0) for t in cand])
    n_pred = np.stack([(p >= t).sum(axis=0) for t in cand])
    # F1 = 2TP / (2TP + FP + FN) = 2TP / (predicted positives + actual positives)
    denom = n_pred + n_pos[None, :]
    f1 = np.divide(2 * tp, denom, out=np.zeros(tp.shape, dtype=np.float64), where=denom > 0)
    best = np.empty(p.shape[1], dtype=np.float64)
    dist = np.abs(cand - 0.5)
    for k in range(p.shape[1]):
        top = np.flatnonzero(np.isclose(f1[:, k], f1[:, k].max()))
        best[k] = cand[top[np.argmin(dist[top])]]
    return best


class ClassificationAccumulator:
    """Collects per-batch probabilities and labels during evaluation.

    Only float32 probabilities are kept (in a list of per-batch chunks, concatenated once at
    the end), so logits and activations are freed with each batch.

    Args:
        num_labels: Number of model outputs ``C``.
        multi_label: Whether labels are ``(B, C)`` 0/1 rows rather than ``(B,)`` class ids.
    """

    def __init__(self, num_labels: int, multi_label: bool = False) -> None:
        if num_labels < 1:
            raise DataError(f"num_labels must be at least 1, got {num_labels}")
        self.num_labels = num_labels
        self.multi_label = multi_label
        self._probs: list[np.ndarray] = []
        self._labels: list[np.ndarray] = []

    def __len__(self) -> int:
        return sum(len(c) for c in self._probs)

    def update(self, probs: Any, labels: Any) -> None:
        """Add one batch: ``probs`` ``(B, C)`` and ``labels`` ``(B,)`` or ``(B, C)``.

        Raises:
            DataError: The batch has the wrong shape.
        """
        p = _to_numpy(probs, np.float32)
        y = _to_numpy(labels, np.int64)
        if p.ndim != 2 or p.shape[1] != self.num_labels:
            raise DataError(
                f"batch probs have shape {tuple(p.shape)}, expected (batch, {self.num_labels}); "
                "pass softmax/sigmoid outputs with one column per label"
            )
        want = (p.shape[0], self.num_labels) if self.multi_label else (p.shape[0],)
        if y.shape != want:
            raise DataError(
                f"batch labels have shape {tuple(y.shape)}, expected {want}; "
                "pass one label (row) per example"
            )
        self._probs.append(p)
        self._labels.append(y)

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """All labels and probabilities seen so far, as ``(y_true, probs)``."""
        if not self._probs:
            raise DataError("no batches were evaluated; check that the eval split is not empty")
        return np.concatenate(self._labels), np.concatenate(self._probs)

    def result(
        self, label_names: list[str], thresholds: np.ndarray | float = 0.5
    ) -> dict[str, Any]:
        """Metrics over everything accumulated; see :func:`classification_metrics`."""
        y, p = self.arrays()
        return classification_metrics(
            y, p, label_names, multi_label=self.multi_label, thresholds=thresholds
        )
