"""The Playground tab: a fine-tuned run or an export, loaded once, answering typed inputs.

Predictions are :meth:`lmforge.predictor.Predictor.predict` (the rows ``lmforge predict``
writes, probabilities included), attributions :meth:`~lmforge.predictor.Predictor.explain`,
and a generative run's chat :func:`lmforge.serving.generation.stream_text` (the stream
``lmforge serve``'s ``/generate`` sends). Nothing here branches on a task: the input fields
are the task's example record, and the page draws whatever the rows hold (scores, entity
spans, an answer span).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lmforge.predictor import Predictor, load_predictor
from lmforge.serving.generation import GenerateParams, stream_text


class Models:
    """The last ``size`` loaded predictors, by folder (loading takes seconds; reuse them)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._loaded: OrderedDict[Path, Predictor] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, folder: Path) -> Predictor:
        """The predictor of ``folder`` (loaded on first use)."""
        with self._lock:
            if folder in self._loaded:
                self._loaded.move_to_end(folder)
                return self._loaded[folder]
            predictor = load_predictor(folder, precision="fp32")
            self._loaded[folder] = predictor
            while len(self._loaded) > self.size:
                self._loaded.popitem(last=False)
            return predictor


def describe(predictor: Predictor) -> dict[str, Any]:
    """What the page needs to draw the inputs: the task, fields, labels, chat or not."""
    task, settings = predictor.task, predictor.settings
    fields = [k for k, v in task.example_record(settings).items() if isinstance(v, str)]
    if not fields and task.accepts_texts:  # e.g. NER: words in its example, a text typed here
        fields = [k for k, v in task.record_from_text(settings, "").items()
                  if isinstance(v, str)]
    return {"task": predictor.task_name, "generative": predictor.generative,
            "chat": bool(getattr(task, "accepts_messages", False)), "fields": fields,
            "text_field": getattr(predictor.settings, "text_column", None),
            "labels": predictor.labels, "backend": predictor.backend,
            "explains": not predictor.generative and predictor.backend == "torch"}


def predict(predictor: Predictor, record: dict[str, Any]) -> dict[str, Any]:
    """One prediction row, with every label's probability where the task has labels."""
    top_k = max(1, len(predictor.labels or []))
    return predictor.predict([record], top_k=top_k)[0]


def explain(predictor: Predictor, record: dict[str, Any], method: str) -> dict[str, Any]:
    """Word attributions of one record by ``method`` (``ig``, ``gradxinput``, ...)."""
    return predictor.explain([record], methods=[method], token_level=False)[0]


def chat(predictor: Predictor, prompt: str | None, messages: list[dict[str, str]] | None,
         params: GenerateParams) -> Iterator[str]:
    """The reply piece by piece (stopped when the client goes away)."""
    cancel = threading.Event()
    try:
        yield from stream_text(predictor, prompt, messages, params, cancel)
    finally:
        cancel.set()
