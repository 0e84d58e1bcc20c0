"""Sub-word tokens merged into words, and token scores summed into word scores.

Merge rule: tokens belong to the same word when the tokenizer's pre-tokenizer put them in
the same word (``word_ids``: ``play ##ing`` is one word, ``film .`` two); for Chinese text
(any CJK character in the segment, with ``words=auto``) or ``words=jieba``, the words are
jieba's segmentation of the text and a token joins the jieba word its first character falls
in, so ``很 好 看`` (three characters) shows as the word ``很`` and the word ``好看``. A word's
score is the **sum** of its tokens' scores: the attributions of IG (completeness), SHAP
(efficiency) and LIME (a linear surrogate) are additive, so a sum keeps a word's share of the
output change.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

WORD_MODES = ("auto", "tokenizer", "jieba")
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


@dataclass
class Word:
    """One word of an input.

    Attributes:
        text: The word as written in the input.
        segment: 0 for the first text, 1 for the pair text / QA context.
        indices: Its tokens, as indices into the example's feature list.
        token_offsets: (start, end) characters of each of those tokens in the segment text.
    """

    text: str
    segment: int
    indices: list[int] = field(default_factory=list)
    token_offsets: list[tuple[int, int]] = field(default_factory=list)


def has_cjk(text: str) -> bool:
    """True when ``text`` has a CJK ideograph."""
    return bool(_CJK.search(text))


def _jieba_spans(text: str) -> list[tuple[int, int]]:
    import logging

    import jieba

    logging.getLogger("jieba").setLevel(logging.WARNING)
    return [(start, end) for _, start, end in jieba.tokenize(text)]


def group_words(texts: Sequence[str], offsets: Sequence[Sequence[int]],
                segments: Sequence[int], word_ids: Sequence[int | None], mode: str = "auto",
                given_words: Sequence[str] | None = None) -> list[Word]:
    """Group feature tokens into words.

    Args:
        texts: The input text of each segment.
        offsets: (start, end) characters of each feature token in its segment's text.
        segments: Segment of each feature token.
        word_ids: The tokenizer's word index of each feature token.
        mode: ``auto`` (jieba for segments with CJK characters, else the tokenizer's words),
            ``tokenizer``, ``jieba``, or ``given`` (pre-split words: ``given_words``).
        given_words: The input words when the text came pre-split (NER).

    Returns:
        The words in input order.
    """
    spans: dict[int, list[tuple[int, int]]] = {}
    for seg, text in enumerate(texts):
        if mode == "jieba" or (mode == "auto" and has_cjk(text)):
            spans[seg] = _jieba_spans(text)
    words: list[Word] = []
    keys: dict[tuple[int, int], Word] = {}
    for i, (off, seg, wid) in enumerate(zip(offsets, segments, word_ids, strict=True)):
        start, end = int(off[0]), int(off[1])
        if seg in spans:
            key = (seg, next((k for k, (a, b) in enumerate(spans[seg]) if a <= start < b), -i))
        else:
            key = (seg, wid if wid is not None else -i - 1)
        word = keys.get(key)
        if word is None:
            word = keys[key] = Word("", seg)
            words.append(word)
        word.indices.append(i)
        word.token_offsets.append((start, end))
    for word in words:
        if mode == "given" and given_words is not None:
            word.text = given_words[int(word_ids[word.indices[0]] or 0)]
        else:
            lo = min(a for a, _ in word.token_offsets)
            hi = max(b for _, b in word.token_offsets)
            word.text = texts[word.segment][lo:hi]
    return words


def word_scores(words: Sequence[Word], scores: np.ndarray) -> list[float]:
    """Sum of the token scores of each word (see the module docstring for why a sum)."""
    return [float(np.sum(scores[w.indices])) for w in words]
