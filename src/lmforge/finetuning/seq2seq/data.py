"""Sequence-to-sequence fine-tuning (summarization, translation) for encoder-decoder models.

The encoder reads the source; the decoder is trained with teacher forcing to emit the target.
Loss is token cross-entropy on ``labels`` (target ids ending with EOS, -100 at padding). The
decoder input is the labels shifted right behind the model's ``decoder_start_token_id``
(T5: pad, BART: ``</s>``), which the model computes itself; the collator precomputes it (as
transformers' ``DataCollatorForSeq2Seq`` does) only so the batch is complete before the step.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import datasets
import torch

from lmforge.data.collators import pad_batch, pad_id_of
from lmforge.errors import ConfigError, DataError
from lmforge.finetuning.generative import GenerationSettings

log = logging.getLogger(__name__)

MAP_BATCH_SIZE = 1000


def prepare_seq2seq(
    ds: datasets.Dataset,
    tokenizer: Any,
    *,
    source_column: str = "source",
    target_column: str = "target",
    max_source_length: int = 512,
    max_target_length: int = 128,
    source_prefix: str = "",
    split_name: str = "train",
) -> datasets.Dataset:
    """Tokenize source/target pairs; no padding (the collator pads per batch).

    Args:
        ds: A raw split with a source and a target text column.
        tokenizer: The model's tokenizer (must have an EOS token).
        source_column: Column with the input text.
        target_column: Column with the expected output text.
        max_source_length: Source tokens kept, special tokens included.
        max_target_length: Target tokens kept, the final EOS included.
        source_prefix: Text put before every source (T5 task prefixes such as
            ``"summarize: "``).
        split_name: Used in messages only.

    Returns:
        Dataset with ``input_ids``, ``attention_mask`` and ``labels`` (lists of ints; labels
        always end with ``eos_token_id``).

    Raises:
        DataError: A column is missing, the split is empty, or a target is empty.
        ConfigError: Bad lengths or a tokenizer without EOS.
    """
    for column in (source_column, target_column):
        if column not in ds.column_names:
            raise DataError(
                f"column {column!r} not found in {split_name} (columns: "
                f"{', '.join(ds.column_names)}); set the source/target column names"
            )
    if len(ds) == 0:
        raise DataError(f"the {split_name} split is empty; check data.path")
    if max_source_length < 2 or max_target_length < 2:
        raise ConfigError(
            f"max_source_length={max_source_length} and max_target_length={max_target_length} "
            "must both be >= 2; raise them"
        )
    eos = tokenizer.eos_token_id
    if eos is None:
        raise ConfigError("seq2seq needs a tokenizer with an eos token; add one (eos_token=...)")
    # Tokenizers of multilingual models (mBART, NLLB, Marian) switch language codes or
    # vocabularies for targets, which only the ``text_target`` path does.
    use_text_target = "text_target" in inspect.signature(tokenizer.__call__).parameters

    def encode(batch: dict[str, list[Any]], indices: list[int]) -> dict[str, list[list[int]]]:
        targets = batch[target_column]
        for idx, source, target in zip(indices, batch[source_column], targets, strict=True):
            for column, text in ((source_column, source), (target_column, target)):
                if not isinstance(text, str) or not text.strip():
                    raise DataError(
                        f"row {idx} of {split_name} has an empty {column!r}; "
                        "drop or fill that row"
                    )
        sources = [source_prefix + ("" if s is None else str(s)) for s in batch[source_column]]
        enc = tokenizer(sources, max_length=max_source_length, truncation=True)
        if use_text_target:
            tgt = tokenizer(text_target=targets, max_length=max_target_length, truncation=True)
        else:
            tgt = tokenizer(targets, max_length=max_target_length, truncation=True)
        labels = [_end_with_eos(ids, eos, max_target_length) for ids in tgt["input_ids"]]
        return {
            "input_ids": enc["input_ids"],
            "attention_mask": enc["attention_mask"],
            "labels": labels,
        }

    return ds.map(
        encode,
        batched=True,
        batch_size=MAP_BATCH_SIZE,
        with_indices=True,
        remove_columns=ds.column_names,
        desc=f"tokenizing {split_name}",
    )


def _end_with_eos(ids: list[int], eos: int, max_length: int) -> list[int]:
    """Append EOS if the tokenizer did not (e.g. GPT-2-style BPE adds no specials)."""
    if ids and ids[-1] == eos:
        return list(ids)
    return list(ids[: max_length - 1]) + [eos]


class Seq2SeqCollator:
    """Pad sources and labels separately; add ``decoder_input_ids`` when a model is given.

    Args:
        tokenizer: Supplies ``pad_token_id`` (or ``eos_token_id``).
        model: Optional model with ``prepare_decoder_input_ids_from_labels`` (T5, BART, ...).
            Note it is held by reference, so prefer ``num_workers=0`` data loading or pass None
            and let the model shift labels itself.
        pad_to_multiple_of: See :func:`lmforge.data.collators.pad_batch`.
    """

    def __init__(
        self, tokenizer: Any, model: Any = None, pad_to_multiple_of: int | None = 8
    ) -> None:
        self.pad_token_id = pad_id_of(tokenizer)
        self.pad_to_multiple_of = pad_to_multiple_of
        shift = getattr(model, "prepare_decoder_input_ids_from_labels", None)
        self._shift = shift if callable(shift) else None
        # A BERT tokenizer starts every target with [CLS], which an EncoderDecoderModel
        # warm-started from BERT also starts decoding from: kept, it teaches the decoder to
        # answer [CLS] with [CLS], and greedy decoding then repeats it and returns nothing. That
        # doubled start is dropped from the labels (T5, BART and Marian targets never begin
        # with their decoder start token, so they are unchanged).
        start = getattr(getattr(model, "config", None), "decoder_start_token_id", None)
        self._start = start if self._shift is not None else None

    def __call__(
        self, examples: Sequence[Mapping[str, Any]], generator: torch.Generator | None = None
    ) -> dict[str, torch.Tensor]:
        """Pad ``examples``; ``generator`` is accepted for a uniform interface and unused.

        Returns:
            ``input_ids`` and ``attention_mask`` (B, S); with labels in the examples also
            ``labels`` (B, T), -100 at padding, and with a model ``decoder_input_ids`` (B, T).
        """
        batch = pad_batch(
            [{"input_ids": ex["input_ids"]} for ex in examples],
            self.pad_token_id,
            self.pad_to_multiple_of,
        )
        if "labels" not in examples[0]:
            return batch
        # Targets have their own length T, so they are padded on their own: pad_batch pads the
        # ``input_ids`` field with the given id, here -100 so padding never counts in the loss.
        targets = [list(ex["labels"]) for ex in examples]
        if self._start is not None:
            targets = [t[1:] if len(t) > 1 and t[0] == self._start else t for t in targets]
        labels = pad_batch(
            [{"input_ids": t} for t in targets], -100, self.pad_to_multiple_of
        )["input_ids"]  # (B, T)
        batch["labels"] = labels
        if self._shift is not None:
            # (B, T): decoder_start_token_id, labels[:, :-1], with -100 replaced by pad.
            batch["decoder_input_ids"] = self._shift(labels=labels)
        return batch


def generate_texts(
    model: Any,
    tokenizer: Any,
    sources: list[str],
    settings: GenerationSettings | None = None,
    *,
    batch_size: int = 8,
    source_prefix: str = "",
    max_source_length: int = 512,
    device: str | torch.device = "cpu",
) -> list[str]:
    """Generate one output text per source with an encoder-decoder model.

    Args:
        model: An encoder-decoder model (``model.config.is_encoder_decoder``), on ``device``.
        tokenizer: Its tokenizer.
        sources: Input texts.
        settings: Decoding options; None means :class:`GenerationSettings` defaults.
        batch_size: Sources per ``generate`` call.
        source_prefix: Text put before every source (as in training).
        max_source_length: Source tokens kept.
        device: Where the inputs go.

    Returns:
        The decoded outputs, special tokens removed and whitespace stripped, in input order.

    Raises:
        ConfigError: A decoder-only model or a bad batch size.
    """
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    if not getattr(model.config, "is_encoder_decoder", False):
        raise ConfigError(
            "generate_texts needs an encoder-decoder model (T5, BART, ...); "
            "for decoder-only models use the causal LM generation path"
        )
    settings = settings or GenerationSettings()
    kwargs = settings.to_generate_kwargs()
    if settings.stop:
        kwargs.update(stop_strings=list(settings.stop), tokenizer=tokenizer)
    was_training = model.training
    model.eval()
    outputs: list[str] = []
    try:
        with torch.no_grad():
            for start in range(0, len(sources), batch_size):
                chunk = [source_prefix + s for s in sources[start : start + batch_size]]
                enc = tokenizer(
                    chunk,
                    max_length=max_source_length,
                    truncation=True,
                    padding=True,
                    return_tensors="pt",
                )
                generated = model.generate(
                    input_ids=enc["input_ids"].to(device),  # (B, S)
                    attention_mask=enc["attention_mask"].to(device),  # (B, S)
                    **kwargs,
                )  # (B, T): starts with decoder_start_token_id
                texts = tokenizer.batch_decode(generated, skip_special_tokens=True)
                outputs.extend(settings.cut(t).strip() for t in texts)
    finally:
        # Callers may generate mid-training (evaluation); give the model back as it came.
        model.train(was_training)
    return outputs
