"""The task interface of ``lmforge finetune`` and its one registration table.

A downstream task is one class with a fixed shape; ``run_finetune``, ``lmforge evaluate`` and
``lmforge predict`` only talk to this interface. Adding a task = one module + one line in
:data:`TASKS`.

Life of a task in a run::

    info = task.setup(job, raw["train"])            labels, columns -> lmforge_task.json
    enc = task.encode(raw[split], tokenizer, info, split)
    model, new_head = task.load_model(source, info, job.model)
    wrapped = task.objective(model, info, job.train, enc["train"])   # engine contract
    ... Engine(wrapped, ..., collator=task.collator(tokenizer, model), reducer=task.reducer)
    task.finalize(model, tokenizer, info, enc["validation"], accelerator)   # e.g. thresholds
    report = task.report(model, tokenizer, info, raw[split], enc[split], out_dir, accelerator)
    rows = task.predict(model, tokenizer, info, records, top_k)
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Protocol

import datasets
from torch import nn

from lmforge.config import check_choice

TASK_FILE = "lmforge_task.json"  # task settings saved next to the model weights


class Task(Protocol):
    """What a fine-tuning task provides (see the module docstring for the call order)."""

    name: str

    def setup(self, job: Any, train: datasets.Dataset) -> dict[str, Any]:
        """Read label names etc. from the training split; return the task info to save."""

    def encode(self, raw: datasets.Dataset, tokenizer: Any, info: dict[str, Any],
               split_name: str) -> datasets.Dataset:
        """Turn a raw split into model inputs (no padding)."""

    def load_model(self, source: str, info: dict[str, Any],
                   model_cfg: Any = None) -> tuple[nn.Module, bool]:
        """Load the ``transformers`` model for the task; return (model, new_head)."""

    def objective(self, model: nn.Module, info: dict[str, Any], train_cfg: Any,
                  train: datasets.Dataset) -> nn.Module:
        """Wrap the model so its forward returns ``{"loss", "n", "count_*"}``."""

    def collator(self, tokenizer: Any, model: nn.Module) -> Any:
        """The batch maker for this task's encoded examples."""

    def reducer(self, sums: dict[str, float]) -> dict[str, float]:
        """Evaluation metrics during training from summed counts."""

    def finalize(self, model: nn.Module, tokenizer: Any, info: dict[str, Any],
                 validation: datasets.Dataset | None, accelerator: Any) -> None:
        """Optional post-training step (e.g. tune thresholds); may update ``info``."""

    def report(self, model: nn.Module, tokenizer: Any, info: dict[str, Any],
               raw: datasets.Dataset, encoded: datasets.Dataset, out_dir: Path,
               accelerator: Any, batch_size: int = 64) -> dict[str, Any]:
        """Full evaluation into ``out_dir``; returns a dict with a flat ``headline``."""

    def predict(self, model: nn.Module, tokenizer: Any, info: dict[str, Any],
                records: list[dict[str, Any]], top_k: int = 1) -> list[dict[str, Any]]:
        """Predictions for raw input records (dicts holding the task's input columns)."""


# Task name -> "module:Class". Imported lazily so a task's heavy imports load only when used.
TASKS: dict[str, str] = {
    "classification": "lmforge.finetuning.classification_task:ClassificationTask",
    "token_classification": "lmforge.finetuning.ner_task:TokenClassificationTask",
    "qa": "lmforge.finetuning.qa_task:QuestionAnsweringTask",
    "seq2seq": "lmforge.finetuning.seq2seq_task:Seq2SeqTask",
    "sft": "lmforge.finetuning.sft_task:ChatSftTask",
}


def get_task(name: str) -> Task:
    """Instantiate the registered task ``name``."""
    check_choice("task.name", name, list(TASKS))
    module, cls = TASKS[name].split(":")
    return getattr(importlib.import_module(module), cls)()
