"""Tokenizer training: WordPiece (BERT), byte-level BPE (GPT-2) and Unigram (SentencePiece)."""

from __future__ import annotations

from lmforge.tokenizer.cjk import CJK_CHAR_CLASS, is_cjk_char
from lmforge.tokenizer.train import METADATA_FILE, VALID_KINDS, special_tokens_for, train_tokenizer

__all__ = [
    "CJK_CHAR_CLASS",
    "METADATA_FILE",
    "VALID_KINDS",
    "is_cjk_char",
    "special_tokens_for",
    "train_tokenizer",
]
