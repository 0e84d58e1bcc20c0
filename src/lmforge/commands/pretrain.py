"""``lmforge pretrain``: self-supervised pretraining, from scratch or continued."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator

from lmforge.commands.context import open_run
from lmforge.engine.hooks import StepHook
from lmforge.engine.loop import Engine
from lmforge.errors import ConfigError
from lmforge.models.build import build_model, count_parameters, load_tokenizer
from lmforge.pretraining.data import data_objective, lm_collator, prepare_splits
from lmforge.pretraining.objectives import lm_eval_reducer, wrap_for_objective
from lmforge.pretraining.settings import PretrainJob
from lmforge.runs import save_atomically

log = logging.getLogger(__name__)


def _tokenizer_source(job: PretrainJob) -> str:
    source = job.model.tokenizer or job.model.pretrained
    if not source:
        raise ConfigError("pretraining from scratch needs a tokenizer: run `lmforge tokenizer "
                          "train` and set model.tokenizer=RUN_DIR (or give model.pretrained)")
    return source


def rank_checksums(model: torch.nn.Module, accelerator: Accelerator) -> list[float]:
    """A weight checksum from every process: after DDP training they must all be equal."""
    with torch.no_grad():
        value = sum(float(p.double().sum() + p.double().abs().sum() * (i + 1))
                    for i, p in enumerate(model.parameters()))
    tensor = torch.tensor([value], dtype=torch.float64, device=accelerator.device)
    return [round(v, 6) for v in accelerator.gather(tensor).tolist()]


def run_pretrain(job: PretrainJob, resume: bool = False,
                 hooks: Sequence[StepHook] = ()) -> dict[str, Any]:
    """Pretrain (from scratch or continued) and save the model to ``<run>/model``.

    Args:
        job: The resolved config.
        resume: Continue from the run's latest checkpoint.
        hooks: Extra engine hooks (Python API only).

    Returns:
        The summary written to ``summary.json``.
    """
    run = open_run("pretrain", job, resume=resume, train=True)
    run_dir, accelerator = run.run_dir, run.accelerator
    objective_data, task = data_objective(job)
    tokenizer = load_tokenizer(_tokenizer_source(job), job.model.trust_remote_code)
    obj = job.objective
    splits = prepare_splits(job.data, tokenizer, objective_data, obj.whole_word_mask,
                            obj.chinese_word_segmenter, job.train.seed, accelerator)
    train_ds, eval_ds = splits["train"], splits.get("validation")
    loaded = build_model(job.model, tokenizer, task,
                         max_positions=max(512, job.data.max_length), seed=job.train.seed)
    trainable, total = count_parameters(loaded.model)
    if loaded.new_head and accelerator.is_main_process:
        log.info("%s had no %s head; a new one was created", job.model.pretrained, task)
    lengths = [len(ids) for ids in train_ds["input_ids"]] if job.train.group_by_length else None
    loggers = run.loggers()
    engine = Engine(wrap_for_objective(loaded.model, obj.name), job.train, train_ds,
                    lm_collator(obj.name, tokenizer, obj.mlm_probability, obj.whole_word_mask),
                    run_dir, eval_dataset=eval_ds, eval_reducer=lm_eval_reducer,
                    hooks=hooks, loggers=loggers, lengths=lengths, accelerator=accelerator,
                    show_progress=job.track.progress)
    initial = engine.evaluate() if eval_ds is not None and not resume else {}
    t0 = time.perf_counter()
    try:
        result = engine.train(resume=resume)
    finally:
        loggers.close()
    final = result.metrics or (engine.evaluate() if eval_ds is not None else {})
    checksums = rank_checksums(loaded.model, accelerator)
    summary = {
        "objective": obj.name if task != "mlm+sentence" else f"mlm+{obj.sentence_task}",
        "whole_word_mask": obj.whole_word_mask,
        "model_source": loaded.source,
        "new_head": loaded.new_head,
        "parameters": total,
        "trainable_parameters": trainable,
        "precision": run.precision,
        "processes": accelerator.num_processes,
        "rank_checksums": checksums,
        "ranks_in_sync": len(set(checksums)) == 1,
        "train_examples": len(train_ds),
        "tokens_per_example": job.data.max_length,
        "steps": result.state.global_step,
        "tokens_seen": result.state.tokens_seen,
        "train_seconds": round(time.perf_counter() - t0, 2),
        "tokens_per_second": round(result.tokens_per_second, 1),
        "initial_eval": initial,
        "final_eval": final,
        "best_step": result.state.best_step,
        "model_dir": str(run_dir / "model"),
    }
    if accelerator.is_main_process:
        model = loaded.model

        def _write(folder: Path) -> None:
            model.save_pretrained(folder)
            tokenizer.save_pretrained(folder)

        save_atomically(run_dir / "model", _write)
    return run.finish(summary)
