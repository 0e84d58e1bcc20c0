"""The peer for dialogue SFT: trl's `SFTTrainer` with LoRA, as its docs set it up.

Run by `bench/sft_smollm2.py` beside `lmforge finetune task.name=sft`, on the same
``train.jsonl`` (a ``messages`` column: trl applies the tokenizer's chat template itself).

Loss: `assistant_only_loss=True`, trl's documented setting for multi-turn conversational data
(loss on every assistant turn, as lmforge's). It needs a chat template with
``{% generation %}`` markers; SmolLM2's has none and trl 1.x has no patched version of it
(`get_training_chat_template` says "manually modify the chat template"), so the tokenizer
gets :data:`SMOLLM2_TRAINING_TEMPLATE`: SmolLM2's template, rendering the same text, with
the reply and its ``<|im_end|>`` inside the markers (the newline after it stays outside, as
lmforge's reply spans end before trailing whitespace).

Settings a competent user sets (HP_JSON keys): "lr", "batch_size", "max_length", "epochs",
"warmup" (a ratio: `warmup_steps` < 1 is a ratio in transformers 5), "wd", "seed", "r",
"alpha", "dropout", "targets", "bf16", "group_by_length", "gradient_checkpointing" (trl's
default is on; off for a 135M model that fits in memory, as lmforge runs it: faster).
`padding_free` / bfd packing are not used: they need a varlen attention kernel (flash
attention) to keep sequences apart, which CPUs lack; with SDPA they would let packed
conversations attend to each other.

Measured: `train_seconds` from the `on_train_begin` to the `on_train_end` callback (no
evaluation or saving in between), the non-padding input tokens of the training set that one
epoch sees, the trained (assistant) tokens, and the peak resident memory of the process.

Usage: trl_sft.py DATA_DIR OUT_DIR HP_JSON
  writes OUT_DIR/adapter/ (the LoRA adapter and tokenizer) and OUT_DIR/bench_summary.json.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from pathlib import Path

SMOLLM2_TRAINING_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
    "Face<|im_end|>\n' }}{% endif %}"
    "{% if message['role'] == 'assistant' %}{{ '<|im_start|>assistant\n' }}"
    "{% generation %}{{ message['content'] + '<|im_end|>' }}{% endgeneration %}{{ '\n' }}"
    "{% else %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + "
    "'<|im_end|>' + '\n' }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def main() -> None:
    """Train one epoch of LoRA SFT and write the adapter and bench_summary.json."""
    import torch
    from datasets import load_dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    from lmforge.models.build import resolve_checkpoint

    data, out, hp = Path(sys.argv[1]), Path(sys.argv[2]), json.loads(sys.argv[3])
    load_at_start = os.getloadavg()[0]
    source = resolve_checkpoint(hp.get("model", "smollm2-135m-instruct"))
    tokenizer = AutoTokenizer.from_pretrained(source)
    original = tokenizer.chat_template
    tokenizer.chat_template = SMOLLM2_TRAINING_TEMPLATE
    probe = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]
    if tokenizer.apply_chat_template(probe, tokenize=False) != tokenizer.apply_chat_template(
            probe, tokenize=False, chat_template=original):
        sys.exit("the training template renders differently from SmolLM2's; fix it")
    model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32,
                                                 attn_implementation="sdpa")
    train = load_dataset("json", data_files=str(data / "train.jsonl"), split="train")
    args = SFTConfig(
        output_dir=str(out / "trainer"), use_cpu=True, bf16=bool(hp["bf16"]),
        per_device_train_batch_size=hp["batch_size"], num_train_epochs=hp["epochs"],
        learning_rate=hp["lr"], lr_scheduler_type="linear", warmup_steps=hp["warmup"],
        weight_decay=hp["wd"], seed=hp["seed"], max_length=hp["max_length"],
        assistant_only_loss=True, packing=False, padding_free=False,
        gradient_checkpointing=bool(hp["gradient_checkpointing"]),
        train_sampling_strategy="group_by_length" if hp["group_by_length"] else "random",
        eval_strategy="no", save_strategy="no", report_to="none", disable_tqdm=True,
        logging_steps=10, dataloader_num_workers=0)
    peft_config = LoraConfig(r=hp["r"], lora_alpha=hp["alpha"], lora_dropout=hp["dropout"],
                             target_modules=hp["targets"], task_type="CAUSAL_LM")
    trainer = SFTTrainer(model=model, args=args, train_dataset=train,
                         processing_class=tokenizer, peft_config=peft_config)

    class Clock(TrainerCallback):
        """Training time only: from the first to the last step's end, nothing else."""

        begin = end = 0.0

        def on_train_begin(self, *a: object, **k: object) -> None:
            Clock.begin = time.perf_counter()

        def on_train_end(self, *a: object, **k: object) -> None:
            Clock.end = time.perf_counter()

    trainer.add_callback(Clock())
    ds = trainer.train_dataset
    tokens = sum(len(ids) for ids in ds["input_ids"])
    trained = sum(sum(v != -100 for v in row) for row in ds["labels"])
    result = trainer.train()
    seconds = Clock.end - Clock.begin
    trainer.model.save_pretrained(str(out / "adapter"))
    tokenizer.save_pretrained(str(out / "adapter"))
    (out / "bench_summary.json").write_text(json.dumps({
        "train_seconds": seconds, "trainer_train_runtime": result.metrics.get("train_runtime"),
        "train_examples": len(ds), "steps": result.global_step,
        "train_tokens": tokens, "trained_tokens": trained,
        "tokens_per_second": tokens / seconds, "train_loss": result.training_loss,
        "maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "load_avg_1m_at_start": round(load_at_start, 2),
        "torch_threads": torch.get_num_threads()}))


if __name__ == "__main__":
    main()
