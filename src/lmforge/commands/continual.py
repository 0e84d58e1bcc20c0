"""``lmforge continual``: learn a stream of experiences in order, measure forgetting.

One process runs one engine training per experience (the same :class:`~lmforge.engine.loop.
Engine` as ``lmforge finetune``, with the strategy's hooks), then evaluates every
experience's evaluation set, which fills row i of the accuracy matrix R. Run directory::

    config.yaml  summary.json  metrics.jsonl  tb/      the stream (rows of R per step)
    initial.json                                        b: accuracy of the initial model
    accuracy_matrix.png  accuracy_curves.png
    experiences/<i>-<name>/  metrics.jsonl tb/ checkpoints/ (while it trains)
                             model/  (lmforge.load-able; the adapter only for strategy=lora)
                             done.json (its row of R), ewc.safetensors (ewc)

A killed stream resumes (``--resume``) at the first experience without ``done.json``, from
that experience's latest checkpoint (the step it stopped at); the state of earlier
experiences (weights, Fisher, replay memory) is rebuilt from their folders.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import logging
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import datasets
import torch

from lmforge.config import to_dict
from lmforge.continual.metrics import format_matrix, plot_curves, plot_matrix, stream_metrics
from lmforge.continual.objective import MaskedObjective
from lmforge.continual.settings import ContinualJob
from lmforge.continual.strategies import Context, Strategy, make_strategy
from lmforge.continual.stream import Stream, load_stream
from lmforge.engine.checkpoint import latest_checkpoint
from lmforge.engine.hooks import StepHook
from lmforge.engine.loop import Engine, evaluate_model
from lmforge.engine.precision import make_accelerator
from lmforge.errors import ConfigError
from lmforge.finetuning.task import get_task
from lmforge.models.build import count_parameters, load_tokenizer, resolve_checkpoint
from lmforge.runs import (
    make_run_dir,
    refuse_earlier_run,
    save_atomically,
    save_run_config,
    write_json,
)
from lmforge.tracking import build_loggers

log = logging.getLogger(__name__)


def evaluate_row(ctx: Context, strategy: Strategy, accelerator: Any,
                 upto: int) -> list[float]:
    """Accuracy on every experience's evaluation set, with the classes open after ``upto``."""
    ctx.objective.set_masks(ctx.stream.class_masks(upto))
    row = []
    for j, exp in enumerate(ctx.stream.experiences):
        strategy.select(j)
        metrics = evaluate_model(ctx.objective, exp.eval, ctx.collator, accelerator,
                                 batch_size=ctx.job.eval_batch_size, reducer=ctx.task.reducer)
        row.append(float(metrics["eval_accuracy"]))
    strategy.select(None)
    return row


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _stages(stream: Stream, strategy: Strategy, root: Path) -> list[tuple[str, Path]]:
    if strategy.joint:
        return [("joint", root / "0-joint")]
    return [(e.name, root / f"{e.index}-{e.name}") for e in stream.experiences]


def _train_set(stream: Stream, strategy: Strategy, index: int) -> datasets.Dataset:
    if strategy.joint:
        return datasets.concatenate_datasets([e.train for e in stream.experiences])
    return stream.experiences[index].train


