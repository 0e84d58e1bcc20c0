"""In-context demonstrations: which training examples go into the prompt, and how.

Two selections, both k examples *per class* (balanced, as Zhao et al. 2021 and LM-BFF):

- ``random``: one seeded sample shared by every test input (the protocol of Brown et al.
  2020 and Zhao et al. 2021), in a seeded random order. Calibration then uses exactly the
  prompt the inputs see.
- ``similar``: per input, the k nearest training examples of each class by cosine
  similarity of mean-pooled sentence embeddings (KATE, Liu et al. 2022, "What Makes Good
  In-Context Examples for GPT-3?"; LM-BFF filters demonstrations the same way with
  SBERT). The most similar example is placed last, next to the input.

A demonstration is the template filled with its text and its label's first word.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from lmforge.errors import ConfigError, DataError
from lmforge.models.build import resolve_checkpoint
from lmforge.prompting.templates import Template


def sample_per_class(labels: Sequence[str], label_order: Sequence[str], k: int, seed: int,
                     exclude: Sequence[int] = ()) -> list[int]:
    """Seeded, class-balanced sample: k row indices per label, in a seeded random order.

    Args:
        labels: The label of every row of the pool.
        label_order: All label names (each must have at least k rows).
        k: Rows per label.
        seed: Seed of the sample and of the order.
        exclude: Rows that may not be drawn (e.g. already sampled for training).

    Returns:
        ``k * len(label_order)`` row indices.
    """
    rng = np.random.default_rng(seed)
    banned = set(exclude)
    chosen: list[int] = []
    for y in label_order:
        rows = [i for i, lab in enumerate(labels) if lab == y and i not in banned]
        if len(rows) < k:
            raise DataError(f"label {y!r} has only {len(rows)} available training rows for "
                            f"{k} per class; lower shots or use more training data")
        chosen.extend(int(i) for i in rng.choice(rows, size=k, replace=False))
    return [chosen[i] for i in rng.permutation(len(chosen))]


def nearest_per_class(query: np.ndarray, pool: np.ndarray, pool_labels: Sequence[str],
                      label_order: Sequence[str], k: int) -> list[list[int]]:
    """For each query, the k most similar pool rows of each label (cosine similarity).

    Args:
        query: (N, D) query embeddings.
        pool: (M, D) pool embeddings.
        pool_labels: (M,) labels of the pool rows.
        label_order: All label names.
        k: Neighbours per label.

    Returns:
        N lists of ``k * C`` pool indices, least similar first (most similar last).
    """
    q = query / np.maximum(np.linalg.norm(query, axis=1, keepdims=True), 1e-12)
    p = pool / np.maximum(np.linalg.norm(pool, axis=1, keepdims=True), 1e-12)
    sims = q @ p.T  # (N, M)
    labels = np.asarray(pool_labels)
    out: list[list[int]] = []
    for row in sims:
        picked: list[int] = []
        for y in label_order:
            rows = np.flatnonzero(labels == y)
            if len(rows) < k:
                raise DataError(f"label {y!r} has only {len(rows)} training rows for {k} per "
                                "class; lower shots")
            # stable sort on (-similarity, index) so ties resolve the same way every run
            best = rows[np.lexsort((rows, -row[rows]))[:k]]
            picked.extend(int(i) for i in best)
        picked.sort(key=lambda i: (row[i], -i))
        out.append(picked)
    return out


def format_demos(template: Template, texts: Sequence[str], labels: Sequence[str],
                 separator: str) -> str:
    """Demonstrations as one context string (ends with the separator before the input)."""
    if not texts:
        return ""
    return separator.join(template.fill(t, template.word(y))
                          for t, y in zip(texts, labels, strict=True)) + separator


@torch.no_grad()
def mean_pooled_embeddings(model: Any, tokenizer: Any, texts: Sequence[str],
                           batch_size: int = 32, max_length: int = 128) -> np.ndarray:
    """Mean of the last hidden states over real tokens (as sentence-transformers' MiniLM).

    Works for encoders (``AutoModel``) and for LM heads (``output_hidden_states``).
    """
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else \
        (tokenizer.eos_token_id or 0)
    chunks = []
    model.eval()
    for start in range(0, len(texts), batch_size):
        rows = [tokenizer(str(t), truncation=True, max_length=max_length)["input_ids"] or [pad]
                for t in texts[start:start + batch_size]]
        width = max(len(r) for r in rows)
        ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows])
        mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
        out = model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
        hidden = out.hidden_states[-1].float()  # (B, T, H)
        summed = (hidden * mask[..., None]).sum(1)
        chunks.append((summed / mask.sum(1, keepdim=True).clamp(min=1)).numpy())
    return np.concatenate(chunks)


def load_embedder(name: str) -> tuple[Any, Any]:
    """Load a sentence encoder (a builtin name such as ``all-minilm-l6-v2`` or a folder)."""
    from transformers import AutoModel, AutoTokenizer

    folder = resolve_checkpoint(name)
    try:
        return AutoModel.from_pretrained(folder), AutoTokenizer.from_pretrained(folder)
    except (OSError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__

        raise ConfigError(f"cannot load embedder {name!r} ({first}); use a builtin such as "
                          "all-minilm-l6-v2, a model folder, or embedder=model") from None
