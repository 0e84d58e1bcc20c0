"""A toy task for the registry tests: one module, registered with one line in ``TASKS``.

It is a sentiment classifier under another name (what a user adding, say, a "stance" task
would start from), so it inherits everything a task must declare; the registry tests then
check that every part of the system sees it without naming it anywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from lmforge.finetuning.classification.settings import ClassificationConfig
from lmforge.finetuning.classification.task import ClassificationTask


@dataclass
class ToyConfig(ClassificationConfig):
    """``task`` when ``task.name=toy``: a classifier's options (columns, labels)."""


class ToyTask(ClassificationTask):
    """Stance detection: a classification task with its own name."""

    name: ClassVar[str] = "toy"
