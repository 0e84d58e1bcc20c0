"""The token-classification loss the engine trains and its training-time reducer.

Training-time evaluation reports token accuracy from additive counts; entity-level
precision / recall / F1 need whole tag sequences and are computed in the task's report.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from lmforge.finetuning.token_classification.data import IGNORE_INDEX


class TokenClassificationObjective(nn.Module):
    """Cross-entropy over labelled sub-words plus a correct-token count.

    Args:
        model: A ``*ForTokenClassification`` model (saved as is).
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, labels: torch.Tensor, **inputs: torch.Tensor) -> dict[str, Any]:
        """Logits (B, L, C); loss and counts over positions whose label is not -100."""
        logits = self.model(**inputs).logits.float()  # (B, L, C)
        keep = labels != IGNORE_INDEX  # (B, L)
        n = keep.sum()
        # Mean over labelled tokens; the engine weights it by n, so eval_loss is per token.
        loss = F.cross_entropy(logits.flatten(0, 1), labels.flatten(),
                               ignore_index=IGNORE_INDEX, reduction="sum") / n.clamp(min=1)
        correct = ((logits.argmax(-1) == labels) & keep).sum()
        return {"loss": loss, "n": n, "count_correct": correct}


def token_classification_reducer(sums: dict[str, float]) -> dict[str, float]:
    """Per-token loss and accuracy from summed counts (entity F1 is in the report)."""
    n = max(sums.get("n", 0.0), 1.0)
    return {"eval_loss": sums.get("loss_sum", 0.0) / n,
            "eval_token_accuracy": sums.get("count_correct", 0.0) / n}


