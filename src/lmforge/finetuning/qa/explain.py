"""How ``lmforge explain`` explains extractive QA: the probability of the predicted span.

:meth:`QuestionAnsweringTask.explain_adapter
<lmforge.finetuning.qa.task.QuestionAnsweringTask.explain_adapter>` returns
:class:`QuestionAnsweringAdapter`; the task-agnostic machinery is :mod:`lmforge.explaining`.
"""

from __future__ import annotations

from typing import Any

import torch

from lmforge.errors import ConfigError, DataError
from lmforge.explaining.adapters import (
    Example,
    encode_inputs,
    make_example,
    required_text,
    setting,
)
from lmforge.explaining.words import Word


class QuestionAnsweringAdapter:
    """Extractive QA: explain the probability of the predicted span (start x end)."""

    perturbation = "replace"  # start / end positions must not move

    def __init__(self, settings: Any) -> None:
        self.question_column: str = setting(settings, "question_column", "question")
        self.context_column: str = setting(settings, "context_column", "context")
        self.max_length: int = int(setting(settings, "max_length", 384))
        self.max_answer_length: int = int(setting(settings, "max_answer_length", 30))
        self.labels: list[str] = []

    def encode(self, tokenizer: Any, record: dict[str, Any], word_mode: str) -> Example:
        """Question and context (the first window: the context is cut at ``max_length``)."""
        texts = [required_text(record, self.question_column),
                 required_text(record, self.context_column)]
        enc = encode_inputs(tokenizer, *texts, max_length=self.max_length,
                            truncation="only_second")
        return make_example(record, enc, texts, tokenizer, word_mode)

    def resolve_targets(self, examples: list[Example], outputs: list[Any],
                        target: str | None, entity: int = 0) -> None:
        """The best span inside the context (start <= end < start + max_answer_length)."""
        if target is not None:
            raise ConfigError("target= is for classification labels and NER entity types; "
                              "QA explains the predicted answer span")
        for ex, (start, end) in zip(examples, outputs, strict=True):
            context = [int(p) for p, w in zip(ex.features, self._segments(ex), strict=True)
                       if w == 1]
            if not context:
                raise DataError("the context has no token left (a long question cut it away, "
                                "or the tokenizer dropped every character); shorten the "
                                "question or give a context with words")
            s_log, e_log = start.float(), end.float()
            best, span = -float("inf"), (context[0], context[0])
            for i, s in enumerate(context):
                for e in context[i:i + self.max_answer_length]:
                    value = float(s_log[s] + e_log[e])
                    if value > best:
                        best, span = value, (s, e)
            ex.target = list(span)
            p = float(torch.softmax(s_log, -1)[span[0]] * torch.softmax(e_log, -1)[span[1]])
            offsets = [w for w in ex.words if w.segment == 1]
            answer = span_text(ex, span, offsets, self.context_column)
            ex.prediction = {"answer": answer, "score": p, "target": "answer span",
                             "target_score": p}

    @staticmethod
    def _segments(ex: Example) -> list[int]:
        seg = [0] * len(ex.features)
        for w in ex.words:
            for i in w.indices:
                seg[i] = w.segment
        return seg

    def logits(self, out: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """(start (B, L), end (B, L)) logits."""
        return out.start_logits, out.end_logits

    def score(self, out: Any, target: torch.Tensor) -> torch.Tensor:
        """p_start(s) * p_end(e) for target (B, 2) = (s, e)."""
        ps = torch.softmax(out.start_logits.float(), -1)
        pe = torch.softmax(out.end_logits.float(), -1)
        return ps.gather(1, target[:, :1]).squeeze(1) * pe.gather(1, target[:, 1:2]).squeeze(1)

    def readout_positions(self, ex: Example) -> list[int]:
        """The start and end positions."""
        return [int(ex.target[0]), int(ex.target[1])]


def span_text(ex: Example, span: tuple[int, int], words: list[Word], column: str) -> str:
    """The context substring covered by token positions ``span`` (inclusive)."""
    chars = [c for w in words for i, c in zip(w.indices, w.token_offsets, strict=True)
             if span[0] <= int(ex.features[i]) <= span[1]]
    if not chars:
        return ""
    return str(ex.record[column])[min(c[0] for c in chars):max(c[1] for c in chars)]
