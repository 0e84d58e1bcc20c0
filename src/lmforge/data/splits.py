"""Carve missing validation/test splits out of train, deterministically."""

from __future__ import annotations

import logging
import math

import datasets
import numpy as np

from lmforge.errors import DataError

logger = logging.getLogger(__name__)


def ensure_splits(
    dsd: datasets.DatasetDict,
    *,
    validation_ratio: float = 0.05,
    test_ratio: float = 0.0,
    seed: int = 42,
) -> datasets.DatasetDict:
    """Make sure ``validation`` (and ``test`` when ``test_ratio > 0``) exist.

    Missing splits are carved from ``train`` with a seeded permutation, so the same seed gives
    the same split on every run. When train has a ``doc_id`` column (plain-text corpora) and at
    least twice as many documents as are needed, whole documents are held out, so that no
    document leaks into both sides; otherwise rows are held out.

    Args:
        dsd: Splits as loaded by :func:`lmforge.data.load_raw`.
        validation_ratio: Fraction of train to hold out as validation when it is missing.
        test_ratio: Fraction of train to hold out as test when it is missing (0 = none).
        seed: Seed of the permutation.

    Returns:
        A new ``DatasetDict`` with train (minus the held-out rows) and the carved splits.

    Raises:
        DataError: No train split, a streaming dataset without the split, or too few rows.
    """
    for name, ratio in (("validation", validation_ratio), ("test", test_ratio)):
        if not 0.0 <= ratio < 1.0:
            raise DataError(f"{name} ratio must be in [0, 1), got {ratio}; fix data.{name}_ratio")
    need = {}
    if "validation" not in dsd and validation_ratio > 0:
        need["validation"] = validation_ratio
    if "test" not in dsd and test_ratio > 0:
        need["test"] = test_ratio
    if not need:
        return dsd
    if "train" not in dsd:
        raise DataError(f"no 'train' split to carve {', '.join(need)} from (splits: {list(dsd)})")
    train = dsd["train"]
    if not isinstance(train, datasets.Dataset):
        raise DataError(
            "cannot carve a validation split from a streaming dataset; "
            "provide a dev/validation file or set data.streaming=false"
        )

    rng = np.random.default_rng(seed)
    parts = _split_by_docs(train, need, rng) if "doc_id" in train.column_names else None
    if parts is None:
        parts = _split_by_rows(train, need, rng)
    out = dict(dsd)
    for name, idx in parts.items():
        # Sorted indices keep reads sequential on the memory-mapped Arrow file.
        out[name] = train.select(np.sort(idx))
    logger.info(
        "carved %s from train (seed %d)",
        ", ".join(f"{k}={len(v)} rows" for k, v in parts.items() if k != "train"),
        seed,
    )
    order = ["train", "validation", "test"]
    return datasets.DatasetDict(
        {k: out[k] for k in sorted(out, key=lambda k: order.index(k) if k in order else 99)}
    )


def _counts(total: int, need: dict[str, float]) -> dict[str, int]:
    # At least one item per carved split; ceil so a small ratio still holds something out.
    return {name: max(1, math.ceil(total * ratio)) for name, ratio in need.items()}


def _split_by_rows(
    train: datasets.Dataset, need: dict[str, float], rng: np.random.Generator
) -> dict[str, np.ndarray]:
    n = train.num_rows
    counts = _counts(n, need)
    if n - sum(counts.values()) < 1:
        raise DataError(
            f"train has {n} rows, too few to carve {', '.join(need)}; "
            "add data or provide a dev file"
        )
    perm = rng.permutation(n)
    parts: dict[str, np.ndarray] = {}
    start = 0
    for name, count in counts.items():
        parts[name] = perm[start : start + count]
        start += count
    parts["train"] = perm[start:]
    return parts


def _split_by_docs(
    train: datasets.Dataset, need: dict[str, float], rng: np.random.Generator
) -> dict[str, np.ndarray] | None:
    # doc_id is one int per row: cheap to hold in memory even for a large corpus.
    doc_ids = np.asarray(train["doc_id"])
    docs = np.unique(doc_ids)
    counts = _counts(len(docs), need)
    if len(docs) < 2 * sum(counts.values()):
        return None
    perm = rng.permutation(docs)
    parts: dict[str, np.ndarray] = {}
    held = np.zeros(len(doc_ids), dtype=bool)
    start = 0
    for name, count in counts.items():
        mask = np.isin(doc_ids, perm[start : start + count])
        parts[name] = np.flatnonzero(mask)
        held |= mask
        start += count
    parts["train"] = np.flatnonzero(~held)
    return parts
