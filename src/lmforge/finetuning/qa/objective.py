"""The extractive-QA loss the engine trains and its training-time reducer."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

NULL_INDEX = 0
"""Token index that windows without the answer target (CLS), as in ``prepare_qa_train`` for
BERT-style tokenizers and the null score of ``postprocess_qa``."""


class QAObjective(nn.Module):
    """The model's own start/end cross-entropy plus window-level span counts.

    Args:
        model: A ``*ForQuestionAnswering`` model (saved as is).
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, start_positions: torch.Tensor, end_positions: torch.Tensor,
                **inputs: torch.Tensor) -> dict[str, Any]:
        """Loss = mean of start and end CE over windows (B,), and span counts per window kind.

        Windows that hold the answer and windows that do not (targets at the CLS index) are
        counted apart: on long passages a third or more of the windows hold no answer, and a
        model that puts CLS first everywhere would otherwise score exactly that share whatever
        it learned about spans.
        """
        out = self.model(**inputs, start_positions=start_positions, end_positions=end_positions)
        start, end = out.start_logits.detach(), out.end_logits.detach()  # (B, L) each
        has_answer = (start_positions != NULL_INDEX) | (end_positions != NULL_INDEX)  # (B,)
        # The best non-null span, like the SQuAD 1.1 decoding (postprocess_qa skips CLS and
        # padding): the training-time proxy for exact match on windows that hold the answer.
        invalid = torch.zeros_like(start, dtype=torch.bool)
        invalid[:, NULL_INDEX] = True
        mask = inputs.get("attention_mask")
        if mask is not None:
            invalid |= mask == 0
        span_start = start.masked_fill(invalid, float("-inf")).argmax(-1)
        span_end = end.masked_fill(invalid, float("-inf")).argmax(-1)
        exact = has_answer & (span_start == start_positions) & (span_end == end_positions)
        null_right = ~has_answer & (start.argmax(-1) == NULL_INDEX) & \
            (end.argmax(-1) == NULL_INDEX)
        return {"loss": out.loss, "n": start_positions.shape[0],
                "count_answer_windows": has_answer.sum(), "count_exact_span": exact.sum(),
                "count_null_windows": (~has_answer).sum(), "count_null_right": null_right.sum()}


def qa_reducer(sums: dict[str, float]) -> dict[str, float]:
    """eval_loss per window; span accuracy over the windows that hold the answer; null
    accuracy (CLS first for start and end) over those that do not (0 when there are none)."""
    n = max(sums.get("n", 0.0), 1.0)
    return {"eval_loss": sums.get("loss_sum", 0.0) / n,
            "eval_span_accuracy": sums.get("count_exact_span", 0.0)
            / max(sums.get("count_answer_windows", 0.0), 1.0),
            "eval_null_accuracy": sums.get("count_null_right", 0.0)
            / max(sums.get("count_null_windows", 0.0), 1.0)}
