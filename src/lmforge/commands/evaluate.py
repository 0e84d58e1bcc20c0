"""``lmforge evaluate``: a fine-tuned run's full report, or a pretrained LM's perplexity.

A folder holding ``lmforge_task.json`` (a finetune run, its ``model/`` folder, an ONNX export)
gets its task's report (metrics, plots, predictions); any other run is evaluated as a
language model on held-out text (perplexity, masked / next-token accuracy).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import datasets

from lmforge.commands.report import refresh_run_report
from lmforge.config import build_config, load_yaml
from lmforge.data.corpus import load_corpus
from lmforge.deploy.onnx_model import find_onnx_folder
from lmforge.engine.loop import evaluate_model
from lmforge.engine.precision import make_accelerator
from lmforge.errors import ConfigError, DataError
from lmforge.evaluation.settings import EvaluateJob
from lmforge.finetuning.saved import read_settings
from lmforge.finetuning.settings import FinetuneJob
from lmforge.models.build import build_model, load_tokenizer, resolve_checkpoint
from lmforge.predictor import load_predictor
from lmforge.pretraining.data import data_objective, lm_collator, prepare_splits
from lmforge.pretraining.objectives import lm_eval_reducer, wrap_for_objective
from lmforge.pretraining.settings import PretrainJob
from lmforge.runs import is_main_process, write_json


def run_evaluate(job: EvaluateJob, resume: bool = False) -> dict[str, Any]:
    """Evaluate ``job.run``: the task report of a fine-tuned model, else LM perplexity.

    Args:
        job: The resolved config.
        resume: Unused (an evaluation is re-run from scratch).

    Returns:
        The summary (the CLI prints its ``table`` when the task makes one).
    """
    if not job.run:
        raise ConfigError("set run=RUN_DIR (a pretrain or finetune run directory, or a model "
                          "folder)")

    run = Path(job.run)
    if run.exists() and (find_onnx_folder(run) is not None
                         or read_settings(resolve_checkpoint(str(run))) is not None):
        summary = evaluate_finetuned(job)
    elif not run.exists():
        raise ConfigError(f"run {job.run!r} does not exist; pass a run directory")
    else:
        summary = evaluate_language_model(job)
    if is_main_process() and Path(summary["run_dir"]).parent == run:
        refresh_run_report(run)  # the new eval-<split>/ shows in the run's own report
    return summary


def evaluate_finetuned(job: EvaluateJob) -> dict[str, Any]:
    """Full report of a fine-tuned run on a labeled file or on its own splits."""
    # A run directory, its model/ folder, or an ONNX export folder (torch or ONNX Runtime).
    loaded = load_predictor(job.run, precision="fp32")
    task, settings, tokenizer, model = loaded.task, loaded.settings, loaded.tokenizer, \
        loaded.model
    run = Path(job.run)
    saved = build_config(FinetuneJob, base=load_yaml(run / "config.yaml")) \
        if (run / "config.yaml").is_file() else FinetuneJob()
    if job.data.path:
        # A labeled file given now is evaluated whole (no split carved from it).
        corpus = load_corpus(replace(job.data, validation_ratio=0.0, test_ratio=0.0))
        only_train = list(corpus) == ["train"]
    elif saved.data.path:
        corpus = load_corpus(saved.data, seed=saved.train.seed)
        only_train = False
    else:
        raise ConfigError("no evaluation data: set data.path=FILE")
    if job.split in corpus:
        split = corpus[job.split]
    elif only_train:
        split = corpus["train"]
    else:
        raise DataError(f"split {job.split!r} not found (have {sorted(corpus)}); set split=")
    encoded = task.encode(split, tokenizer, settings, job.split)
    accelerator, _ = make_accelerator(job.precision)
    out_dir = Path(job.output_dir) if job.output_dir else run / f"eval-{job.split}"
    report = task.report(model, tokenizer, settings, split, encoded, out_dir, accelerator,
                         job.batch_size)
    summary = {"command": "evaluate", "run": str(run), "run_dir": str(out_dir),
               "split": job.split, "examples": len(encoded), **report["headline"],
               "report_dir": str(out_dir)}
    if "table" in report:
        summary["table"] = report["table"]  # printed by the CLI
    return summary


def evaluate_language_model(job: EvaluateJob) -> dict[str, Any]:
    """Perplexity and masked / next-token accuracy of a pretrained run on held-out text.

    The data defaults to the run's own validation split (same seed, same split), so the
    numbers match the ones logged during training.
    """
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
    objective_data, task = data_objective(saved)
    accelerator, precision = make_accelerator(job.precision)
    splits = prepare_splits(data, tokenizer, objective_data, saved.objective.whole_word_mask,
                            saved.objective.chinese_word_segmenter, saved.train.seed,
                            accelerator, splits=(job.split,))
    if job.split not in splits:
        raise DataError(f"split {job.split!r} not found in {data.path}; set split= to one of "
                        "train, validation, test")
    dataset: datasets.Dataset = splits[job.split]
    loaded = build_model(saved.model, tokenizer, task)
    wrapper = accelerator.prepare(wrap_for_objective(loaded.model, saved.objective.name))
    collator = lm_collator(saved.objective.name, tokenizer, saved.objective.mlm_probability,
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
