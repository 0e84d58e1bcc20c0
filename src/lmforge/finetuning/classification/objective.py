"""The classification loss the engine trains and its training-time reducer.

Single-label loss with optional class weights w and label smoothing eps (Szegedy et al. 2016):

    L = -sum_c w_y * q_c log softmax(z)_c,   q = (1 - eps) onehot(y) + eps / C

Multi-label uses independent sigmoids, L = BCE(sigmoid(z), y).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def class_weights(labels: Sequence[int], num_labels: int) -> torch.Tensor:
    """'Balanced' weights N / (C * count_c), as scikit-learn's ``compute_class_weight``."""
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=num_labels)
    counts = np.maximum(counts, 1)
    return torch.tensor(len(labels) / (num_labels * counts), dtype=torch.float32)


class ClassificationObjective(nn.Module):
    """Loss and additive evaluation counts for a ``*ForSequenceClassification`` model.

    Args:
        model: The ``transformers`` classification model (saved as is).
        multi_label: Sigmoid + BCE instead of softmax + CE.
        weights: Optional (C,) class weights.
        label_smoothing: Label smoothing for single-label CE.
    """

    def __init__(self, model: nn.Module, multi_label: bool = False,
                 weights: torch.Tensor | None = None, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.model = model
        self.multi_label = multi_label
        self.label_smoothing = label_smoothing
        self.register_buffer("weights", weights if weights is not None else torch.empty(0),
                             persistent=False)

    def forward(self, labels: torch.Tensor, **inputs: torch.Tensor) -> dict[str, Any]:
        """Logits (B, C) from the model, the loss, and per-class TP/FP/FN counts."""
        return self.loss_and_counts(self.model(**inputs).logits.float(), labels)

    def loss_and_counts(self, logits: torch.Tensor, labels: torch.Tensor) -> dict[str, Any]:
        """The loss and additive counts of float logits (B, C) against ``labels``.

        Split from :meth:`forward` so a subclass can change the logits first (continual
        learning masks the classes of other tasks).
        """
        weights = self.weights if self.weights.numel() else None
        num_labels = logits.shape[-1]
        out: dict[str, Any] = {"n": labels.shape[0]}
        if self.multi_label:
            out["loss"] = F.binary_cross_entropy_with_logits(logits, labels, pos_weight=weights)
            predicted = logits > 0  # threshold 0.5 during training-time evaluation
            gold = labels > 0.5
            out["count_exact"] = (predicted == gold).all(-1).sum()
        else:
            out["loss"] = F.cross_entropy(logits, labels, weight=weights,
                                          label_smoothing=self.label_smoothing)
            predicted = F.one_hot(logits.argmax(-1), num_labels).bool()
            gold = F.one_hot(labels, num_labels).bool()
            out["count_correct"] = (logits.argmax(-1) == labels).sum()
        for c in range(num_labels):
            out[f"count_tp_{c}"] = (predicted[:, c] & gold[:, c]).sum()
            out[f"count_fp_{c}"] = (predicted[:, c] & ~gold[:, c]).sum()
            out[f"count_fn_{c}"] = (~predicted[:, c] & gold[:, c]).sum()
        return out


def classification_reducer(sums: dict[str, float]) -> dict[str, float]:
    """Loss, accuracy and macro-F1 from summed counts (exact across processes)."""
    n = max(sums.get("n", 0.0), 1.0)
    metrics = {"eval_loss": sums.get("loss_sum", 0.0) / n}
    if "count_correct" in sums:
        metrics["eval_accuracy"] = sums["count_correct"] / n
    if "count_exact" in sums:
        metrics["eval_subset_accuracy"] = sums["count_exact"] / n
    f1s = []
    c = 0
    while f"count_tp_{c}" in sums:
        tp, fp, fn = sums[f"count_tp_{c}"], sums[f"count_fp_{c}"], sums[f"count_fn_{c}"]
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
        c += 1
    if f1s:
        metrics["eval_macro_f1"] = float(np.mean(f1s))
    return metrics


