"""The peer: continued causal-LM pretraining the way a user follows transformers' `run_clm.py`.

The example's recipe, unchanged: `load_dataset("text", keep_linebreaks=True)`, tokenize every
line (`tokenizer(examples["text"])`, map batches of 1,000), `group_texts`: concatenate a map
batch's tokens and cut blocks of `block` tokens, dropping the remainder; `labels` = the ids;
`default_data_collator`; `Trainer` with `AutoModelForCausalLM.from_pretrained` of the same
folder lmforge starts from. Optimizer, schedule, clipping, seed and precision come from
HP_JSON (the bench passes the same values to both sides); the data loader keeps the
Trainer's defaults (no worker processes: with two cores a worker would take a core from the
matrix products, and `default_data_collator` on fixed blocks costs microseconds).

Tokens are counted as lmforge counts them: the non-padding tokens of every training batch
(`include_num_input_tokens_seen="non_padding"`; here no block is padded). A callback records the
wall clock every `window` steps, for the steady-state rate beside the whole-run one.

Usage: hf_trainer_clm.py SPLIT_DIR MODEL_DIR OUT_DIR STEPS HP_JSON
(HP_JSON: batch_size, block, lr, warmup_steps, wd, beta2, eps, seed, clip, precision,
scheduler, window.)
"""

from __future__ import annotations

import json
import sys
import time
from itertools import chain
from pathlib import Path

from datasets import load_dataset
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    Trainer,
    TrainerCallback,
    TrainingArguments,
    default_data_collator,
    set_seed,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from hf_trainer_mlm import train_and_save  # noqa: E402  (the same timed train-and-save tail)


class WindowClock(TrainerCallback):
    """Wall-clock time at step 0 and at every ``window``-th optimizer step."""

    def __init__(self, window: int) -> None:
        self.window = window
        self.marks: list[tuple[int, float]] = []

    def on_train_begin(self, args, state, control, **kwargs):  # noqa: ANN001, ANN201, D102
        self.marks.append((0, time.perf_counter()))

    def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001, ANN201, D102
        if state.global_step % self.window == 0:
            self.marks.append((state.global_step, time.perf_counter()))


def main() -> None:
    split, model_dir, out, steps, hp = (sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]),
                                        json.loads(sys.argv[5]))
    set_seed(hp["seed"])
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    raw = load_dataset("text", data_files={"train": f"{split}/train.txt"}, keep_linebreaks=True)
    block = min(hp["block"], tokenizer.model_max_length)

    def tokenize_function(examples: dict) -> dict:
        return tokenizer(examples["text"])

    def group_texts(examples: dict) -> dict:
        # run_clm.py's group_texts, verbatim in effect.
        concatenated = {k: list(chain(*examples[k])) for k in examples}
        total_length = len(concatenated[next(iter(examples))])
        total_length = (total_length // block) * block
        result = {k: [t[i:i + block] for i in range(0, total_length, block)]
                  for k, t in concatenated.items()}
        result["labels"] = result["input_ids"].copy()
        return result

    tokenized = raw["train"].map(tokenize_function, batched=True, remove_columns=["text"])
    train = tokenized.map(group_texts, batched=True)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    bf16 = hp["precision"] == "bf16"
    args = TrainingArguments(
        output_dir=out, per_device_train_batch_size=hp["batch_size"], max_steps=steps,
        learning_rate=hp["lr"], warmup_steps=hp["warmup_steps"], weight_decay=hp["wd"],
        adam_beta2=hp["beta2"], adam_epsilon=hp["eps"], max_grad_norm=hp["clip"],
        lr_scheduler_type=hp["scheduler"], seed=hp["seed"], logging_steps=10,
        save_strategy="no", report_to="none", use_cpu=True, disable_tqdm=True, bf16=bf16,
        include_num_input_tokens_seen="non_padding")
    clock = WindowClock(hp["window"])
    trainer = Trainer(model=model, args=args, train_dataset=train,
                      data_collator=default_data_collator, callbacks=[clock])
    seconds, tokens, losses = train_and_save(trainer, tokenizer, out)
    per_step = hp["batch_size"] * block  # every block is full
    windows = [per_step * (b[0] - a[0]) / (b[1] - a[1])
               for a, b in zip(clock.marks, clock.marks[1:], strict=False)]
    Path(out, "bench_summary.json").write_text(json.dumps(
        {"train_seconds": seconds, "tokens": tokens, "tokens_per_second": tokens / seconds,
         "window_tokens_per_s": windows, "train_blocks": len(train), "train_loss": losses,
         "precision": "bf16" if bf16 else "fp32"}))


if __name__ == "__main__":
    main()
