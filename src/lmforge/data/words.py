"""Tokenize texts and mark which tokens begin a word (for whole-word masking).

A token *begins a word* when the fast tokenizer's ``word_ids()`` changes from the previous
token (so WordPiece ``##`` continuations get 0). BERT's tokenizer splits every CJK character
into its own word, which would make whole-word masking on Chinese identical to character
masking; with ``segmenter="jieba"`` the word boundaries of CJK characters come from jieba
instead, as in Chinese BERT-wwm (Cui et al., 2019) and HF's ``run_mlm_wwm.py``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from lmforge.data.cjk import is_cjk_char
from lmforge.errors import ConfigError

SEGMENTERS = (None, "jieba")


def _jieba_cut():
    try:
        import jieba
    except ImportError as e:  # pragma: no cover - jieba is a core dependency
        raise ConfigError(
            "data.chinese_word_segmenter=jieba needs jieba; `pip install jieba`"
        ) from e
    # jieba logs "Building prefix dict ..." at INFO on first use; keep training logs clean.
    jieba.setLogLevel(logging.WARNING)
    return jieba.lcut


def jieba_word_starts(text: str, cut: Any) -> list[bool]:
    """Per character of ``text``: True where a jieba word begins."""
    starts = [False] * (len(text) + 1)
    pos = 0
    for word in cut(text):
        # jieba returns every character (spaces included), so spans tile the text; find()
        # guards against a normalizing segmenter that drops characters.
        if text.startswith(word, pos):
            at = pos
        else:
            at = text.find(word, pos)
            if at < 0:
                continue
        starts[at] = True
        pos = at + len(word)
    return starts


class WordEncoder:
    """Tokenize a batch of texts into ids plus a parallel ``word_start`` list.

    Args:
        tokenizer: A transformers tokenizer (fast ones give real word boundaries; slow ones
            mark every token as a word start).
        segmenter: None or ``"jieba"``.
    """

    def __init__(self, tokenizer: Any, segmenter: str | None = None) -> None:
        if segmenter not in SEGMENTERS:
            raise ConfigError(f"unknown chinese_word_segmenter '{segmenter}'; use null or 'jieba'")
        self.tokenizer = tokenizer
        self.segmenter = segmenter
        self.is_fast = bool(getattr(tokenizer, "is_fast", False))
        if segmenter == "jieba":
            _jieba_cut()  # fail early (in the parent) if jieba is missing

    def __call__(self, texts: Sequence[str]) -> tuple[list[list[int]], list[list[int]]]:
        """Encode ``texts`` without special tokens.

        Returns:
            ``(ids, word_start)``: per text, token ids and 0/1 flags of the same length.
        """
        # Look jieba up per call rather than storing jieba.lcut on self: dill pickles that bound
        # method by value for map(num_proc>1), jieba's RLock included, and workers deadlock.
        cut = _jieba_cut() if self.segmenter == "jieba" else None
        want_offsets = self.is_fast and cut is not None
        enc = self.tokenizer(
            list(texts),
            add_special_tokens=False,
            return_attention_mask=False,
            return_token_type_ids=False,
            return_offsets_mapping=want_offsets,
            # Rows are packed or truncated later; silence the "longer than model_max_length"
            # warning that would fire for every long document.
            verbose=False,
        )
        ids: list[list[int]] = enc["input_ids"]
        if not self.is_fast:
            return ids, [[1] * len(row) for row in ids]
        starts = []
        for i, text in enumerate(texts):
            offsets = enc["offset_mapping"][i] if want_offsets else None
            jieba_starts = jieba_word_starts(text, cut) if offsets is not None else None
            starts.append(_row_starts(enc.word_ids(i), offsets, text, jieba_starts))
        return ids, starts


def _row_starts(
    word_ids: list[int | None],
    offsets: list[tuple[int, int]] | None,
    text: str,
    jieba_starts: list[bool] | None,
) -> list[int]:
    """0/1 word-start flags for one encoded text (see the module docstring)."""
    out: list[int] = []
    prev_word: int | None = -1
    prev_end = -1
    for j, word in enumerate(word_ids):
        if word is None:  # a special token the template added
            out.append(1)
            prev_word = -1
            continue
        start = word != prev_word
        if jieba_starts is not None and offsets is not None:
            s, e = offsets[j]
            if s < len(text) and is_cjk_char(text[s]):
                # A byte-level BPE may split one character into several tokens: those
                # after the first (s < prev_end) never begin a word.
                start = jieba_starts[s] and s >= prev_end
            prev_end = max(prev_end, e)
        out.append(int(start))
        prev_word = word
    return out
