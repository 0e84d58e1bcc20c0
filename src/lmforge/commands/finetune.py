"""``lmforge finetune``: one flow for every task registered in :mod:`lmforge.finetuning.task`."""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from safetensors.torch import load_model

from lmforge.adversarial.augment import with_augmentation
from lmforge.adversarial.training import adversarial_hook
from lmforge.commands.context import open_run
from lmforge.data.corpus import load_corpus
from lmforge.engine.checkpoint import PREFIX
from lmforge.engine.hooks import EarlyStopping, StepHook
from lmforge.engine.loop import Engine
from lmforge.errors import ConfigError
from lmforge.finetuning.saved import save_finetuned
from lmforge.finetuning.settings import FinetuneJob
from lmforge.finetuning.task import all_tasks, get_task
from lmforge.models.build import count_parameters, load_tokenizer, resolve_checkpoint
from lmforge.peft.methods import apply_peft
from lmforge.runs import save_atomically

log = logging.getLogger(__name__)


def resolve_selection_metric(job: FinetuneJob, task: Any) -> FinetuneJob:
    """``train.metric_for_best=auto`` -> the task's metric and direction (saved resolved)."""
    if job.train.metric_for_best != "auto":
        return job
    name, greater = task.selection_metric(job)
    return dataclasses.replace(job, train=dataclasses.replace(
        job.train, metric_for_best=name, greater_is_better=greater))


def _baseline_report(task: Any, model: Any, tokenizer: Any, settings: Any, raw: Any,
                     encoded: Any, run_dir: Any, accelerator: Any,
                     resume: bool) -> dict[str, float] | None:
    """The validation report of the untuned model, where the task asks for one.

    Generative tasks (``task.baseline_eval``) score the model before training: held-out
    loss / perplexity and generations for the same prompts as the final report, written to
    ``eval-validation-before/`` so the two ``predictions.jsonl`` files compare line by line.
    A resumed run keeps the report its first start wrote.
    """
    if not getattr(settings, "baseline_eval", False) or "validation" not in encoded \
            or not accelerator.is_main_process:
        return None
    out_dir = run_dir / "eval-validation-before"
    summary = out_dir / "summary.json"
    if resume and summary.is_file():
        return json.loads(summary.read_text())["headline"]
    report = task.report(model, tokenizer, settings, raw["validation"], encoded["validation"],
                         out_dir, accelerator)
    log.info("before tuning: %s", ", ".join(f"{k}={v:.4g}" for k, v in
                                            report["headline"].items()))
    return report["headline"]


def _whole_model(task: Any, source: str, settings: Any, job: FinetuneJob, train: Any,
                 checkpoint: Path) -> Any:
    """The tuned model rebuilt unsharded from ``checkpoint`` (an FSDP run's best or last).

    Under FSDP each process holds a shard of every weight and a forward needs all processes,
    while reports and ``model/`` are the main process's alone; the checkpoint holds the full
    weights (gathered on rank 0 when it was written).
    """
    model, _ = task.load_model(source, settings, job.model)
    model = apply_peft(model, job.peft, task, source)
    load_model(task.objective(model, settings, job.train, train),
               str(checkpoint / "model.safetensors"))
    return model


