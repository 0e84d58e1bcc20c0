"""The QA training objective's in-loop metrics: span accuracy must not be the no-answer share."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F
from transformers.modeling_outputs import QuestionAnsweringModelOutput

from lmforge.finetuning.qa.objective import QAObjective, qa_reducer

L = 8
# Three windows hold the answer (token spans), one does not (both targets at CLS, index 0).
STARTS = torch.tensor([3, 5, 2, 0])
ENDS = torch.tensor([4, 5, 6, 0])


class FixedLogits(nn.Module):
    """Stands in for a ``*ForQuestionAnswering`` model: returns the logits it was given."""

    def __init__(self, start: torch.Tensor, end: torch.Tensor) -> None:
        super().__init__()
        self.start, self.end = start, end  # (B, L) each

    def forward(self, input_ids: torch.Tensor, start_positions: torch.Tensor,
                end_positions: torch.Tensor, **_: torch.Tensor) -> QuestionAnsweringModelOutput:
        loss = (F.cross_entropy(self.start, start_positions)
                + F.cross_entropy(self.end, end_positions)) / 2
        return QuestionAnsweringModelOutput(loss=loss, start_logits=self.start,
                                            end_logits=self.end)


def _logits(second: str, pad_peak: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """CLS first in every window (10); then the gold span (5) or a wrong one (``second``)."""
    start, end = torch.zeros(len(STARTS), L), torch.zeros(len(STARTS), L)  # (B, L)
    start[:, 0] = end[:, 0] = 10.0
    for i, (s, e) in enumerate(zip(STARTS.tolist(), ENDS.tolist(), strict=True)):
        if s and second == "gold":
            start[i, s], end[i, e] = 5.0, 5.0
        elif s:
            start[i, 1], end[i, 1] = 5.0, 5.0  # a question token, never the gold span here
    if pad_peak:
        start[:, -1] = end[:, -1] = 7.0  # beyond every window's tokens: must be ignored
    return start, end


def _metrics(start: torch.Tensor, end: torch.Tensor) -> dict[str, float]:
    """Sum the objective's counts as the engine's evaluate_model does, then reduce."""
    batch = {"input_ids": torch.ones(len(STARTS), L, dtype=torch.long),
             "attention_mask": torch.ones(len(STARTS), L, dtype=torch.long)}
    batch["attention_mask"][:, -1] = 0  # one padding position per window
    out = QAObjective(FixedLogits(start, end))(STARTS, ENDS, **batch)
    sums = {"loss_sum": float(out["loss"]) * out["n"], "n": float(out["n"])}
    sums.update({k: float(v) for k, v in out.items() if k.startswith("count_")})
    return qa_reducer(sums)


def test_span_accuracy_tracks_spans_not_the_no_answer_share() -> None:
    # Both models put CLS first everywhere. The old metric (argmax == target over all
    # windows) scored both 0.25, the share of no-answer windows, whatever the spans were.
    gold = _metrics(*_logits("gold"))
    wrong = _metrics(*_logits("wrong"))
    assert gold["eval_span_accuracy"] == 1.0  # best non-null span is the gold one, 3 of 3
    assert wrong["eval_span_accuracy"] == 0.0
    assert gold["eval_null_accuracy"] == wrong["eval_null_accuracy"] == 1.0
    assert gold["eval_loss"] < wrong["eval_loss"]


def test_span_accuracy_ignores_padding_and_counts_null_windows_apart() -> None:
    padded = _metrics(*_logits("gold", pad_peak=True))
    assert padded["eval_span_accuracy"] == 1.0
    # A model that never puts CLS first: the no-answer window is wrong, answer windows right.
    start, end = _logits("gold")
    start[:, 0] = end[:, 0] = -10.0
    metrics = _metrics(start, end)
    assert metrics["eval_span_accuracy"] == 1.0
    assert metrics["eval_null_accuracy"] == 0.0
