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
from typing import Annotated, Any, Literal

import datasets
import torch
from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from torch import nn
from transformers import AutoModelForCausalLM

from lmforge.errors import DataError
from lmforge.evaluation.generation import generation_metrics
from lmforge.finetuning.generative import (
    GenerationSettings,
    GenerativeTaskBase,
    TokenLossObjective,
    decoding,
    format_table,
    write_jsonl,
)
from lmforge.finetuning.models import generative_model_kwargs, load_pretrained
from lmforge.finetuning.sft.data import (
    END_OF_TURN,
    SftCollator,
    chat_prompt,
    ensure_chat_template,
)
from lmforge.finetuning.sft.data import prepare_sft as _prepare_sft
from lmforge.finetuning.sft.settings import SftSettings
from lmforge.finetuning.task import saved_settings
from lmforge.runs import write_json
from lmforge.wire import InputRecord, record_model

NUM_SAMPLES = 8  # prompts answered in the report (generation is slow; loss covers the split)


class ChatTurn(BaseModel):
    """One turn of a conversation."""

    model_config = ConfigDict(extra="forbid", strict=True)
    role: Literal["system", "user", "assistant"]
    content: str


def _has_question(turns: list[ChatTurn]) -> list[ChatTurn]:
    if all(t.role == "assistant" for t in turns):
        raise ValueError("a conversation needs a system or user turn to answer")
    return turns


Conversation = Annotated[list[ChatTurn], AfterValidator(_has_question), Field(
    min_length=1, json_schema_extra={"contains": {"properties": {
        "role": {"enum": ["system", "user"]}}, "required": ["role"]}})]
"""Turns to answer (a final assistant turn is the reference, not answered)."""



def conversation(record: dict[str, Any], settings: SftSettings,
                 what: str = "input") -> tuple[list[dict[str, str]], str | None]:
    """Split a record into (messages to answer, reference reply or None).

    A ``messages`` record loses a final assistant message, which becomes the reference; a
    ``prompt`` record becomes one user message (with ``response`` as reference when present).
    A record with a single other field (a text-file line read under another name) is a prompt.
    """
    messages_column, prompt_column = settings.messages_column, settings.prompt_column
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
    reference = record.get(settings.response_column)
    return ([{"role": "user", "content": str(record[prompt_column])}],
            None if reference is None else str(reference))


@torch.no_grad()
def generate_replies(model: nn.Module, tokenizer: Any, conversations: list[list[dict[str, str]]],
                     *, max_new_tokens: int = 128, num_beams: int = 1, batch_size: int = 8,
                     device: torch.device | str = "cpu",
                     settings: GenerationSettings | None = None) -> list[str]:
    """Assistant replies (greedy / beam, or as ``settings`` say), cut at the end-of-turn marker.

    Prompts are left-padded by hand (the tokenizer's padding side and pad token are left
    untouched, since this tokenizer object may be saved afterwards).

    Args:
        settings: Decoding options (sampling, penalties, extra stop strings); when given they
            replace ``max_new_tokens`` and ``num_beams``.
    """
    settings = settings or GenerationSettings(max_new_tokens=max_new_tokens,
                                              num_beams=num_beams)
    stops = [END_OF_TURN, *settings.stop]
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
                **settings.to_generate_kwargs(), pad_token_id=pad, stop_strings=stops,
                tokenizer=tokenizer)
            texts = tokenizer.batch_decode(generated[:, width:], skip_special_tokens=True)
            # A batch runs until every row stops, so rows may run past their own marker.
            replies.extend(settings.cut(t.split(END_OF_TURN)[0]).strip() for t in texts)
    finally:
        model.train(was_training)
    return replies


