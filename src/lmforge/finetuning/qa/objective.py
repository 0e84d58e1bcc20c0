"""The extractive-QA loss the engine trains and its training-time reducer."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class QAObjective(nn.Module):
    """The model's own start/end cross-entropy plus an exact-span count.

    Args:
        model: A ``*ForQuestionAnswering`` model (saved as is).
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, start_positions: torch.Tensor, end_positions: torch.Tensor,
                **inputs: torch.Tensor) -> dict[str, Any]:
        """Loss = mean of start and end CE over windows (B,); counts windows with both right."""
        out = self.model(**inputs, start_positions=start_positions, end_positions=end_positions)
        # Token-level argmax (B,) each: a cheap training-time proxy for exact match.
        exact = (out.start_logits.argmax(-1) == start_positions) & \
            (out.end_logits.argmax(-1) == end_positions)
        return {"loss": out.loss, "n": start_positions.shape[0], "count_exact_span": exact.sum()}


def qa_reducer(sums: dict[str, float]) -> dict[str, float]:
    """eval_loss per window and the share of windows with the exact token span."""
    n = max(sums.get("n", 0.0), 1.0)
    return {"eval_loss": sums.get("loss_sum", 0.0) / n,
            "eval_span_accuracy": sums.get("count_exact_span", 0.0) / n}


