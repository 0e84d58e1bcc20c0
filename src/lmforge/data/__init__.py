"""Data layer: load raw corpora, carve splits, tokenize for LM objectives, batch and mask.

Names load on first use (PEP 562), so ``lmforge --help`` does not import torch.
"""

from __future__ import annotations

from lmforge.lazy import lazy_getattr

_WHERE = {
    "BUILTINS": "lmforge.data.builtin",
    "CACHE_VERSION": "lmforge.data.lm",
    "ClmCollator": "lmforge.data.collators",
    "FORMATS": "lmforge.data.sources",
    "MlmCollator": "lmforge.data.collators",
    "OBJECTIVES": "lmforge.data.lm",
    "WordEncoder": "lmforge.data.words",
    "cache_key": "lmforge.data.lm",
    "ensure_splits": "lmforge.data.splits",
    "load_builtin": "lmforge.data.builtin",
    "load_raw": "lmforge.data.sources",
    "make_batches": "lmforge.data.sampling",
    "pad_batch": "lmforge.data.collators",
    "prepare_lm_dataset": "lmforge.data.lm",
    "shard_batches": "lmforge.data.sampling",
}

__all__ = [
    "BUILTINS",
    "CACHE_VERSION",
    "ClmCollator",
    "FORMATS",
    "MlmCollator",
    "OBJECTIVES",
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

__getattr__ = lazy_getattr(__name__, _WHERE)
