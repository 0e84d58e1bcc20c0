"""Sequence-to-sequence fine-tuning (T5, mT5, BART) as a :class:`~lmforge.finetuning.task.Task`.

Training is teacher-forced token cross-entropy on the target (see
:mod:`lmforge.finetuning.seq2seq`); evaluation during training reports loss and perplexity, and
the final report generates an output for every source and scores it with ROUGE and BLEU.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import datasets
from pydantic import Field
from torch import nn
from transformers import AutoModelForSeq2SeqLM

from lmforge.errors import ConfigError, DataError
from lmforge.evaluation.generation import generation_metrics
from lmforge.finetuning.generative import (
    GenerativeTaskBase,
    TokenLossObjective,
    decoding,
    format_table,
    write_jsonl,
)
from lmforge.finetuning.models import generative_model_kwargs, load_pretrained
from lmforge.finetuning.seq2seq.data import (
    Seq2SeqCollator,
    generate_texts,
    prepare_seq2seq,
)
from lmforge.finetuning.seq2seq.settings import Seq2SeqSettings
from lmforge.finetuning.task import saved_settings
from lmforge.runs import write_json
from lmforge.wire import InputRecord, record_model


def _sources(records: list[dict[str, Any]], column: str, what: str) -> list[str]:
    """The source texts of ``records``; a one-line DataError when the column is missing."""
    out = []
    for i, record in enumerate(records):
        if column not in record and len(record) == 1:
            # A text file read with another text_column: its only field is the source.
            record = {column: next(iter(record.values()))}
        if column not in record:
            raise DataError(f"{what} record {i} has no {column!r} field (has "
                            f"{', '.join(map(str, record))}); name the source column "
                            f"{column!r} or pass text_column=")
        out.append("" if record[column] is None else str(record[column]))
    return out


class Seq2SeqTask(GenerativeTaskBase):
    """Summarization / translation / any text-to-text task with an encoder-decoder."""

    name = "seq2seq"
    settings_class = Seq2SeqSettings
    peft_task_type = "SEQ_2_SEQ_LM"
    takes_past_key_values = True

    def tuning_objectives(self, options: Any) -> tuple[str, ...]:
        """The keys of the shared generative reducer (:mod:`lmforge.finetuning.generative`)."""
        return ("eval_loss", "eval_perplexity", "eval_token_accuracy")

    def setup(self, job: Any, train: datasets.Dataset) -> Seq2SeqSettings:
        """Column names, lengths and decoding options (saved with the model)."""
        task = job.task
        for column in (task.source_column, task.target_column):
            if column not in train.column_names:
                raise DataError(f"column {column!r} not found in train (columns: "
                                f"{', '.join(train.column_names)}); set task.source_column / "
                                "task.target_column")
        return saved_settings(
            Seq2SeqSettings, task, task=self.name, max_length=job.data.max_length,
            # `lmforge predict` reads a plain text file's lines into this column.
            text_column=task.source_column)

    def encode(self, raw: datasets.Dataset, tokenizer: Any, settings: Seq2SeqSettings,
               split_name: str) -> datasets.Dataset:
        """Tokenize sources (with the prefix) and targets (ending with EOS)."""
        return prepare_seq2seq(raw, tokenizer, source_column=settings.source_column,
                               target_column=settings.target_column,
                               max_source_length=settings.max_length,
                               max_target_length=settings.max_target_length,
                               source_prefix=settings.source_prefix,
                               split_name=split_name)

    def load_model(self, source: str, settings: Seq2SeqSettings,
                   model_cfg: Any = None) -> tuple[nn.Module, bool]:
        """``AutoModelForSeq2SeqLM`` (T5, mT5, BART, mBART, Marian, ...)."""
        model, new = load_pretrained(AutoModelForSeq2SeqLM, source,
                                     generative_model_kwargs(source, model_cfg), "seq2seq")
        if not getattr(model.config, "is_encoder_decoder", False):
            raise ConfigError(f"{source!r} is not an encoder-decoder model; seq2seq needs T5, "
                              "BART or similar (use task.name=sft for decoder-only models)")
        return model, new

    def objective(self, model: nn.Module, settings: Seq2SeqSettings, train_cfg: Any,
                  train: datasets.Dataset) -> nn.Module:
        """Target-token cross-entropy (optionally label-smoothed)."""
        return TokenLossObjective(model, shift=False,
                                  label_smoothing=getattr(train_cfg, "label_smoothing", 0.0))

    def collator(self, tokenizer: Any, model: nn.Module) -> Any:
        """Pads sources and labels; builds ``decoder_input_ids`` with the model's shift."""
        return Seq2SeqCollator(tokenizer, model)

    def report(self, model: nn.Module, tokenizer: Any, settings: Seq2SeqSettings,
               raw: datasets.Dataset, encoded: datasets.Dataset, out_dir: Path,
               accelerator: Any, batch_size: int = 64) -> dict[str, Any]:
        """Loss / perplexity, then generate every output and score it (ROUGE, BLEU).

        Writes ``summary.json`` and ``predictions.jsonl`` (source, target, prediction).
        """
        out_dir.mkdir(parents=True, exist_ok=True)
        lm = self.token_metrics(model, encoded, Seq2SeqCollator(tokenizer, model), accelerator,
                                batch_size, shift=False)
        # encode() already checked both columns exist; None sources read as empty text.
        sources = ["" if s is None else str(s) for s in raw[settings.source_column]]
        targets = [str(t) for t in raw[settings.target_column]]
        predictions = generate_texts(model, tokenizer, sources, decoding(settings),
                                     batch_size=min(batch_size, 32),
                                     source_prefix=settings.source_prefix,
                                     max_source_length=settings.max_length,
                                     device=accelerator.device)
        metrics = generation_metrics(predictions, targets)
        metrics["exact_match"] = sum(p.strip() == t.strip() for p, t in
                                     zip(predictions, targets, strict=True)) / len(targets)
        metrics.update({k.removeprefix("eval_"): v for k, v in lm.items()})
        headline = {k: float(metrics[k]) for k in ("rouge1", "rouge2", "rougeL", "bleu",
                                                   "exact_match", "gen_len", "loss",
                                                   "perplexity")}
        write_jsonl(out_dir / "predictions.jsonl",
                    ({"source": s, "target": t, "prediction": p}
                     for s, t, p in zip(sources, targets, predictions, strict=True)))
        report = {"headline": headline, "metrics": metrics,
                  "predictions": str(out_dir / "predictions.jsonl")}
        write_json(out_dir / "summary.json", report)
        report["table"] = format_table(headline)
        return report

    def predict(self, model: nn.Module, tokenizer: Any, settings: Seq2SeqSettings,
                records: list[dict[str, Any]], top_k: int = 1) -> list[dict[str, Any]]:
        """One generated text per record (``top_k`` is ignored: one output per source)."""
        sources = _sources(records, settings.source_column, "input")
        device = next(model.parameters()).device
        outputs = generate_texts(model, tokenizer, sources, decoding(settings),
                                 batch_size=max(len(sources), 1),
                                 source_prefix=settings.source_prefix,
                                 max_source_length=settings.max_length, device=device)
        return [{"source": s, "prediction": p} for s, p in zip(sources, outputs, strict=True)]

    # ---------------------------------------------------------------- what other stages ask
    def record_from_text(self, settings: Seq2SeqSettings, text: str) -> dict[str, Any]:
        """A bare text is the source."""
        return {settings.source_column: text}

    def input_record_model(self, settings: Seq2SeqSettings) -> type[InputRecord]:
        """The source text (over HTTP the field must carry the source column's name)."""
        return record_model("Seq2SeqInput", {settings.source_column: (
            str, Field(..., description="The source text."))}, "One source text.")

    def check_record(self, settings: Seq2SeqSettings, record: dict[str, Any]) -> str | None:
        """A source string (or a record whose only field is a string)."""
        ok = isinstance(record.get(settings.source_column), str) or (
            len(record) == 1 and isinstance(next(iter(record.values())), str))
        return None if ok else f"each input needs a string field {settings.source_column!r}"

    def generation_inputs(self, tokenizer: Any, settings: Seq2SeqSettings, prompt: str | None,
                          messages: list[dict[str, str]] | None) -> dict[str, Any]:
        """The prompt with the task's source prefix, cut to ``max_length`` (batch of one)."""
        if messages:
            raise DataError("a seq2seq model takes a prompt, not messages; send "
                            "{\"prompt\": ...}")
        enc = tokenizer([settings.source_prefix + (prompt or "")], truncation=True,
                        max_length=settings.max_length, return_tensors="pt")
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}
