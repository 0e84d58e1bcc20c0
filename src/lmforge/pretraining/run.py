"""``lmforge pretrain`` and ``lmforge evaluate`` for pretrained runs."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import datasets
import torch
from accelerate import Accelerator

from lmforge.config import build_config, load_yaml, to_dict
from lmforge.data.collators import ClmCollator, MlmCollator
from lmforge.data.corpus import load_corpus
from lmforge.data.lm import prepare_lm_dataset
from lmforge.engine.hooks import StepHook
from lmforge.engine.loop import Engine, evaluate_model
from lmforge.engine.precision import make_accelerator
from lmforge.errors import ConfigError, DataError
from lmforge.models.build import build_model, count_parameters, load_tokenizer, resolve_checkpoint
from lmforge.pretraining.objectives import lm_eval_reducer, wrap_for_objective
from lmforge.runs import make_run_dir, save_atomically, save_run_config, write_json
from lmforge.settings import DataConfig, EvaluateJob, PretrainJob
from lmforge.tracking import build_loggers

log = logging.getLogger(__name__)


def _data_objective(job: PretrainJob) -> tuple[str, str]:
    """(objective for data preparation, task for the model)."""
    obj = job.objective
    if obj.name == "clm":
        if obj.sentence_task != "none":
            raise ConfigError("objective.sentence_task (nsp/sop) needs objective.name=mlm")
        return "clm", "clm"
    if obj.sentence_task != "none":
        return obj.sentence_task, "mlm+sentence"
    return "mlm", "mlm"


def _tokenizer_source(job: PretrainJob) -> str:
    source = job.model.tokenizer or job.model.pretrained
    if not source:
        raise ConfigError("pretraining from scratch needs a tokenizer: run `lmforge tokenizer "
                          "train` and set model.tokenizer=RUN_DIR (or give model.pretrained)")
    return source


def prepare_splits(data: DataConfig, tokenizer: Any, data_objective: str, whole_word: bool,
                   segmenter: str | None, seed: int, accelerator: Accelerator,
                   splits: tuple[str, ...] = ("train", "validation")) -> dict[str, Any]:
    """Load the corpus and tokenize the requested splits (rank 0 first, others hit the cache)."""
    with accelerator.main_process_first():
        corpus = load_corpus(data, seed=seed)
        out = {}
        for name in splits:
            if name not in corpus:
                continue
            out[name] = prepare_lm_dataset(
                corpus[name], tokenizer, objective=data_objective, text_column=data.text_column,
                max_length=data.max_length, packing=data.packing, whole_word_mask=whole_word,
                chinese_word_segmenter=segmenter, cache_dir=data.cache_dir,
                num_proc=data.num_proc, seed=seed, split_name=name)
    return out


def _collator(job_objective: str, tokenizer: Any, mlm_probability: float, whole_word: bool) -> Any:
    if job_objective == "clm":
        return ClmCollator(tokenizer)
    return MlmCollator(tokenizer, mlm_probability=mlm_probability, whole_word_mask=whole_word)


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
    if job.train.adversarial != "none" or job.data.augment != "none":
        raise ConfigError("train.adversarial and data.augment apply to lmforge finetune; "
                          "leave them at none for pretraining")
    accelerator, precision = make_accelerator(job.train.precision)
    run_dir = make_run_dir(job.output_dir, "pretrain", must_exist=resume)
    if accelerator.is_main_process:
        save_run_config(run_dir, job)
    data_objective, task = _data_objective(job)
    tokenizer = load_tokenizer(_tokenizer_source(job), job.model.trust_remote_code)
    obj = job.objective
    splits = prepare_splits(job.data, tokenizer, data_objective, obj.whole_word_mask,
                            obj.chinese_word_segmenter, job.train.seed, accelerator)
    train_ds, eval_ds = splits["train"], splits.get("validation")
    loaded = build_model(job.model, tokenizer, task,
                         max_positions=max(512, job.data.max_length), seed=job.train.seed)
    trainable, total = count_parameters(loaded.model)
    if loaded.new_head and accelerator.is_main_process:
        log.info("%s had no %s head; a new one was created", job.model.pretrained, task)
    lengths = [len(ids) for ids in train_ds["input_ids"]] if job.train.group_by_length else None
    loggers = build_loggers(run_dir, job.track.backends, project=job.track.project,
                            run_name=job.track.run_name or run_dir.name,
                            is_main_process=accelerator.is_main_process)
    loggers.log_config(to_dict(job))
    engine = Engine(wrap_for_objective(loaded.model, obj.name), job.train, train_ds,
                    _collator(obj.name, tokenizer, obj.mlm_probability, obj.whole_word_mask),
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
        "command": "pretrain",
        "run_dir": str(run_dir),
        "objective": obj.name if task != "mlm+sentence" else f"mlm+{obj.sentence_task}",
        "whole_word_mask": obj.whole_word_mask,
        "model_source": loaded.source,
        "new_head": loaded.new_head,
        "parameters": total,
        "trainable_parameters": trainable,
        "precision": precision,
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
        write_json(run_dir / "summary.json", summary)
    accelerator.wait_for_everyone()
    return summary


def run_evaluate(job: EvaluateJob, resume: bool = False) -> dict[str, Any]:
    """Perplexity and masked / next-token accuracy of a pretrained run on held-out text.

    The data defaults to the run's own validation split (same seed, same split), so the
    numbers match the ones logged during training.
    """
    if not job.run:
        raise ConfigError("set run=RUN_DIR (a pretrain run directory or a model folder)")
    from lmforge.finetuning.predict import evaluate_finetuned, task_info_of

    if Path(job.run).exists() and task_info_of(resolve_checkpoint(job.run)) is not None:
        return evaluate_finetuned(job)
    run = Path(job.run)
    if not run.exists():
        raise ConfigError(f"run {job.run!r} does not exist; pass a pretrain run directory")
    saved = build_config(PretrainJob, base=load_yaml(run / "config.yaml")) \
        if (run / "config.yaml").is_file() else PretrainJob()
    data = job.data if job.data.path else saved.data
    if not data.path:
        raise ConfigError("no evaluation data: set data.path=FILE (the run has no saved config)")
    model_dir = resolve_checkpoint(str(run))
    config_file = Path(model_dir) / "config.json"
    if not config_file.is_file():
        raise ConfigError(f"{model_dir} has no config.json; is the run finished?")
    tokenizer = load_tokenizer(model_dir)
    saved.model.pretrained, saved.model.tokenizer = model_dir, model_dir
    data_objective, task = _data_objective(saved)
    accelerator, precision = make_accelerator(job.precision)
    splits = prepare_splits(data, tokenizer, data_objective, saved.objective.whole_word_mask,
                            saved.objective.chinese_word_segmenter, saved.train.seed,
                            accelerator, splits=(job.split,))
    if job.split not in splits:
        raise DataError(f"split {job.split!r} not found in {data.path}; set split= to one of "
                        "train, validation, test")
    dataset: datasets.Dataset = splits[job.split]
    loaded = build_model(saved.model, tokenizer, task)
    wrapper = accelerator.prepare(wrap_for_objective(loaded.model, saved.objective.name))
    collator = _collator(saved.objective.name, tokenizer, saved.objective.mlm_probability,
                         saved.objective.whole_word_mask)
    metrics = evaluate_model(wrapper, dataset, collator, accelerator, batch_size=job.batch_size,
                             max_batches=job.max_batches, reducer=lm_eval_reducer, seed=job.seed)
    out_dir = Path(job.output_dir) if job.output_dir else run / f"eval-{job.split}"
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = {"command": "evaluate", "run": str(run), "run_dir": str(out_dir),
               "split": job.split,
               "examples": len(dataset), "precision": precision, **metrics}
    if accelerator.is_main_process:
        write_json(out_dir / "summary.json", summary)
    return summary
