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

import gc
import json
import logging
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lmforge.commands.context import RunContext, open_run
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
from lmforge.runs import save_atomically, write_json
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


@dataclass
class _StreamRun:
    """What one stream run holds between its phases (setup, experiences, summary)."""

    job: ContinualJob
    ctx: Context
    strategy: Strategy
    context: RunContext
    loggers: Any
    stages: list[tuple[str, Path]]
    wall0: float
    initial: list[float] | None = None

    @property
    def accelerator(self) -> Any:
        """The run's accelerator (rebuilt fresh for each experience's training)."""
        return self.context.accelerator

    @property
    def run_dir(self) -> Path:
        """The stream's run folder."""
        return self.context.run_dir

    @property
    def names(self) -> list[str]:
        """The experiences' names, in stream order."""
        return [e.name for e in self.ctx.stream.experiences]


def _setup(job: ContinualJob, resume: bool) -> _StreamRun:
    """Check the job; make the run folder, the stream, the model, the strategy, the loggers."""
    if not job.model.pretrained:
        raise ConfigError("continual needs a starting model: set model.pretrained=FOLDER or a "
                          "builtin name (all-minilm-l6-v2)")
    task = get_task(job.experiences[0].task.name)
    if not task.supports_continual:
        raise ConfigError(f"task.name={task.name} has no continual-learning support yet; "
                          "streams of classification experiences work")
    wall0 = time.perf_counter()
    # The refusal's marks: without them a new run would silently reuse the finished
    # experiences (and checkpoints) of an earlier, possibly differently configured stream.
    context = open_run("continual", job, resume=resume, train=True, earlier_run=(
        "continual run", ("initial.json", "experiences/*/done.json",
                          "experiences/*/checkpoints")))
    accelerator, run_dir = context.accelerator, context.run_dir
    source = resolve_checkpoint(job.model.pretrained)
    tokenizer = load_tokenizer(job.model.tokenizer or source, job.model.trust_remote_code)
    with accelerator.main_process_first():
        stream = load_stream(job, task, tokenizer)
    model, _ = task.load_model(source, stream.settings, job.model)
    ctx = Context(job, stream, task, None, tokenizer, task.collator(tokenizer, model), source)
    strategy = make_strategy(ctx)
    model = strategy.prepare(model)
    inner = task.objective(model, stream.settings, job.train, stream.experiences[0].train)
    ctx.objective = MaskedObjective(inner, stream.class_masks(0))
    loggers = context.loggers()
    stages = _stages(stream, strategy, run_dir / "experiences")
    return _StreamRun(job, ctx, strategy, context, loggers, stages, wall0)


def _initial_row(run: _StreamRun) -> list[float] | None:
    """Row b of the initial model (read back on resume); None for joint (no stream)."""
    if run.strategy.joint:
        return None
    initial_file = run.run_dir / "initial.json"
    if initial_file.is_file():
        return json.loads(initial_file.read_text())["row"]
    initial = evaluate_row(run.ctx, run.strategy, run.accelerator, 0)
    if run.accelerator.is_main_process:
        write_json(initial_file, {"row": initial, "experiences": run.names})
    run.loggers.log({f"accuracy/{n}": v for n, v in zip(run.names, initial, strict=True)}, 0)
    return initial


def _finished(run: _StreamRun) -> list[dict[str, Any]]:
    """The records of the experiences already done (resume), their state restored."""
    records: list[dict[str, Any]] = []
    for _, folder in run.stages:
        done = folder / "done.json"
        if not done.is_file():
            break
        records.append(json.loads(done.read_text()))
    if records:
        first = len(records)
        log.info("resuming the stream at experience %d of %d", first, len(run.stages))
        for i in range(first):
            run.strategy.restore(i, run.stages[i][1])
        run.strategy.load_model(first - 1, run.stages[first - 1][1] / "model")
    return records


def _fit(run: _StreamRun, i: int, hooks: Sequence[StepHook]) -> tuple[Any, int, float]:
    """Train experience (stage) ``i`` with the strategy's hooks: (result, rows, seconds)."""
    job, ctx, strategy = run.job, run.ctx, run.strategy
    name, folder = run.stages[i]
    step_hooks = [*hooks, *strategy.hooks(i)]
    # A fresh accelerate state per training (the stream's context keeps the latest).
    run.context.accelerator, _ = make_accelerator(job.train.precision)
    train_set = strategy.train_set(i)
    exp_loggers = build_loggers(folder, job.track.backends, project=job.track.project,
                                run_name=f"{run.run_dir.name}/{name}",
                                is_main_process=run.accelerator.is_main_process)
    lengths = [len(x) for x in train_set["input_ids"]] if job.train.group_by_length else None
    engine = Engine(ctx.objective, strategy.train_config(i, job.train), train_set,
                    ctx.collator, folder, hooks=step_hooks, loggers=exp_loggers,
                    lengths=lengths, accelerator=run.accelerator,
                    show_progress=job.track.progress)
    t0 = time.perf_counter()
    try:
        result = engine.train(resume=latest_checkpoint(folder / "checkpoints") is not None)
    finally:
        exp_loggers.close()
    seconds = time.perf_counter() - t0
    strategy.after_experience(i, engine, folder)
    del engine
    gc.collect()
    return result, len(train_set), seconds