def run_continual(job: ContinualJob, resume: bool = False,
                  hooks: Sequence[StepHook] = ()) -> dict[str, Any]:
    """Train on the stream's experiences in order; evaluate all of them after each one.

    Args:
        job: The resolved config.
        resume: Continue a killed stream in ``job.output_dir``.
        hooks: Extra engine hooks for every experience (Python API; e.g. adversarial
            training). They run before the strategy's own hooks, so A-GEM projects the
            gradient they produced.

    Returns:
        The summary written to ``summary.json`` (accuracy matrix, ACC, BWT, FWT,
        forgetting, times, stored parameters).
    """
    if not job.model.pretrained:
        raise ConfigError("continual needs a starting model: set model.pretrained=FOLDER or a "
                          "builtin name (all-minilm-l6-v2)")
    task = get_task(job.experiences[0].task.name)
    if not task.supports_continual:
        raise ConfigError(f"task.name={task.name} has no continual-learning support yet; "
                          "streams of classification experiences work")
    wall0 = time.perf_counter()
    accelerator, precision = make_accelerator(job.train.precision)
    run_dir = make_run_dir(job.output_dir, "continual", must_exist=resume)
    # Without this a new run would silently reuse the finished experiences (and checkpoints)
    # of an earlier, possibly differently configured stream in the folder.
    refuse_earlier_run(run_dir, resume, kind="continual run", marks=(
        "initial.json", "experiences/*/done.json", "experiences/*/checkpoints"))
    if accelerator.is_main_process:
        save_run_config(run_dir, job)
    source = resolve_checkpoint(job.model.pretrained)
    tokenizer = load_tokenizer(job.model.tokenizer or source, job.model.trust_remote_code)
    with accelerator.main_process_first():
        stream = load_stream(job, task, tokenizer)
    torch.manual_seed(job.train.seed)
    model, _ = task.load_model(source, stream.settings, job.model)
    ctx = Context(job, stream, task, None, tokenizer, task.collator(tokenizer, model), source)
    strategy = make_strategy(ctx)
    model = strategy.prepare(model)
    inner = task.objective(model, stream.settings, job.train, stream.experiences[0].train)
    ctx.objective = MaskedObjective(inner, stream.class_masks(0))
    loggers = build_loggers(run_dir, job.track.backends, project=job.track.project,
                            run_name=job.track.run_name or run_dir.name,
                            is_main_process=accelerator.is_main_process)
    loggers.log_config(to_dict(job))
    names = [e.name for e in stream.experiences]
    stages = _stages(stream, strategy, run_dir / "experiences")
    initial_file = run_dir / "initial.json"
    initial = None
    if not strategy.joint:
        if initial_file.is_file():
            initial = json.loads(initial_file.read_text())["row"]
        else:
            initial = evaluate_row(ctx, strategy, accelerator, 0)
            if accelerator.is_main_process:
                write_json(initial_file, {"row": initial, "experiences": names})
            loggers.log({f"accuracy/{n}": v for n, v in zip(names, initial, strict=True)}, 0)
    rows: list[list[float]] = []
    records: list[dict[str, Any]] = []
    for _, folder in stages:
        done = folder / "done.json"
        if not done.is_file():
            break
        records.append(json.loads(done.read_text()))
        rows.append(records[-1]["row"])
    first = len(rows)
    if first:
        log.info("resuming the stream at experience %d of %d", first, len(stages))
        for i in range(first):
            strategy.restore(i, stages[i][1])
        strategy.load_model(first - 1, stages[first - 1][1] / "model")
    try:
        for i in range(first, len(stages)):
            name, folder = stages[i]
            done = folder / "done.json"
            folder.mkdir(parents=True, exist_ok=True)
            upto = stream.size - 1 if strategy.joint else i
            ctx.objective.set_masks(stream.class_masks(upto))
            step_hooks = [*hooks, *strategy.hooks(i)]
            accelerator, _ = make_accelerator(job.train.precision)  # a fresh state per training
            train_set = _train_set(stream, strategy, i)
            exp_loggers = build_loggers(folder, job.track.backends, project=job.track.project,
                                        run_name=f"{run_dir.name}/{name}",
                                        is_main_process=accelerator.is_main_process)
            lengths = [len(x) for x in train_set["input_ids"]] \
                if job.train.group_by_length else None
            engine = Engine(ctx.objective, dataclasses.replace(job.train, seed=job.train.seed + i),
                            train_set, ctx.collator, folder, hooks=step_hooks,
                            loggers=exp_loggers, lengths=lengths, accelerator=accelerator,
                            show_progress=job.track.progress)
            t0 = time.perf_counter()
            try:
                result = engine.train(resume=latest_checkpoint(folder / "checkpoints")
                                      is not None)
            finally:
                exp_loggers.close()
            seconds = time.perf_counter() - t0
            strategy.after_experience(i, engine, folder)
            if accelerator.is_main_process:
                save_atomically(folder / "model", lambda f, i=i: strategy.save_model(i, f))
            row = evaluate_row(ctx, strategy, accelerator, upto)
            rows.append(row)
            record = {"experience": name, "row": row, "train_seconds": round(seconds, 2),
                      "steps": result.state.global_step, "train_examples": len(train_set),
                      **strategy.summary()}
            records.append(record)
            if accelerator.is_main_process:
                write_json(done, record)
                if not job.keep_checkpoints:
                    shutil.rmtree(folder / "checkpoints", ignore_errors=True)
            seen = row[:i + 1] if not strategy.joint else row
            loggers.log({**{f"accuracy/{n}": v for n, v in zip(names, row, strict=True)},
                         "average_accuracy_seen": sum(seen) / len(seen)}, i + 1)
            del engine
            gc.collect()
    finally:
        loggers.close()
    metrics = stream_metrics(rows, initial)
    plots: dict[str, str] = {}
    if accelerator.is_main_process:
        row_names = [s[0] for s in stages]
        plots["accuracy_matrix"] = plot_matrix(names, rows, run_dir / "accuracy_matrix.png",
                                               row_names)
        plots["accuracy_curves"] = plot_curves(names, rows, run_dir / "accuracy_curves.png",
                                               initial)
    trainable, total = count_parameters(ctx.model)
    summary: dict[str, Any] = {
        "command": "continual", "run_dir": str(run_dir), "scenario": job.scenario,
        "strategy": job.strategy.name, "peft_method": job.peft.method,
        "precision": precision, "experiences": names,
        "labels": stream.labels, "train_examples": [len(e.train) for e in stream.experiences],
        "eval_examples": [len(e.eval) for e in stream.experiences],
        "accuracy_matrix": rows, "initial_accuracy": initial,
        **metrics,
        "train_seconds": round(sum(r["train_seconds"] for r in records), 2),
        "wall_seconds": round(time.perf_counter() - wall0, 2),
        "per_experience": records,
        "parameters": total, "trainable_parameters_last": trainable,
        "stored_parameters": strategy.stored_parameters(),
        "saved_model_bytes": sum(_folder_bytes(f / "model") for _, f in stages
                                 if (f / "model").is_dir()),
        **strategy.summary(),
        "plots": plots,
        "models": [str(f / "model") for _, f in stages],
    }
    summary["table"] = format_matrix(names, rows, metrics, initial)
    if accelerator.is_main_process:
        write_json(run_dir / "summary.json", {k: v for k, v in summary.items() if k != "table"})
    accelerator.wait_for_everyone()
    return summary
