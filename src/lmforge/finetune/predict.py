"""``lmforge predict`` and ``lmforge evaluate`` for fine-tuned classification runs."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lmforge.config import build_config, load_yaml
from lmforge.data.corpus import load_corpus
from lmforge.data.sources import load_raw
from lmforge.errors import ConfigError, DataError
from lmforge.finetune.classification import ClassificationCollator, prepare_classification
from lmforge.finetune.report import evaluate_classifier, format_table
from lmforge.finetune.run import TASK_FILE, load_classifier
from lmforge.models.build import load_tokenizer, resolve_checkpoint
from lmforge.pretrain.run import make_accelerator
from lmforge.settings import EvaluateJob, FinetuneJob, PredictJob


def task_info_of(model_dir: str) -> dict[str, Any] | None:
    """The task settings saved next to a fine-tuned model, or None for other checkpoints."""
    path = Path(model_dir) / TASK_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def _load_run(run: str) -> tuple[str, dict[str, Any], Any, Any]:
    if not run:
        raise ConfigError("set run=RUN_DIR (a finetune run directory or its model folder)")
    model_dir = resolve_checkpoint(run)
    if not Path(model_dir).is_dir():
        raise ConfigError(f"run {run!r} does not exist; pass a finetune run directory")
    info = task_info_of(model_dir)
    if info is None:
        raise ConfigError(f"{model_dir} is not a fine-tuned lmforge model (no {TASK_FILE}); "
                          "pass a finetune run directory")
    tokenizer = load_tokenizer(model_dir)
    model, _ = load_classifier(model_dir, None, info["multi_label"])
    return model_dir, info, tokenizer, model


def _read_inputs(source: str, text_column: str) -> Iterator[str]:
    if source == "-":
        for line in sys.stdin:
            if line.strip():
                yield line.rstrip("\n")
        return
    path = Path(source)
    if not path.is_file():
        raise DataError(f"input file {source!r} not found; pass input=FILE or input=- for stdin")
    if path.suffix in (".jsonl", ".json", ".csv", ".tsv", ".parquet"):
        split = next(iter(load_raw(str(path)).values()))
        if text_column not in split.column_names:
            raise DataError(f"column {text_column!r} not in {path.name} (columns: "
                            f"{', '.join(split.column_names)}); set text_column=")
        yield from (str(t) for t in split[text_column])
        return
    with open(path, encoding="utf-8") as fh:
        yield from (line.rstrip("\n") for line in fh if line.strip())


def _batches(items: Iterator[str], size: int) -> Iterator[list[str]]:
    batch: list[str] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


@torch.no_grad()
def predict_texts(model: Any, tokenizer: Any, info: dict[str, Any], texts: list[str],
                  top_k: int = 1) -> list[dict[str, Any]]:
    """Label(s) and scores for raw texts, as ``lmforge predict`` writes them."""
    model.eval()
    enc = tokenizer(texts, truncation=True, max_length=info.get("max_length", 128),
                    padding=True, return_tensors="pt")
    logits = model(**enc).logits.float()
    id2label = model.config.id2label
    multi = info.get("multi_label", False)
    probs = (torch.sigmoid(logits) if multi else torch.softmax(logits, -1)).numpy()
    thresholds = np.asarray(info["thresholds"]) if info.get("thresholds") else 0.5
    results = []
    for text, p in zip(texts, probs, strict=True):
        order = np.argsort(-p)[:top_k]
        record: dict[str, Any] = {"text": text,
                                  "top_k": [{"label": id2label[int(c)], "score": float(p[c])}
                                            for c in order]}
        if multi:
            record["labels"] = [id2label[int(c)] for c in np.flatnonzero(p >= thresholds)]
        else:
            record["label"], record["score"] = id2label[int(order[0])], float(p[order[0]])
        results.append(record)
    return results


def run_predict(job: PredictJob, resume: bool = False) -> dict[str, Any]:
    """Predict labels for a file or stdin; write one JSON object per input."""
    _, info, tokenizer, model = _load_run(job.run)
    column = job.text_column or info.get("text_column", "text")
    out = sys.stdout if job.output == "-" else open(job.output, "w", encoding="utf-8")  # noqa: SIM115
    count = 0
    try:
        for texts in _batches(_read_inputs(job.input, column), job.batch_size):
            for record in predict_texts(model, tokenizer, info, texts, job.top_k):
                out.write(json.dumps(record, ensure_ascii=False) + "\n")
                count += 1
    finally:
        if out is not sys.stdout:
            out.close()
    if count == 0:
        raise DataError(f"no input texts in {job.input!r}; give one text per line")
    return {"command": "predict", "inputs": count, "output": job.output}


def evaluate_finetuned(job: EvaluateJob) -> dict[str, Any]:
    """Full classification report of a fine-tuned run on a labeled file or its own splits."""
    model_dir, info, tokenizer, model = _load_run(job.run)
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
    label_names = [model.config.id2label[i] for i in range(model.config.num_labels)]
    label2id = {n: i for i, n in enumerate(label_names)}
    prepared = prepare_classification(split, tokenizer, label2id,
                                      text_column=info["text_column"],
                                      text_pair_column=info.get("text_pair_column"),
                                      label_column=info["label_column"],
                                      multi_label=info["multi_label"],
                                      separator=info.get("label_separator", ","),
                                      max_length=info.get("max_length", 128), split_name=job.split)
    accelerator, _ = make_accelerator(job.precision)
    out_dir = Path(job.output_dir) if job.output_dir else run / f"eval-{job.split}"
    report = evaluate_classifier(model, prepared, split, ClassificationCollator(tokenizer),
                                 label_names, info, out_dir, accelerator, job.batch_size)
    print(format_table(report, label_names))
    return {"command": "evaluate", "run": str(run), "split": job.split,
            "examples": len(prepared), **report["headline"], "report_dir": str(out_dir),
            "plots": report["plots"]}
