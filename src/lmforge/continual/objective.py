"""The continual-learning objective: the task's loss over the classes a row may predict.

Wraps a task objective that exposes ``model`` and ``loss_and_counts(logits, labels)`` (the
classification objective does). Each row carries its experience index ``task_ids``; the
logits of classes outside ``masks[task_ids]`` are set to a large negative number before the
loss, so in a task-incremental stream a row only competes among its own task's labels (its
"head"), and in a class-incremental one among the classes seen so far. The raw logits are
returned as ``outputs["logits"]`` for strategies that need them (LwF distillation).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

MASKED = -1.0e9  # a logit that softmax turns into exactly 0 in float32


class MaskedObjective(nn.Module):
    """``forward(labels, task_ids, **inputs) -> {"loss", "n", "count_*", "logits"}``.

    Args:
        inner: The task objective (``.model`` and ``.loss_and_counts``).
        masks: (E, C) bool, the classes rows of each experience may predict.
    """

    def __init__(self, inner: nn.Module, masks: torch.Tensor) -> None:
        super().__init__()
        self.inner = inner
        # Not saved in checkpoints: the masks follow from the stream and the experience.
        self.register_buffer("masks", masks.clone(), persistent=False)

    @property
    def model(self) -> nn.Module:
        """The ``transformers`` model (or ``PeftModel``) being trained."""
        return self.inner.model

    def set_masks(self, masks: torch.Tensor) -> None:
        """Replace the (E, C) class masks (class-incremental: a new experience starts)."""
        self.masks = masks.to(self.masks.device)

    def masked(self, logits: torch.Tensor, task_ids: torch.Tensor) -> torch.Tensor:
        """``logits`` (B, C) with the classes each row may not predict set to -1e9."""
        allowed = self.masks[task_ids]  # (B, C)
        return logits.masked_fill(~allowed, MASKED)

    def forward(self, labels: torch.Tensor, task_ids: torch.Tensor,
                **inputs: torch.Tensor) -> dict[str, Any]:
        """The task loss and counts on the masked logits; raw logits as ``"logits"``."""
        logits = self.model(**inputs).logits.float()  # (B, C)
        out = self.inner.loss_and_counts(self.masked(logits, task_ids), labels)
        out["logits"] = logits
        return out
