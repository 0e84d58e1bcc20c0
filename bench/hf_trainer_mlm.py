"""The peer: MLM pretraining the way a user follows transformers' `run_mlm.py` example.

`load_dataset("text")`, tokenize every line with special tokens, `group_texts` into fixed
blocks, `DataCollatorForLanguageModeling` defaults, `Trainer` defaults (fp32 on CPU).
Usage: hf_trainer_mlm.py SPLIT_DIR TOKENIZER_DIR OUT_DIR STEPS HP_JSON
"""

from __future__ import annotations

import json
import sys
import time
from itertools import chain
from pathlib import Path

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


def main() -> None:
    split, tok_dir, out, steps, hp = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), \
        json.loads(sys.argv[5])
    set_seed(hp["seed"])
    tokenizer = AutoTokenizer.from_pretrained(tok_dir)
    raw = load_dataset("text", data_files={"train": f"{split}/train.txt"})
    block = hp["block"]

    def tokenize(examples):
        return tokenizer(examples["text"], return_special_tokens_mask=True)

    def group_texts(examples):
        concatenated = {k: list(chain(*examples[k])) for k in examples}
        total = (len(concatenated["input_ids"]) // block) * block
        return {k: [t[i:i + block] for i in range(0, total, block)]
                for k, t in concatenated.items()}

    train = raw["train"].map(tokenize, batched=True, remove_columns=["text"])
    train = train.map(group_texts, batched=True)
    # Same shapes as lmforge's BERT-mini preset (Turc et al. 2019).
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=256, num_hidden_layers=4,
                        num_attention_heads=4, intermediate_size=1024,
                        max_position_embeddings=512, pad_token_id=tokenizer.pad_token_id)
    model = BertForMaskedLM(config)
    args = TrainingArguments(
        output_dir=out, per_device_train_batch_size=hp["batch_size"], max_steps=steps,
        learning_rate=hp["lr"], warmup_steps=hp["warmup"], weight_decay=hp["wd"],
        adam_beta2=hp["beta2"], adam_epsilon=hp["eps"], max_grad_norm=hp["clip"],
        seed=hp["seed"], logging_steps=10, save_strategy="no", report_to="none",
        use_cpu=True, disable_tqdm=True)
    collator = DataCollatorForLanguageModeling(tokenizer=tokenizer, mlm_probability=0.15)
    trainer = Trainer(model=model, args=args, train_dataset=train, data_collator=collator)
    t0 = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - t0
    trainer.save_model(out)
    tokenizer.save_pretrained(out)
    tokens = steps * hp["batch_size"] * block
    Path(out, "bench_summary.json").write_text(json.dumps(
        {"train_seconds": seconds, "tokens": tokens, "tokens_per_second": tokens / seconds}))


if __name__ == "__main__":
    main()
