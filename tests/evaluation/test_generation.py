"""Generation metrics (ROUGE, BLEU) and perplexity."""

from __future__ import annotations

import math

import pytest
from rouge_score import rouge_scorer

from lmforge.errors import DataError
from lmforge.evaluation import CJKCharTokenizer, generation_metrics, has_cjk, perplexity

SENTENCES = ["the quick brown fox jumps over the lazy dog", "a model learns to summarize text"]


def test_identical_texts_score_100():
    m = generation_metrics(SENTENCES, SENTENCES)
    for key in ("rouge1", "rouge2", "rougeL"):
        assert m[key] == pytest.approx(100.0)
    assert m["bleu"] == pytest.approx(100.0)
    assert m["gen_len"] == pytest.approx((9 + 6) / 2)
    assert m["tokenizer"] == "default"
    assert "tok:13a" in m["bleu_signature"]


def test_multiple_references():
    refs = [["something else entirely", SENTENCES[0]], [SENTENCES[1]]]
    m = generation_metrics(SENTENCES, refs)
    assert m["rouge1"] == pytest.approx(100.0)  # best reference per example
    assert m["bleu"] == pytest.approx(100.0)


def test_partial_overlap_is_between_0_and_100():
    m = generation_metrics(["the cat sat on the mat"], ["the cat is on the mat"])
    assert 0 < m["rouge1"] < 100 and 0 < m["rouge2"] < m["rouge1"]


def test_chinese_gets_nonzero_rouge():
    pred, ref = "我们喜欢自然语言处理", "我们都喜欢自然语言处理"
    # Why the CJK tokenizer exists: rouge-score's default tokenizer drops every Chinese char.
    default = rouge_scorer.RougeScorer(["rouge1"], use_stemmer=True).score(ref, pred)
    assert default["rouge1"].fmeasure == 0.0
    assert has_cjk(pred) and not has_cjk("plain text")
    assert CJKCharTokenizer().tokenize("我爱NLP models！") == ["我", "爱", "nlp", "model"]

    m = generation_metrics([pred], [ref])
    assert m["tokenizer"] == "cjk-char"
    # 10 of the 11 reference characters, all 10 predicted: F1 = 2*10/(10+11)
    assert m["rouge1"] == pytest.approx(100 * 20 / 21)
    assert m["bleu"] > 0
    assert "tok:zh" in m["bleu_signature"]
    assert m["gen_len"] == 10  # characters


def test_generation_errors():
    with pytest.raises(DataError, match="2 predictions but 1 references"):
        generation_metrics(SENTENCES, SENTENCES[:1])
    with pytest.raises(DataError, match="no predictions"):
        generation_metrics([], [])
    with pytest.raises(DataError, match="example 0 has no reference"):
        generation_metrics(["x"], [[]])


def test_perplexity():
    assert perplexity(0.0, 10) == 1.0
    assert perplexity(20 * math.log(4), 20) == pytest.approx(4.0)
    assert perplexity(1e6, 1) == math.inf  # exp would overflow
    with pytest.raises(DataError, match="at least one token"):
        perplexity(1.0, 0)
