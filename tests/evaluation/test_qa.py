"""SQuAD-convention QA metrics."""

from __future__ import annotations

import pytest

from lmforge.errors import DataError
from lmforge.evaluation import exact_match, f1, normalize_answer, qa_metrics


def test_normalization_examples():
    assert normalize_answer("The Cat!") == "cat"
    assert normalize_answer("  an   apple, a day ") == "apple day"
    assert normalize_answer("theory") == "theory"  # articles only as whole words
    assert exact_match("The Cat!", ["cat"]) == 1.0
    assert exact_match("the dog", ["cat", "a dog"]) == 1.0  # best over gold answers
    assert exact_match("cats", ["cat"]) == 0.0


def test_f1_partial_overlap_by_hand():
    # pred tokens [black, cat, sat]; gold [cat, sat, down]; 2 shared
    # P = 2/3, R = 2/3 -> F1 = 2/3
    assert f1("the black cat sat", ["a cat sat down"]) == pytest.approx(2 / 3)
    # pred [cat]; gold [cat, sat] -> P = 1, R = 1/2 -> F1 = 2/3; the max over golds is kept
    assert f1("cat", ["dog", "cat sat"]) == pytest.approx(2 / 3)
    assert f1("dog", ["cat"]) == 0.0


def test_unanswerable():
    assert exact_match("", []) == 1.0 and f1("", []) == 1.0
    assert exact_match("Paris", []) == 0.0 and f1("Paris", []) == 0.0
    assert f1("", ["Paris"]) == 0.0
    assert exact_match("the", [""]) == 1.0  # normalizes to empty: counts as no answer


def test_qa_metrics_with_missing_and_no_answer():
    refs = {"q1": ["cat"], "q2": ["a cat sat down"], "q3": [], "q4": ["Paris"]}
    preds = {"q1": "The Cat!", "q2": "the black cat sat", "q3": "", "extra": "ignored"}
    m = qa_metrics(preds, refs)
    # EM: q1 1, q2 0, q3 1, q4 (missing -> "") 0 -> 2/4
    assert m["exact_match"] == pytest.approx(50.0)
    # F1: 1 + 2/3 + 1 + 0 over 4
    assert m["f1"] == pytest.approx(100 * (1 + 2 / 3 + 1) / 4)
    assert m["total"] == 4
    assert m["missing"] == ["q4"]
    assert m["has_answer_total"] == 3 and m["no_answer_total"] == 1
    assert m["has_answer_exact"] == pytest.approx(100 / 3)
    assert m["no_answer_exact"] == 100.0 and m["no_answer_f1"] == 100.0


def test_qa_metrics_all_answerable_has_no_split_keys():
    m = qa_metrics({"a": "x"}, {"a": ["x"]})
    assert m == {"exact_match": 100.0, "f1": 100.0, "total": 1, "missing": []}
    with pytest.raises(DataError, match="no reference questions"):
        qa_metrics({}, {})