def run_finetune(job: FinetuneJob, resume: bool = False, hooks: Sequence[StepHook] = (),
                 report_splits: Sequence[str] = ("validation", "test")) -> dict[str, Any]:
    """Fine-tune, keep the best checkpoint, save ``model/`` and evaluate on dev (and test).

    Args:
        job: The resolved config.
        resume: Continue from the run's latest checkpoint.
        hooks: Extra engine hooks (Python API only; e.g. a tuner's pruning hook).
        report_splits: Splits to report on after training (a tuner's trials leave out test).

    Returns:
        The summary written to ``summary.json``.
    """
    if not job.model.pretrained:
        raise ConfigError("finetune needs a starting model: set model.pretrained=FOLDER, a "
                          "pretrain run directory or a hub name")
    task = get_task(job.task.name)
    job = resolve_selection_metric(job, task)
    run = open_run("finetune", job, resume=resume, train=True)
    run_dir, accelerator = run.run_dir, run.accelerator
    source = resolve_checkpoint(job.model.pretrained)
    tokenizer = load_tokenizer(job.model.tokenizer or source, job.model.trust_remote_code)
    with accelerator.main_process_first():
        raw = load_corpus(job.data, seed=job.train.seed)
        settings = task.setup(job, raw["train"])
        encoded = {name: task.encode(split, tokenizer, settings, name)
                   for name, split in raw.items()}
    model, new_head = task.load_model(source, settings, job.model)
    # PEFT: wrap or freeze before the objective and optimizer see the parameters.
    model = apply_peft(model, job.peft, task, source)
    objective = task.objective(model, settings, job.train, encoded["train"])
    hooks = list(hooks)
    adversarial = adversarial_hook(job, all_tasks())  # robustness seam: train.adversarial
    hooks += [adversarial] if adversarial else []
    if job.train.early_stopping_patience > 0:
        hooks.append(EarlyStopping(job.train.metric_for_best, job.train.early_stopping_patience,
                                   job.train.greater_is_better))
    loggers = run.loggers()
    lengths = [len(ids) for ids in encoded["train"]["input_ids"]] \
        if job.train.group_by_length else None
    # robustness seam (issue 11): data.augment adds augmented copies to training batches only
    encoded["train"], collator = with_augmentation(job, raw["train"], encoded["train"],
                                                   task.collator(tokenizer, model), tokenizer,
                                                   task, settings, all_tasks())
    before = _baseline_report(task, model, tokenizer, settings, raw, encoded, run_dir,
                              accelerator, resume)
    engine = Engine(objective, job.train, encoded["train"], collator,
                    run_dir, eval_dataset=encoded.get("validation"), eval_reducer=task.reducer,
                    hooks=hooks, loggers=loggers, lengths=lengths, accelerator=accelerator,
                    show_progress=job.track.progress)
    t0 = time.perf_counter()
    try:
        result = engine.train(resume=resume)
    finally:
        loggers.close()
    train_seconds = time.perf_counter() - t0
    best = result.state.best_step
    if engine.sharded and accelerator.is_main_process:
        # FSDP: this process holds a shard only; the reports and model/ need the whole model.
        step = result.state.global_step if best is None else best
        model = _whole_model(task, source, settings, job, encoded["train"],
                             run_dir / "checkpoints" / f"{PREFIX}{step:08d}")
    elif best is not None and best != result.state.global_step and not engine.sharded:
        # Keep the best checkpoint's weights, not the last ones (early stopping overshoots).
        load_model(objective, str(run_dir / "checkpoints" / f"{PREFIX}{best:08d}" /
                                  "model.safetensors"))
        log.info("restored the best checkpoint (step %d, %s=%.4f)", best,
                 job.train.metric_for_best, result.state.best_metric)
    trainable, total = count_parameters(model)
    reports: dict[str, Any] = {}
    if accelerator.is_main_process:
        task.finalize(model, tokenizer, settings, encoded.get("validation"), accelerator)
        for name in ("validation", "test"):
            if name in encoded and name in report_splits:
                reports[name] = task.report(model, tokenizer, settings, raw[name],
                                            encoded[name], run_dir / f"eval-{name}",
                                            accelerator)
        save_atomically(run_dir / "model", lambda folder: save_finetuned(
            folder, model, tokenizer, settings, job.peft, source, job.model.pretrained))
    examples_seen = result.state.global_step * job.train.batch_size * job.train.grad_accum * \
        accelerator.num_processes
    return run.finish({
        "task": task.name,
        "model_source": source,
        "new_head": new_head, "labels": task.label_names(settings), "parameters": total,
        "peft_method": job.peft.method,
        "trainable_parameters": trainable, "trainable_share": trainable / max(total, 1),
        "precision": run.precision, "processes": accelerator.num_processes,
        "train_examples": len(encoded["train"]), "steps": result.state.global_step,
        "stopped_early": engine.should_stop, "best_step": best,
        "best_metric": {job.train.metric_for_best: result.state.best_metric},
        "train_seconds": round(train_seconds, 2),
        "examples_per_second": round(examples_seen / max(train_seconds, 1e-9), 2),
        **{f"{name}_metrics": report["headline"] for name, report in reports.items()},
        **({"validation_before_metrics": before} if before else {}),
        "model_dir": str(run_dir / "model"),
        **({"adversarial": adversarial.report()} if adversarial else {}),
    })
