"""``lmforge predict`` and ``lmforge evaluate`` for fine-tuned runs (any registered task)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from lmforge.config import build_config, load_yaml
from lmforge.data.corpus import load_corpus
from lmforge.data.sources import load_raw
from lmforge.engine.precision import make_accelerator
from lmforge.errors import ConfigError, DataError
from lmforge.finetuning.task import TASK_FILE, get_task
from lmforge.models.build import load_tokenizer, resolve_checkpoint
from lmforge.peft.io import load_adapted_model
from lmforge.settings import EvaluateJob, FinetuneJob, PredictJob


def task_info_of(model_dir: str) -> dict[str, Any] | None:
    """The task settings saved next to a fine-tuned model, or None for other checkpoints."""
    path = Path(model_dir) / TASK_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def _load_run(run: str) -> tuple[str, dict[str, Any], Any, Any, Any]:
    if not run:
        raise ConfigError("set run=RUN_DIR (a finetune run directory or its model folder)")
    if (Path(run) / "model.onnx").is_file():  # an `lmforge export` ONNX folder
        from lmforge.deploy.onnx_model import load_onnx_model

        model, tokenizer, info, task = load_onnx_model(run)
        return run, info, task, tokenizer, model
    model_dir = resolve_checkpoint(run)
    if not Path(model_dir).is_dir():
        raise ConfigError(f"run {run!r} does not exist; pass a finetune run directory")
    info = task_info_of(model_dir)
    if info is None:
        raise ConfigError(f"{model_dir} is not a fine-tuned lmforge model (no {TASK_FILE}); "
                          "pass a finetune run directory")
    task = get_task(info["task"])
    tokenizer = load_tokenizer(model_dir)
    model = load_adapted_model(model_dir, task, info)  # full, peft or lmforge-adapter folder
    return model_dir, info, task, tokenizer, model


def _read_inputs(source: str, text_column: str) -> Iterator[dict[str, Any]]:
    """Records from stdin / a text file (one text per line) / a jsonl, csv, tsv file."""
    if source == "-":
        for line in sys.stdin:
            if line.strip():
                yield {text_column: line.rstrip("\n")}
        return
    path = Path(source)
    if not path.is_file():
        raise DataError(f"input file {source!r} not found; pass input=FILE or input=- for stdin")
    if path.suffix in (".jsonl", ".json", ".csv", ".tsv", ".parquet"):
        split = next(iter(load_raw(str(path)).values()))
        yield from split
        return
    with open(path, encoding="utf-8") as fh:
        yield from ({text_column: line.rstrip("\n")} for line in fh if line.strip())


def _batches(items: Iterator[Any], size: int) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def run_predict(job: PredictJob, resume: bool = False) -> dict[str, Any]:
    """Predict for a file or stdin; write one JSON object per input."""
    _, info, task, tokenizer, model = _load_run(job.run)
    column = job.text_column or info.get("text_column", "text")
    out = sys.stdout if job.output == "-" else open(job.output, "w", encoding="utf-8")  # noqa: SIM115
    count = 0
    try:
        for records in _batches(_read_inputs(job.input, column), job.batch_size):
            for row in task.predict(model, tokenizer, info, records, job.top_k):
                out.write(json.dumps(row, ensure_ascii=False) + "\n")
                count += 1
    finally:
        if out is not sys.stdout:
            out.close()
    if count == 0:
        raise DataError(f"no inputs in {job.input!r}; give one text per line")
    return {"command": "predict", "inputs": count, "output": job.output}


def evaluate_finetuned(job: EvaluateJob) -> dict[str, Any]:
    """Full report of a fine-tuned run on a labeled file or on its own splits."""
    _, info, task, tokenizer, model = _load_run(job.run)
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
    encoded = task.encode(split, tokenizer, info, job.split)
    accelerator, _ = make_accelerator(job.precision)
    out_dir = Path(job.output_dir) if job.output_dir else run / f"eval-{job.split}"
    report = task.report(model, tokenizer, info, split, encoded, out_dir, accelerator,
                         job.batch_size)
    summary = {"command": "evaluate", "run": str(run), "run_dir": str(out_dir),
               "split": job.split, "examples": len(encoded), **report["headline"],
               "report_dir": str(out_dir)}
    if "table" in report:
        summary["table"] = report["table"]  # printed by the CLI
    return summary