def _experience(run: _StreamRun, i: int, hooks: Sequence[StepHook]) -> dict[str, Any]:
    """Learn stage ``i``, save its model, evaluate the stream: its record (row i of R)."""
    job, ctx, strategy, stream = run.job, run.ctx, run.strategy, run.ctx.stream
    name, folder = run.stages[i]
    folder.mkdir(parents=True, exist_ok=True)
    upto = stream.size - 1 if strategy.joint else i
    ctx.objective.set_masks(stream.class_masks(upto))
    result, examples, seconds = _fit(run, i, hooks)
    if run.accelerator.is_main_process:
        save_atomically(folder / "model", lambda f, i=i: strategy.save_model(i, f))
    row = evaluate_row(ctx, strategy, run.accelerator, upto)
    record = {"experience": name, "row": row, "train_seconds": round(seconds, 2),
              "steps": result.state.global_step, "train_examples": examples,
              **strategy.summary()}
    if run.accelerator.is_main_process:
        write_json(folder / "done.json", record)
        if not job.keep_checkpoints:
            shutil.rmtree(folder / "checkpoints", ignore_errors=True)
    seen = row[:i + 1] if not strategy.joint else row
    run.loggers.log({**{f"accuracy/{n}": v for n, v in zip(run.names, row, strict=True)},
                     "average_accuracy_seen": sum(seen) / len(seen)}, i + 1)
    return record


def _summary(run: _StreamRun, records: list[dict[str, Any]]) -> dict[str, Any]:
    """Stream metrics, plots and ``summary.json`` from the rows of R."""
    job, ctx, strategy, stream, names = run.job, run.ctx, run.strategy, run.ctx.stream, run.names
    rows = [r["row"] for r in records]
    metrics = stream_metrics(rows, run.initial)
    plots: dict[str, str] = {}
    if run.accelerator.is_main_process:
        row_names = [s[0] for s in run.stages]
        plots["accuracy_matrix"] = plot_matrix(names, rows, run.run_dir / "accuracy_matrix.png",
                                               row_names)
        plots["accuracy_curves"] = plot_curves(names, rows, run.run_dir / "accuracy_curves.png",
                                               run.initial)
    trainable, total = count_parameters(ctx.model)
    summary: dict[str, Any] = {
        "scenario": job.scenario,
        "strategy": job.strategy.name, "peft_method": job.peft.method,
        "precision": run.context.precision, "experiences": names,
        "labels": stream.labels, "train_examples": [len(e.train) for e in stream.experiences],
        "eval_examples": [len(e.eval) for e in stream.experiences],
        "accuracy_matrix": rows, "initial_accuracy": run.initial,
        **metrics,
        "train_seconds": round(sum(r["train_seconds"] for r in records), 2),
        "wall_seconds": round(time.perf_counter() - run.wall0, 2),
        "per_experience": records,
        "parameters": total, "trainable_parameters_last": trainable,
        "stored_parameters": strategy.stored_parameters(),
        "saved_model_bytes": sum(_folder_bytes(f / "model") for _, f in run.stages
                                 if (f / "model").is_dir()),
        **strategy.summary(),
        "plots": plots,
        "models": [str(f / "model") for _, f in run.stages],
    }
    summary = run.context.finish(summary)
    return {**summary, "table": format_matrix(names, rows, metrics, run.initial)}


def run_continual(job: ContinualJob, resume: bool = False,
                  hooks: Sequence[StepHook] = ()) -> dict[str, Any]:
    """Train on the stream's experiences in order; evaluate all of them after each one.

    Setup (:func:`_setup`), the initial row, each experience's fit and evaluation
    (:func:`_experience`), then the summary (:func:`_summary`).

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
    run = _setup(job, resume)
    try:
        run.initial = _initial_row(run)
        records = _finished(run)
        for i in range(len(records), len(run.stages)):
            records.append(_experience(run, i, hooks))
    finally:
        run.loggers.close()
    return _summary(run, records)
