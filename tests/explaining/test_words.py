"""Sub-words merged into words (tokenizer words, jieba for Chinese) and summed scores."""

from __future__ import annotations

import numpy as np

from lmforge.explaining.words import group_words, has_cjk, word_scores
from tests.finetuning.conftest import word_tokenizer


def _group(tok, text: str, mode: str = "auto"):
    enc = tok(text, return_offsets_mapping=True)
    pos = [i for i, s in enumerate(enc.sequence_ids(0)) if s is not None]
    return group_words([text], [enc["offset_mapping"][i] for i in pos], [0] * len(pos),
                       [enc.word_ids(0)[i] for i in pos], mode)


def test_subwords_merge_into_the_word_they_came_from() -> None:
    tok = word_tokenizer(["love", "##ly", "film", "."])
    words = _group(tok, "lovely film.")
    assert [w.text for w in words] == ["lovely", "film", "."]
    assert [w.indices for w in words] == [[0, 1], [2], [3]]
    assert word_scores(words, np.array([0.5, 0.25, -1.0, 0.0])) == [0.75, -1.0, 0.0]


def test_chinese_characters_merge_into_jieba_words() -> None:
    text = "这部电影很好看"
    tok = word_tokenizer(list(text))  # BERT-Chinese style: one token per character
    assert has_cjk(text) and not has_cjk("plain english")
    chars = _group(tok, text, "tokenizer")
    assert [w.text for w in chars] == list(text)
    words = _group(tok, text)  # auto: jieba because the text is Chinese
    assert "电影" in [w.text for w in words] and "".join(w.text for w in words) == text
    assert sum(len(w.indices) for w in words) == len(text) and len(words) < len(text)
