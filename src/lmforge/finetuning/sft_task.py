"""Supervised fine-tuning of causal LMs on chats as a :class:`~lmforge.finetuning.task.Task`.

The loss covers the assistant replies only (labels are -100 elsewhere, see
:mod:`lmforge.finetuning.sft`). The report gives loss / perplexity on those reply tokens plus
sample generations for the first few prompts; ``predict`` answers prompts or conversations.

Chat template: a tokenizer without one gets :data:`~lmforge.finetuning.sft.DEFAULT_CHAT_TEMPLATE`
in :meth:`ChatSftTask.encode` (a deliberate side effect on the tokenizer object), so the
tokenizer that ``lmforge finetune`` saves with the model renders prompts exactly as in training.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import datasets
import torch
from torch import nn
from transformers import AutoModelForCausalLM

from lmforge.errors import DataError
from lmforge.evaluation.generation import generation_metrics
from lmforge.finetuning.classification_task import load_pretrained
from lmforge.finetuning.generative import (
    GenerativeTaskBase,
    TokenLossObjective,
    format_table,
    generative_model_kwargs,
    write_jsonl,
)
from lmforge.finetuning.sft import END_OF_TURN, SftCollator, chat_prompt, ensure_chat_template
from lmforge.finetuning.sft import prepare_sft as _prepare_sft
from lmforge.runs import write_json

NUM_SAMPLES = 8  # prompts answered in the report (generation is slow; loss covers the split)


def conversation(record: dict[str, Any], info: dict[str, Any],
                 what: str = "input") -> tuple[list[dict[str, str]], str | None]:
    """Split a record into (messages to answer, reference reply or None).

    A ``messages`` record loses a final assistant message, which becomes the reference; a
    ``prompt`` record becomes one user message (with ``response`` as reference when present).
    A record with a single other field (a text-file line read under another name) is a prompt.
    """
    messages_column, prompt_column = info["messages_column"], info["prompt_column"]
    if messages_column in record and record[messages_column] is not None:
        messages = [{"role": m["role"], "content": m["content"]}
                    for m in record[messages_column]]
        reference = None
        if messages and messages[-1]["role"] == "assistant":
            reference = messages.pop()["content"]
        if not messages:
            raise DataError(f"an {what} conversation has no message before the reply; "
                            "give it a user message")
        return messages, reference
    if prompt_column not in record and len(record) == 1:
        record = {prompt_column: next(iter(record.values()))}
    if prompt_column not in record:
        raise DataError(f"an {what} record has neither {messages_column!r} nor "
                        f"{prompt_column!r} (has {', '.join(map(str, record))}); "
                        "rename the field or set text_column=")
    reference = record.get(info["response_column"])
    return ([{"role": "user", "content": str(record[prompt_column])}],
            None if reference is None else str(reference))


@torch.no_grad()
def generate_replies(model: nn.Module, tokenizer: Any, conversations: list[list[dict[str, str]]],
                     *, max_new_tokens: int = 128, num_beams: int = 1, batch_size: int = 8,
                     device: torch.device | str = "cpu") -> list[str]:
    """Greedy / beam assistant replies, cut at the end-of-turn marker.

    Prompts are left-padded by hand (the tokenizer's padding side and pad token are left
    untouched, since this tokenizer object may be saved afterwards).
    """
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None \
        else tokenizer.eos_token_id
    pad = 0 if pad is None else int(pad)
    was_training = model.training
    model.eval()
    replies: list[str] = []
    try:
        for start in range(0, len(conversations), batch_size):
            chunk = conversations[start:start + batch_size]
            ids = [tokenizer(chat_prompt(tokenizer, c), add_special_tokens=False)["input_ids"]
                   for c in chunk]
            width = max(len(x) for x in ids)
            input_ids = torch.tensor([[pad] * (width - len(x)) + x for x in ids])  # (B, L)
            mask = torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in ids])  # (B, L)
            generated = model.generate(
                input_ids=input_ids.to(device), attention_mask=mask.to(device),
                max_new_tokens=max_new_tokens, num_beams=num_beams, do_sample=False,
                pad_token_id=pad, stop_strings=[END_OF_TURN], tokenizer=tokenizer)
            texts = tokenizer.batch_decode(generated[:, width:], skip_special_tokens=True)
            # A batch runs until every row stops, so rows may run past their own marker.
            replies.extend(t.split(END_OF_TURN)[0].strip() for t in texts)
    finally:
        model.train(was_training)
    return replies


class ChatSftTask(GenerativeTaskBase):
    """Instruction / chat tuning of decoder-only models on prompt-response or messages data."""

    name = "sft"

    def setup(self, job: Any, train: datasets.Dataset) -> dict[str, Any]:
        """Column names, lengths and decoding options (saved with the model)."""
        task = job.task
        return {"task": self.name, "messages_column": task.messages_column,
                "prompt_column": task.prompt_column, "response_column": task.response_column,
                "max_length": job.data.max_length, "train_on_prompt": task.train_on_prompt,
                "max_new_tokens": task.max_new_tokens, "num_beams": task.num_beams,
                # `lmforge predict` reads a plain text file's lines into this column.
                "text_column": task.prompt_column}

    def encode(self, raw: datasets.Dataset, tokenizer: Any, info: dict[str, Any],
               split_name: str) -> datasets.Dataset:
        """Render chats and mask non-reply labels.

        Side effects: gives ``tokenizer`` the default chat template if it has none (so it is
        saved with the model) and records the tokenizer size in ``info`` for ``load_model``.
        """
        ensure_chat_template(tokenizer)
        info["tokenizer_size"] = len(tokenizer)
        return _prepare_sft(raw, tokenizer, max_length=info.get("max_length", 1024),
                            messages_column=info["messages_column"],
                            prompt_column=info["prompt_column"],
                            response_column=info["response_column"],
                            train_on_prompt=info.get("train_on_prompt", False),
                            split_name=split_name)

    def load_model(self, source: str, info: dict[str, Any],
                   model_cfg: Any = None) -> tuple[nn.Module, bool]:
        """``AutoModelForCausalLM``; embeddings grow if the tokenizer has more tokens."""
        model, new = load_pretrained(AutoModelForCausalLM, source,
                                     generative_model_kwargs(source, model_cfg), "sft")
        size = info.get("tokenizer_size", 0)
        if size > model.get_input_embeddings().num_embeddings:
            model.resize_token_embeddings(size)
            new = True
        return model, new

    def objective(self, model: nn.Module, info: dict[str, Any], train_cfg: Any,
                  train: datasets.Dataset) -> nn.Module:
        """Next-token cross-entropy on reply tokens; ``n`` = trained tokens."""
        return TokenLossObjective(model, shift=True,
                                  label_smoothing=getattr(train_cfg, "label_smoothing", 0.0))

    def collator(self, tokenizer: Any, model: nn.Module) -> Any:
        """Right padding; labels -100 at padding."""
        return SftCollator(tokenizer)

    def report(self, model: nn.Module, tokenizer: Any, info: dict[str, Any],
               raw: datasets.Dataset, encoded: datasets.Dataset, out_dir: Path,
               accelerator: Any, batch_size: int = 64) -> dict[str, Any]:
        """Reply loss / perplexity over the split, plus generations for the first prompts.

        Writes ``summary.json`` and ``predictions.jsonl`` (messages, reference, prediction).
        """
        out_dir.mkdir(parents=True, exist_ok=True)
        lm = self.token_metrics(model, encoded, SftCollator(tokenizer), accelerator, batch_size,
                                shift=True)
        metrics: dict[str, Any] = {k.removeprefix("eval_"): v for k, v in lm.items()}
        rows = [conversation(r, info, "evaluation") for r in raw.select(
            range(min(NUM_SAMPLES, len(raw))))]
        predictions = generate_replies(model, tokenizer, [m for m, _ in rows],
                                       max_new_tokens=info.get("max_new_tokens", 128),
                                       num_beams=info.get("num_beams", 1),
                                       device=accelerator.device)
        headline = {k: float(metrics[k]) for k in ("loss", "perplexity", "token_accuracy",
                                                   "tokens")}
        pairs = [(p, ref) for p, (_, ref) in zip(predictions, rows, strict=True) if ref]
        if pairs:
            samples = generation_metrics([p for p, _ in pairs], [r for _, r in pairs])
            metrics["samples"] = samples
            headline["sample_rougeL"] = float(samples["rougeL"])
        write_jsonl(out_dir / "predictions.jsonl",
                    ({"messages": m, "reference": ref, "prediction": p}
                     for (m, ref), p in zip(rows, predictions, strict=True)))
        report = {"headline": headline, "metrics": metrics, "num_samples": len(rows),
                  "predictions": str(out_dir / "predictions.jsonl")}
        write_json(out_dir / "summary.json", report)
        report["table"] = format_table(headline)
        return report

    def predict(self, model: nn.Module, tokenizer: Any, info: dict[str, Any],
                records: list[dict[str, Any]], top_k: int = 1) -> list[dict[str, Any]]:
        """The assistant's reply to each record (``top_k`` is ignored)."""
        chats = [conversation(r, info)[0] for r in records]
        replies = generate_replies(model, tokenizer, chats,
                                   max_new_tokens=info.get("max_new_tokens", 128),
                                   num_beams=info.get("num_beams", 1),
                                   batch_size=max(len(chats), 1),
                                   device=next(model.parameters()).device)
        return [{"prompt": c[-1]["content"] if len(c) == 1 else c, "response": r}
                for c, r in zip(chats, replies, strict=True)]
