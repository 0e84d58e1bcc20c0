"""Tokenizer training: WordPiece (BERT), byte-level BPE (GPT-2) and Unigram (SentencePiece).

Names load on first use (PEP 562), so ``lmforge --help`` does not import torch.
"""

from __future__ import annotations

from lmforge.lazy import lazy_getattr

_WHERE = {
    "CJK_CHAR_CLASS": "lmforge.data.cjk",
    "is_cjk_char": "lmforge.data.cjk",
    "METADATA_FILE": "lmforge.tokenizer.train",
    "VALID_KINDS": "lmforge.tokenizer.train",
    "special_tokens_for": "lmforge.tokenizer.train",
    "train_tokenizer": "lmforge.tokenizer.train",
}

__all__ = [
    "CJK_CHAR_CLASS",
    "METADATA_FILE",
    "VALID_KINDS",
    "is_cjk_char",
    "special_tokens_for",
    "train_tokenizer",
]

__getattr__ = lazy_getattr(__name__, _WHERE)
