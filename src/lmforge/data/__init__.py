"""Data layer: load raw corpora, carve splits, tokenize for LM objectives, batch and mask."""

from __future__ import annotations

from lmforge.data.builtin import BUILTINS, load_builtin
from lmforge.data.collators import ClmCollator, MlmCollator, pad_batch
from lmforge.data.lm import CACHE_VERSION, OBJECTIVES, cache_key, prepare_lm_dataset
from lmforge.data.sampling import make_batches, shard_batches
from lmforge.data.sources import FORMATS, load_raw
from lmforge.data.splits import ensure_splits
from lmforge.data.words import WordEncoder

__all__ = [
    "BUILTINS",
    "CACHE_VERSION",
    "FORMATS",
    "OBJECTIVES",
    "ClmCollator",
    "MlmCollator",
    "WordEncoder",
    "cache_key",
    "ensure_splits",
    "load_builtin",
    "load_raw",
    "make_batches",
    "pad_batch",
    "prepare_lm_dataset",
    "shard_batches",
]
