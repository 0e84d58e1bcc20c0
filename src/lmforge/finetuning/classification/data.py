"""Classification data: label names, encoding, the collator, and streamed probabilities.

Single-label (binary / multi-class), multi-label (several labels per text, multi-hot
targets) and sentence pairs. The loss is in :mod:`.objective`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping
from typing import Any

import datasets
import torch
from torch import nn

from lmforge.data.collators import pad_batch, pad_id_of
from lmforge.errors import DataError

log = logging.getLogger(__name__)


def _split_labels(value: Any, separator: str) -> list[str]:
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    return [part.strip() for part in str(value).split(separator) if part.strip()]


def collect_label_names(ds: datasets.Dataset, label_column: str, multi_label: bool = False,
                        separator: str = ",") -> list[str]:
    """Label names as they appear in the training data, sorted (numerically when numeric).

    Args:
        ds: The training split.
        label_column: Column with the label (int, string, or for multi-label a list or a
            ``separator``-joined string).
        multi_label: Whether each row may carry several labels.
        separator: Separator of multi-label strings.

    Returns:
        The sorted label names.
    """
    if label_column not in ds.column_names:
        raise DataError(f"label column {label_column!r} not found (columns: "
                        f"{', '.join(ds.column_names)}); set task.label_column")
    values = ds[label_column]
    names: set[str] = set()
    for value in values:
        if value is None or value == "":
            raise DataError(f"an empty label in column {label_column!r}; drop or fix that row")
        names.update(_split_labels(value, separator) if multi_label else [str(value)])
    if len(names) < 2 and not multi_label:
        raise DataError(f"column {label_column!r} has only the label {sorted(names)}; "
                        "classification needs at least two classes")
    numeric = all(n.lstrip("-").isdigit() for n in names)
    return sorted(names, key=int) if numeric else sorted(names)


def prepare_classification(ds: datasets.Dataset, tokenizer: Any, label2id: Mapping[str, int], *,
                           text_column: str = "text", text_pair_column: str | None = None,
                           label_column: str | None = "label", multi_label: bool = False,
                           separator: str = ",", max_length: int = 128,
                           split_name: str = "train") -> datasets.Dataset:
    """Tokenize texts (or text pairs) and map labels to ids; no padding (done per batch).

    Args:
        ds: A raw split.
        tokenizer: The model's tokenizer.
        label2id: Label name -> id (from the training data / model config).
        text_column: First text.
        text_pair_column: Optional second text (sentence-pair tasks such as NLI).
        label_column: Label column, or None for unlabeled data (prediction).
        multi_label: Labels become multi-hot float vectors.
        separator: Separator of multi-label strings.
        max_length: Truncation length in tokens.
        split_name: For messages.

    Returns:
        Dataset with ``input_ids``, ``attention_mask``, maybe ``token_type_ids`` and
        ``labels`` (int, or list[float] of length C for multi-label).
    """
    for column in (text_column, text_pair_column):
        if column is not None and column not in ds.column_names:
            raise DataError(f"column {column!r} not found in {split_name} (columns: "
                            f"{', '.join(ds.column_names)}); set task.text_column / "
                            "task.text_pair_column")
    if len(ds) == 0:
        raise DataError(f"the {split_name} split is empty; check data.path")
    has_labels = label_column is not None and label_column in ds.column_names
    num_labels = len(label2id)

    def encode(batch: dict[str, list[Any]]) -> dict[str, Any]:
        texts = [str(t) if t is not None else "" for t in batch[text_column]]
        pairs = [str(t) for t in batch[text_pair_column]] if text_pair_column else None
        enc = tokenizer(texts, pairs, truncation=True, max_length=max_length)
        out = {k: enc[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc}
        if has_labels:
            out["labels"] = [_encode_label(v, label2id, multi_label, separator, num_labels,
                                           split_name) for v in batch[label_column]]
        return out

    return ds.map(encode, batched=True, remove_columns=ds.column_names,
                  desc=f"tokenizing {split_name}")


def _encode_label(value: Any, label2id: Mapping[str, int], multi_label: bool, separator: str,
                  num_labels: int, split_name: str) -> int | list[float]:
    names = _split_labels(value, separator) if multi_label else [str(value)]
    for name in names:
        if name not in label2id:
            raise DataError(f"label {name!r} in {split_name} is not one of the model's labels "
                            f"{list(label2id)}; fix the data or train with that label")
    if not multi_label:
        return label2id[names[0]]
    vector = [0.0] * num_labels
    for name in names:
        vector[label2id[name]] = 1.0
    return vector


class ClassificationCollator:
    """Pad token fields; stack int labels (B,) or multi-hot labels (B, C)."""

    def __init__(self, tokenizer: Any, pad_to_multiple_of: int | None = 8) -> None:
        self.pad_token_id = pad_id_of(tokenizer)
        self.pad_to_multiple_of = pad_to_multiple_of

    def __call__(self, examples: list[dict[str, Any]],
                 generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Build a padded batch (no randomness; ``generator`` is accepted and unused)."""
        labels = [ex.get("labels") for ex in examples]
        inputs = [{k: v for k, v in ex.items() if k != "labels"} for ex in examples]
        batch = pad_batch(inputs, self.pad_token_id, self.pad_to_multiple_of)
        if labels[0] is not None:
            multi = isinstance(labels[0], (list, tuple))
            batch["labels"] = torch.tensor(labels, dtype=torch.float32 if multi else torch.long)
        return batch


@torch.no_grad()
def predict_probabilities(model: nn.Module, dataset: datasets.Dataset, collator: Any, *,
                          batch_size: int = 64, multi_label: bool = False,
                          device: torch.device | str = "cpu",
                          autocast: Any = None) -> Any:
    """Yield (probabilities (B, C) float32 numpy, labels or None) batch by batch.

    Streaming: only one batch of logits exists at a time.
    """
    model.eval()
    for start in range(0, len(dataset), batch_size):
        rows = dataset[start:start + batch_size]
        examples = [dict(zip(rows, values, strict=True)) for values in zip(*rows.values(),
                                                                           strict=True)]
        batch = {k: v.to(device) for k, v in collator(examples).items()}
        labels = batch.pop("labels", None)
        with autocast() if autocast else contextlib.nullcontext():
            logits = model(**batch).logits.float()
        probs = torch.sigmoid(logits) if multi_label else torch.softmax(logits, -1)
        yield probs.cpu().numpy(), None if labels is None else labels.cpu().numpy()
