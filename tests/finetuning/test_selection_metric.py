"""``train.metric_for_best=auto``: each task names the metric that picks its best checkpoint."""

from __future__ import annotations

from lmforge.commands.finetune import resolve_selection_metric
from lmforge.config import build_config
from lmforge.finetuning.settings import FinetuneJob
from lmforge.finetuning.task import get_task


def _resolved(*overrides: str) -> tuple[str, bool]:
    job = build_config(FinetuneJob, None, list(overrides))
    train = resolve_selection_metric(job, get_task(job.task.name)).train
    return train.metric_for_best, train.greater_is_better


def test_finetune_defaults_to_the_tasks_metric() -> None:
    assert FinetuneJob().train.metric_for_best == "auto"
    assert _resolved() == ("eval_accuracy", True)
    assert _resolved("task.multi_label=true") == ("eval_subset_accuracy", True)
    assert _resolved("task.name=token_classification") == ("eval_loss", False)
    assert _resolved("task.name=qa") == ("eval_loss", False)


def test_an_explicit_metric_is_kept() -> None:
    assert _resolved("train.metric_for_best=eval_macro_f1", "train.greater_is_better=true") \
        == ("eval_macro_f1", True)
    assert _resolved("train.metric_for_best=eval_loss") == ("eval_loss", False)
