"""What an attack needs from a loaded model: the target interface, and its lookup.

An attack sees a model as ``predict_proba(texts, owners) -> (N, C)`` plus the columns to read.
Which output to attack and which labels count is task knowledge, so each task declares its
own target class (``Task.attack_target()``, in the task package's ``attack.py``) and
:func:`attack_target` asks the predictor's task object: this package sits below the
fine-tuning tasks and never imports them. Reads of the predictor's task settings go through
:func:`settings_dict` only.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from lmforge.errors import ConfigError


def settings_dict(predictor: Any) -> dict[str, Any]:
    """The task settings saved with the model, as a dict."""
    return dataclasses.asdict(predictor.settings)


class Target(Protocol):
    """What the attacks ask of a task's target (built as ``cls(predictor, batch_size)``).

    Attributes:
        labels: Class names, in the order of :meth:`predict_proba`'s columns.
        text_column: The column whose words are perturbed.
        label_column: The column of the gold labels.
        forward_calls: Model batches run so far (the attack's cost).
    """

    labels: list[str]
    text_column: str
    label_column: str
    forward_calls: int

    @property
    def vocab_chars(self) -> list[str]:
        """Single-character tokens of the model's vocabulary (for the Chinese attack)."""
        ...

    def label_id(self, value: Any) -> int:
        """The label id of a gold label as it appears in the data."""
        ...

    def read(self, rows: Sequence[dict[str, Any]]) -> tuple[list[str], list[int]]:
        """Texts and label ids of labeled rows."""
        ...

    def predict_proba(self, texts: list[str], owners: list[int] | None = None) -> np.ndarray:
        """Class probabilities (N, C); ``owners`` maps each text to its source row."""
        ...


def attack_target(predictor: Any, batch_size: int = 64) -> Target:
    """The attack target of a loaded model, as its task declares it.

    Args:
        predictor: A loaded :class:`~lmforge.predictor.Predictor`; its ``task`` object is
            asked (an object without one cannot be attacked).
        batch_size: Texts per forward pass.

    Raises:
        ConfigError: The model's task declares no target, or the model is multi-label (the
            attacks flip one predicted class).
    """
    info = settings_dict(predictor)
    task = getattr(predictor, "task", None)
    target_class = task.attack_target() if task is not None else None
    if target_class is None or info.get("multi_label"):
        # The wording names what the attacks support today (single-label classifiers), so a
        # user of another task learns what to attack instead; it is a message, not a lookup.
        kind = ("multi-label classification" if info.get("multi_label")
                else f"task {info.get('task')!r}")
        raise ConfigError(f"lmforge attack supports single-label classification models (task "
                          f"classification, sentence pairs included); this model is {kind}")
    return target_class(predictor, batch_size)