class ChatSftTask(GenerativeTaskBase):
    """Instruction / chat tuning of decoder-only models on prompt-response or messages data."""

    name = "sft"
    settings_class = SftSettings
    peft_task_type = "CAUSAL_LM"
    per_token_outputs = True
    takes_past_key_values = True
    accepts_messages = True
    stop_string = END_OF_TURN

    def tuning_objectives(self, options: Any) -> tuple[str, ...]:
        """The keys of the shared generative reducer (:mod:`lmforge.finetuning.generative`)."""
        return ("eval_loss", "eval_perplexity", "eval_token_accuracy")

    def setup(self, job: Any, train: datasets.Dataset) -> SftSettings:
        """Column names, lengths and decoding options (saved with the model)."""
        task = job.task
        return saved_settings(
            SftSettings, task, task=self.name, max_length=job.data.max_length,
            # `lmforge predict` reads a plain text file's lines into this column.
            text_column=task.prompt_column)

    def encode(self, raw: datasets.Dataset, tokenizer: Any, settings: SftSettings,
               split_name: str) -> datasets.Dataset:
        """Render chats and mask non-reply labels.

        Side effects: gives ``tokenizer`` the default chat template if it has none (so it is
        saved with the model) and records the tokenizer size in ``settings`` for ``load_model``.
        """
        ensure_chat_template(tokenizer)
        settings.tokenizer_size = len(tokenizer)
        return _prepare_sft(raw, tokenizer, max_length=settings.max_length,
                            messages_column=settings.messages_column,
                            prompt_column=settings.prompt_column,
                            response_column=settings.response_column,
                            train_on_prompt=settings.train_on_prompt,
                            split_name=split_name)

    def load_model(self, source: str, settings: SftSettings,
                   model_cfg: Any = None) -> tuple[nn.Module, bool]:
        """``AutoModelForCausalLM``; embeddings grow if the tokenizer has more tokens."""
        model, new = load_pretrained(AutoModelForCausalLM, source,
                                     generative_model_kwargs(source, model_cfg), "sft")
        size = settings.tokenizer_size
        if size > model.get_input_embeddings().num_embeddings:
            model.resize_token_embeddings(size)
            new = True
        return model, new

    def objective(self, model: nn.Module, settings: SftSettings, train_cfg: Any,
                  train: datasets.Dataset) -> nn.Module:
        """Next-token cross-entropy on reply tokens; ``n`` = trained tokens."""
        return TokenLossObjective(model, shift=True,
                                  label_smoothing=getattr(train_cfg, "label_smoothing", 0.0))

    def collator(self, tokenizer: Any, model: nn.Module) -> Any:
        """Right padding; labels -100 at padding."""
        return SftCollator(tokenizer)

    def report(self, model: nn.Module, tokenizer: Any, settings: SftSettings,
               raw: datasets.Dataset, encoded: datasets.Dataset, out_dir: Path,
               accelerator: Any, batch_size: int = 64) -> dict[str, Any]:
        """Reply loss / perplexity over the split, plus generations for the first prompts.

        Writes ``summary.json`` and ``predictions.jsonl`` (messages, reference, prediction).
        """
        out_dir.mkdir(parents=True, exist_ok=True)
        lm = self.token_metrics(model, encoded, SftCollator(tokenizer), accelerator, batch_size,
                                shift=True)
        metrics: dict[str, Any] = {k.removeprefix("eval_"): v for k, v in lm.items()}
        rows = [conversation(r, settings, "evaluation") for r in raw.select(
            range(min(NUM_SAMPLES, len(raw))))]
        predictions = generate_replies(model, tokenizer, [m for m, _ in rows],
                                       settings=decoding(settings),
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

    def predict(self, model: nn.Module, tokenizer: Any, settings: SftSettings,
                records: list[dict[str, Any]], top_k: int = 1) -> list[dict[str, Any]]:
        """The assistant's reply to each record, decoded as ``settings`` say.

        ``top_k`` (labels per input) has no meaning here; ``lmforge predict`` refuses a value
        above 1 for a generative run and points at ``generate.top_k`` (sampling).
        """
        chats = [conversation(r, settings)[0] for r in records]
        replies = generate_replies(model, tokenizer, chats, settings=decoding(settings),
                                   batch_size=max(len(chats), 1),
                                   device=next(model.parameters()).device)
        return [{"prompt": c[-1]["content"] if len(c) == 1 else c, "response": r}
                for c, r in zip(chats, replies, strict=True)]

    # ---------------------------------------------------------------- what other stages ask
    def record_from_text(self, settings: SftSettings, text: str) -> dict[str, Any]:
        """A bare text is the prompt."""
        return {settings.prompt_column: text}

    def input_record_model(self, settings: SftSettings) -> type[InputRecord]:
        """A prompt string or a conversation with a system or user turn."""
        return record_model("ChatInput", {
            settings.prompt_column: (str, Field(None, description="A prompt (one user turn).")),
            settings.messages_column: (Conversation, Field(None, description=(
                "A conversation; it wins over the prompt.")))},
            "A prompt or a conversation to answer.",
            any_of=(settings.prompt_column, settings.messages_column))

    def check_record(self, settings: SftSettings, record: dict[str, Any]) -> str | None:
        """A conversation with a non-assistant turn, or a prompt string."""
        messages = record.get(settings.messages_column)
        if isinstance(messages, list) and messages:
            ok = all(isinstance(m, dict) and isinstance(m.get("role"), str)
                     and isinstance(m.get("content"), str) for m in messages) \
                and any(m["role"] != "assistant" for m in messages)
        else:
            ok = isinstance(record.get(settings.prompt_column), str) or (
                len(record) == 1 and isinstance(next(iter(record.values())), str))
        return None if ok else (f"each input needs a string field {settings.prompt_column!r} "
                                f"or a {settings.messages_column!r} list of {{role, content}}")

    def generation_inputs(self, tokenizer: Any, settings: SftSettings, prompt: str | None,
                          messages: list[dict[str, str]] | None) -> dict[str, Any]:
        """The conversation (or the prompt as one user turn) in the chat template."""
        chat = messages if messages else [{"role": "user", "content": prompt or ""}]
        ids = tokenizer(chat_prompt(tokenizer, chat), add_special_tokens=False)["input_ids"]
        return {"input_ids": torch.tensor([ids]),
                "attention_mask": torch.ones(1, len(ids), dtype=torch.long)}

    def generation_kwargs(self, tokenizer: Any) -> dict[str, Any]:
        """Stop at the end-of-turn marker; pad with the pad (or EOS) token."""
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None \
            else tokenizer.eos_token_id
        return {"pad_token_id": 0 if pad is None else int(pad), "stop_strings": [END_OF_TURN],
                "tokenizer": tokenizer}
