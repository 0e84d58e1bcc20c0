"""How ``lmforge explain`` explains a classifier: the probability of one class.

:meth:`ClassificationTask.explain_adapter
<lmforge.finetuning.classification.task.ClassificationTask.explain_adapter>` returns
:class:`ClassificationAdapter`; the task-agnostic machinery is :mod:`lmforge.explaining`.
"""

from __future__ import annotations

from typing import Any

import torch

from lmforge.errors import ConfigError
from lmforge.explaining.adapters import (
    Example,
    encode_inputs,
    make_example,
    required_text,
    setting,
)


class ClassificationAdapter:
    """Sequence classification (single texts and pairs): explain one class's probability."""

    perturbation = "delete"  # the [CLS] read-out does not depend on token positions

    def __init__(self, settings: Any) -> None:
        self.labels: list[str] = list(setting(settings, "labels", []))
        self.text_column: str = setting(settings, "text_column", "text")
        self.pair_column: str | None = setting(settings, "text_pair_column")
        self.multi_label: bool = bool(setting(settings, "multi_label", False))
        self.max_length: int = int(setting(settings, "max_length", 128))

    def encode(self, tokenizer: Any, record: dict[str, Any], word_mode: str) -> Example:
        """Tokenize the text (and its pair) into an :class:`Example`."""
        texts = [required_text(record, self.text_column)]
        if self.pair_column:
            texts.append(required_text(record, self.pair_column))
        enc = encode_inputs(tokenizer, *texts, max_length=self.max_length)
        return make_example(record, enc, texts, tokenizer, word_mode)

    def resolve_targets(self, examples: list[Example], outputs: list[Any],
                        target: str | None, entity: int = 0) -> None:
        """Set each example's target class: ``target`` when given, else the predicted one."""
        if target is not None and target not in self.labels:
            raise ConfigError(f"target={target!r} is not a label of this model; labels: "
                              f"{self.labels}")
        for ex, logits in zip(examples, outputs, strict=True):
            probs = torch.sigmoid(logits) if self.multi_label else torch.softmax(logits, -1)
            best = int(probs.argmax())
            cls = self.labels.index(target) if target is not None else best
            ex.target = [cls]
            ex.prediction = {"label": self.labels[best], "score": float(probs[best]),
                             "target": self.labels[cls], "target_score": float(probs[cls])}

    def logits(self, out: Any) -> torch.Tensor:
        """The per-sequence output used to pick targets: (B, C) logits."""
        return out.logits

    def score(self, out: Any, target: torch.Tensor) -> torch.Tensor:
        """Probability of the target class: (B,) from logits (B, C) and target (B, 1)."""
        logits = out.logits.float()
        probs = torch.sigmoid(logits) if self.multi_label else torch.softmax(logits, -1)
        return probs.gather(1, target[:, :1]).squeeze(1)

    def readout_positions(self, ex: Example) -> list[int]:
        """Where the head reads (attention rollout rows): the first token ([CLS])."""
        return [0]
