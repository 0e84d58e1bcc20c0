"""The peer: MLM pretraining the way a user follows transformers' `run_mlm.py` example.

`load_dataset("text")`, tokenize, `group_texts` into fixed blocks, `DataCollatorForLanguageModeling`
defaults (15 %, 80/10/10), `Trainer` defaults (full-vocabulary MLM logits).

One change from the example, so that both sides train on the same token stream: run_mlm.py
wraps every *line* in [CLS] ... [SEP] before grouping (with tiny Shakespeare's short lines
that is about 20 % special tokens), while lmforge packs the text and wraps each *block*
(RoBERTa's FULL-SENTENCES packing). Here `group_texts` does what lmforge does: per map batch
of 1,000 lines, tokens without special tokens are concatenated, cut into chunks of
block - 2, each chunk wrapped in [CLS] ... [SEP], and a last chunk shorter than a quarter
block dropped. The bench checks that the blocks are identical (sha256 of the ids).

Tokens are counted as lmforge counts them: the non-padding tokens of every training batch
(`include_num_input_tokens_seen="non_padding"`; counting in the collator would also count the
batch the data loader fetches ahead).

Usage: hf_trainer_mlm.py SPLIT_DIR TOKENIZER_DIR OUT_DIR STEPS HP_JSON CONFIG_DIR
(HP_JSON: batch_size, block, lr, warmup, wd, beta2, eps, seed, clip, precision; CONFIG_DIR:
a folder whose config.json gives the model shape, e.g. the lmforge run's model/.)
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Any

from datasets import load_dataset
from transformers import (
    AutoTokenizer,
    BertConfig,
    BertForMaskedLM,
    DataCollatorForLanguageModeling,
    Trainer,
    TrainingArguments,
    set_seed,
)


def blocks_sha256(rows: list[list[int]]) -> str:
    """sha256 over the blocks' ids, in order (the bench compares it with lmforge's)."""
    h = hashlib.sha256()
    for row in rows:
        h.update(json.dumps([int(t) for t in row]).encode())
    return h.hexdigest()


def train_and_save(trainer: Trainer, tokenizer: Any, out: str) -> tuple[float, int, list[dict]]:
    """``trainer.train()`` timed, then the model and tokenizer saved to ``out`` (untimed).

    Returns:
        (training seconds, non-padding input tokens seen, the logged training losses).
    """
    t0 = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - t0
    trainer.save_model(out)
    tokenizer.save_pretrained(out)
    losses = [{"step": r["step"], "loss": r["loss"]} for r in trainer.state.log_history
              if "loss" in r]
    return seconds, int(trainer.state.num_input_tokens_seen), losses


def main() -> None:
    split, tok_dir, out, steps, hp, config_dir = (sys.argv[1], sys.argv[2], sys.argv[3],
                                                  int(sys.argv[4]), json.loads(sys.argv[5]),
                                                  sys.argv[6])
    set_seed(hp["seed"])
    tokenizer = AutoTokenizer.from_pretrained(tok_dir)
    raw = load_dataset("text", data_files={"train": f"{split}/train.txt"})
    block = hp["block"]
    body, min_tail = block - 2, max(4, block // 4)
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id

    def group_texts(examples: dict) -> dict:
        lines = [t for t in examples["text"] if t is not None]
        ids = tokenizer(lines, add_special_tokens=False)["input_ids"]
        stream = [t for row in ids for t in row]
        out_ids, out_special = [], []
        for start in range(0, len(stream), body):
            chunk = stream[start:start + body]
            if len(chunk) < body and len(chunk) + 2 < min_tail:
                continue
            out_ids.append([cls, *chunk, sep])
            out_special.append([1] + [0] * len(chunk) + [1])
        return {"input_ids": out_ids, "special_tokens_mask": out_special}

    # datasets' default map batch is 1,000 rows, lmforge's MAP_BATCH_SIZE too.
    train = raw["train"].map(group_texts, batched=True, batch_size=1000,
                             remove_columns=["text"])
    sha = blocks_sha256(train["input_ids"])
    config = BertConfig.from_pretrained(config_dir)
    model = BertForMaskedLM(config)
    bf16 = hp.get("precision") == "bf16"
    args = TrainingArguments(
        output_dir=out, per_device_train_batch_size=hp["batch_size"], max_steps=steps,
        learning_rate=hp["lr"], warmup_steps=hp["warmup"], weight_decay=hp["wd"],
        adam_beta2=hp["beta2"], adam_epsilon=hp["eps"], max_grad_norm=hp["clip"],
        seed=hp["seed"], logging_steps=10, save_strategy="no", report_to="none",
        use_cpu=True, disable_tqdm=True, bf16=bf16,
        include_num_input_tokens_seen="non_padding")
    collator = DataCollatorForLanguageModeling(tokenizer=tokenizer, mlm_probability=0.15)
    trainer = Trainer(model=model, args=args, train_dataset=train, data_collator=collator)
    seconds, tokens, losses = train_and_save(trainer, tokenizer, out)
    Path(out, "bench_summary.json").write_text(json.dumps(
        {"train_seconds": seconds, "tokens": tokens, "tokens_per_second": tokens / seconds,
         "train_blocks": len(train), "blocks_sha256": sha, "train_loss": losses,
         "precision": "bf16" if bf16 else "fp32"}))


if __name__ == "__main__":
    main()
