"""Batched model calls on perturbed inputs, counted.

Every perturbation method (occlusion, LIME, SHAP) and the faithfulness metrics describe an
input by a keep-mask over its feature tokens; :func:`perturb` turns the mask into token ids
(deleting the dropped tokens, or replacing them with the baseline token where positions must
not move) and :class:`Scorer` runs any number of such sequences through the model in padded
batches, sorted by length, returning the target score of each. Special tokens ([CLS], [SEP])
are never dropped.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from lmforge.explaining.adapters import Example

Row = tuple[np.ndarray, np.ndarray | None, list[int]]  # (ids, type ids, target row)


def perturb(ex: Example, keep: np.ndarray, mode: str, fill_id: int) -> Row:
    """Token ids of ``ex`` with the features where ``keep`` is False taken away.

    Args:
        ex: The example.
        keep: (F,) booleans over ``ex.features``.
        mode: ``delete`` (drop the tokens) or ``replace`` (put ``fill_id`` in their place).
        fill_id: Baseline token id for ``replace``.

    Returns:
        (ids, type ids, target row) for :meth:`Scorer.score`.
    """
    drop = ex.features[~np.asarray(keep, dtype=bool)]
    if mode == "replace":
        ids = ex.ids.copy()
        ids[drop] = fill_id
        return ids, ex.type_ids, ex.target
    mask = np.ones(len(ex.ids), dtype=bool)
    mask[drop] = False
    types = ex.type_ids[mask] if ex.type_ids is not None else None
    return ex.ids[mask], types, ex.target


@dataclass
class Counter:
    """Model use of one method: sequences scored, forward passes, seconds."""

    sequences: int = 0
    passes: int = 0
    seconds: float = 0.0
    started: float = field(default=0.0, repr=False)

    def __enter__(self) -> Counter:
        self.started = time.perf_counter()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.seconds += time.perf_counter() - self.started


def pad_rows(rows: list[Row], pad_id: int, device: torch.device) -> dict[str, torch.Tensor]:
    """Right-padded ``input_ids``, ``attention_mask``, ``token_type_ids`` and ``target``."""
    width = max(len(r[0]) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    has_types = rows[0][1] is not None
    types = torch.zeros((len(rows), width), dtype=torch.long)
    span = max(len(r[2]) for r in rows)
    target = torch.full((len(rows), max(span, 1)), -1, dtype=torch.long)
    for i, (seq, seg, tgt) in enumerate(rows):
        ids[i, :len(seq)] = torch.as_tensor(seq)
        mask[i, :len(seq)] = 1
        if has_types and seg is not None:
            types[i, :len(seg)] = torch.as_tensor(seg)
        target[i, :len(tgt)] = torch.as_tensor(tgt)
    batch = {"input_ids": ids, "attention_mask": mask, "target": target}
    if has_types:
        batch["token_type_ids"] = types
    return {k: v.to(device) for k, v in batch.items()}


class Scorer:
    """Runs rows through the model in batches and returns the adapter's target score.

    Args:
        model: The transformers model (eval mode).
        adapter: The task adapter (``score(outputs, target) -> (B,)``).
        pad_id: The tokenizer's pad id.
        batch_size: Sequences per forward pass.
    """

    def __init__(self, model: Any, adapter: Any, pad_id: int, batch_size: int = 64) -> None:
        self.model, self.adapter, self.pad_id = model, adapter, pad_id
        self.batch_size = batch_size
        self.counter = Counter()

    @property
    def device(self) -> torch.device:
        """Where the model's weights are."""
        try:
            return next(self.model.parameters()).device
        except (StopIteration, AttributeError):
            return torch.device("cpu")

    def outputs(self, rows: list[Row]) -> Any:
        """Raw model outputs of one batch (no grad)."""
        batch = pad_rows(rows, self.pad_id, self.device)
        batch.pop("target")
        with torch.no_grad():
            self.counter.passes += 1
            self.counter.sequences += len(rows)
            return self.model(**batch)

    @torch.no_grad()
    def score(self, rows: list[Row]) -> np.ndarray:
        """Target score of each row, (N,), in input order."""
        out = np.zeros(len(rows), dtype=np.float64)
        # Sorting by length keeps padding (wasted compute) small inside each batch.
        order = sorted(range(len(rows)), key=lambda i: len(rows[i][0]))
        for start in range(0, len(order), self.batch_size):
            chunk = order[start:start + self.batch_size]
            batch = pad_rows([rows[i] for i in chunk], self.pad_id, self.device)
            target = batch.pop("target")
            self.counter.passes += 1
            self.counter.sequences += len(chunk)
            values = self.adapter.score(self.model(**batch), target)
            out[chunk] = values.float().cpu().numpy()
        return out
