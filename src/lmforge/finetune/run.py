"""``lmforge finetune`` (classification) and its evaluation / prediction helpers."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch
from safetensors.torch import load_model
from transformers import AutoModelForSequenceClassification

from lmforge.config import to_dict
from lmforge.data.corpus import load_corpus
from lmforge.engine.checkpoint import PREFIX
from lmforge.engine.hooks import EarlyStopping
from lmforge.engine.loop import Engine
from lmforge.errors import ConfigError
from lmforge.finetune.classification import (
    ClassificationCollator,
    ClassificationObjective,
    class_weights,
    classification_reducer,
    collect_label_names,
    predict_probabilities,
    prepare_classification,
)
from lmforge.models.build import count_parameters, load_tokenizer, resolve_checkpoint
from lmforge.pretrain.run import make_accelerator
from lmforge.runs import make_run_dir, save_atomically, save_run_config, write_json
from lmforge.settings import FinetuneJob
from lmforge.tracking import build_loggers

log = logging.getLogger(__name__)

TASK_FILE = "lmforge_task.json"  # task settings saved next to the model weights


def load_classifier(path: str, label_names: list[str] | None, multi_label: bool,
                    dropout: float | None = None, trust_remote_code: bool = False,
                    attn_implementation: str = "sdpa") -> tuple[Any, bool]:
    """Load ``AutoModelForSequenceClassification``; returns (model, new_head)."""
    kwargs: dict[str, Any] = {"trust_remote_code": trust_remote_code,
                              "attn_implementation": attn_implementation}
    if label_names is not None:
        kwargs.update(num_labels=len(label_names),
                      id2label=dict(enumerate(label_names)),
                      label2id={n: i for i, n in enumerate(label_names)},
                      problem_type="multi_label_classification" if multi_label
                      else "single_label_classification")
    if dropout is not None:
        kwargs.update(hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout)
    try:
        model, info = AutoModelForSequenceClassification.from_pretrained(
            path, output_loading_info=True, **kwargs)
    except (OSError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(f"cannot load {path!r} for classification ({first}); use a folder "
                          "with config.json and safetensors") from None
    return model, bool(info.get("missing_keys"))


def run_finetune(job: FinetuneJob, resume: bool = False) -> dict[str, Any]:
    """Fine-tune, keep the best checkpoint, save ``model/`` and evaluate on dev (and test).

    Args:
        job: The resolved config.
        resume: Continue from the run's latest checkpoint.

    Returns:
        The summary written to ``summary.json``.
    """
    if not job.model.pretrained:
        raise ConfigError("finetune needs a starting model: set model.pretrained=FOLDER, a "
                          "pretrain run directory or a hub name")
    accelerator, precision = make_accelerator(job.train.precision)
    run_dir = make_run_dir(job.output_dir, "finetune", must_exist=resume)
    if accelerator.is_main_process:
        save_run_config(run_dir, job)
    task = job.task
    source = resolve_checkpoint(job.model.pretrained)
    tokenizer = load_tokenizer(job.model.tokenizer or source, job.model.trust_remote_code)
    with accelerator.main_process_first():
        corpus = load_corpus(job.data, seed=job.train.seed)
        label_names = collect_label_names(corpus["train"], task.label_column, task.multi_label,
                                          task.label_separator)
        label2id = {name: i for i, name in enumerate(label_names)}
        splits = {name: prepare_classification(
            split, tokenizer, label2id, text_column=task.text_column,
            text_pair_column=task.text_pair_column, label_column=task.label_column,
            multi_label=task.multi_label, separator=task.label_separator,
            max_length=job.data.max_length, split_name=name) for name, split in corpus.items()}
    torch.manual_seed(job.train.seed)
    model, new_head = load_classifier(source, label_names, task.multi_label, job.model.dropout,
                                      job.model.trust_remote_code,
                                      job.model.attn_implementation)
    weights = None
    if task.class_weights == "balanced" and not task.multi_label:
        weights = class_weights(splits["train"]["labels"], len(label_names))
    objective = ClassificationObjective(model, task.multi_label, weights,
                                        job.train.label_smoothing)
    hooks = []
    if job.train.early_stopping_patience > 0:
        hooks.append(EarlyStopping(job.train.metric_for_best, job.train.early_stopping_patience,
                                   job.train.greater_is_better))
    loggers = build_loggers(run_dir, job.track.backends, project=job.track.project,
                            run_name=job.track.run_name or run_dir.name,
                            is_main_process=accelerator.is_main_process)
    loggers.log_config(to_dict(job))
    lengths = [len(ids) for ids in splits["train"]["input_ids"]] \
        if job.train.group_by_length else None
    collator = ClassificationCollator(tokenizer)
    engine = Engine(objective, job.train, splits["train"], collator, run_dir,
                    eval_dataset=splits.get("validation"), eval_reducer=classification_reducer,
                    hooks=hooks, loggers=loggers, lengths=lengths, accelerator=accelerator,
                    show_progress=job.track.progress)
    t0 = time.perf_counter()
    try:
        result = engine.train(resume=resume)
    finally:
        loggers.close()
    train_seconds = time.perf_counter() - t0
    best = result.state.best_step
    if best is not None and best != result.state.global_step:
        best_dir = run_dir / "checkpoints" / f"{PREFIX}{best:08d}"
        load_model(objective, str(best_dir / "model.safetensors"))
        log.info("restored the best checkpoint (step %d, %s=%.4f)", best,
                 job.train.metric_for_best, result.state.best_metric)
    trainable, total = count_parameters(model)
    task_info = {"task": task.name, "multi_label": task.multi_label,
                 "text_column": task.text_column, "text_pair_column": task.text_pair_column,
                 "label_column": task.label_column, "label_separator": task.label_separator,
                 "max_length": job.data.max_length, "thresholds": None}
    reports: dict[str, Any] = {}
    if accelerator.is_main_process:
        from lmforge.finetune.report import evaluate_classifier

        if task.multi_label and "validation" in splits:
            from lmforge.evaluation.classification import tune_thresholds

            y, probs = collect_predictions(model, splits["validation"], collator,
                                           task.multi_label, accelerator)
            task_info["thresholds"] = [float(t) for t in tune_thresholds(y, probs)]
        for name in ("validation", "test"):
            if name in splits:
                reports[name] = evaluate_classifier(
                    model, splits[name], corpus[name], collator, label_names, task_info,
                    run_dir / f"eval-{name}", accelerator)

        def _write(folder: Path) -> None:
            model.save_pretrained(folder)
            tokenizer.save_pretrained(folder)
            (folder / TASK_FILE).write_text(json.dumps(task_info, indent=2))

        save_atomically(run_dir / "model", _write)
    summary = {
        "command": "finetune", "task": task.name, "model_source": source,
        "new_head": new_head, "labels": label_names, "parameters": total,
        "trainable_parameters": trainable, "trainable_share": trainable / max(total, 1),
        "precision": precision, "processes": accelerator.num_processes,
        "train_examples": len(splits["train"]), "steps": result.state.global_step,
        "stopped_early": engine.should_stop, "best_step": best,
        "best_metric": {job.train.metric_for_best: result.state.best_metric},
        "train_seconds": round(train_seconds, 2),
        "examples_per_second": round(result.state.global_step * job.train.batch_size *
                                     job.train.grad_accum * accelerator.num_processes /
                                     max(train_seconds, 1e-9), 2),
        **{f"{name}_metrics": report["headline"] for name, report in reports.items()},
        "model_dir": str(run_dir / "model"),
    }
    if accelerator.is_main_process:
        write_json(run_dir / "summary.json", summary)
    accelerator.wait_for_everyone()
    return summary


def collect_predictions(model: Any, dataset: datasets.Dataset, collator: Any, multi_label: bool,
                        accelerator: Any, batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """All labels and probabilities of ``dataset`` (used to tune thresholds)."""
    ys, ps = [], []
    for probs, labels in predict_probabilities(model, dataset, collator, batch_size=batch_size,
                                               multi_label=multi_label,
                                               device=accelerator.device,
                                               autocast=accelerator.autocast):
        ps.append(probs)
        ys.append(labels)
    return np.concatenate(ys), np.concatenate(ps)
