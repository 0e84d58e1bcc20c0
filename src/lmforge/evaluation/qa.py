"""Extractive QA metrics following the official SQuAD v1.1 / v2.0 evaluation scripts.

Conventions copied from ``evaluate-v2.0.py``: answers are normalized (lowercase, punctuation
and the articles a/an/the removed, whitespace collapsed) before comparison; each prediction is
scored against every gold answer and the best score is kept; a question whose gold answers
are all empty is unanswerable and scores 1 only when the prediction is empty too.
"""

from __future__ import annotations

import collections
import re
import string
from collections.abc import Iterable, Mapping
from typing import Any

from lmforge.errors import DataError

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCTUATION = set(string.punctuation)


def normalize_answer(text: str) -> str:
    """Lowercase, drop punctuation and articles, and collapse whitespace (SQuAD rules)."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def _golds(golds: str | Iterable[str]) -> list[str]:
    """Gold answers with empty ones dropped; ``[""]`` when none remain (unanswerable)."""
    answers = [golds] if isinstance(golds, str) else list(golds)
    answers = [a for a in answers if normalize_answer(a)]
    return answers or [""]


def _f1_one(prediction: str, gold: str) -> float:
    pred_toks = normalize_answer(prediction).split()
    gold_toks = normalize_answer(gold).split()
    if not pred_toks or not gold_toks:
        # Unanswerable gold or empty prediction: right only if both are empty.
        return float(pred_toks == gold_toks)
    common = collections.Counter(pred_toks) & collections.Counter(gold_toks)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision = same / len(pred_toks)
    recall = same / len(gold_toks)
    return 2 * precision * recall / (precision + recall)


def exact_match(prediction: str, golds: str | Iterable[str]) -> float:
    """1.0 when the normalized prediction equals any normalized gold answer, else 0.0.

    An empty gold list means the question is unanswerable: 1.0 iff the prediction is empty.
    """
    pred = normalize_answer(prediction)
    return float(max(pred == normalize_answer(g) for g in _golds(golds)))


def f1(prediction: str, golds: str | Iterable[str]) -> float:
    """Token-overlap F1 (0..1) against the best-matching gold answer.

    An empty gold list means the question is unanswerable: 1.0 iff the prediction is empty.
    """
    return max(_f1_one(prediction, g) for g in _golds(golds))


def qa_metrics(
    predictions: Mapping[str, str], references: Mapping[str, Iterable[str]]
) -> dict[str, Any]:
    """SQuAD-style exact match and F1 over a set of questions.

    Args:
        predictions: Question id -> predicted answer text (``""`` = no answer).
        references: Question id -> gold answer texts (empty list = unanswerable).

    Returns:
        ``exact_match`` and ``f1`` as percentages (0-100, as SQuAD reports), ``total`` (number
        of reference questions), ``missing`` (ids without a prediction; scored as empty
        answers) and, when any question is unanswerable, ``has_answer_exact``,
        ``has_answer_f1``, ``has_answer_total``, ``no_answer_exact``, ``no_answer_f1`` and
        ``no_answer_total``. Predictions for ids not in ``references`` are ignored.

    Raises:
        DataError: No references.
    """
    if not references:
        raise DataError("no reference questions to evaluate; evaluate on a non-empty split")
    missing = [qid for qid in references if qid not in predictions]
    em: dict[str, float] = {}
    f1s: dict[str, float] = {}
    has_answer: dict[str, bool] = {}
    for qid, golds in references.items():
        answers = _golds(golds)
        pred = predictions.get(qid, "")
        has_answer[qid] = answers != [""]
        em[qid] = exact_match(pred, answers)
        f1s[qid] = f1(pred, answers)

    def pct(scores: dict[str, float], ids: list[str]) -> float:
        return 100.0 * sum(scores[i] for i in ids) / len(ids) if ids else 0.0

    ids = list(references)
    out: dict[str, Any] = {
        "exact_match": pct(em, ids),
        "f1": pct(f1s, ids),
        "total": len(ids),
        "missing": missing,
    }
    no_ans = [i for i in ids if not has_answer[i]]
    if no_ans:
        has_ans = [i for i in ids if has_answer[i]]
        out.update(
            {
                "has_answer_exact": pct(em, has_ans),
                "has_answer_f1": pct(f1s, has_ans),
                "has_answer_total": len(has_ans),
                "no_answer_exact": pct(em, no_ans),
                "no_answer_f1": pct(f1s, no_ans),
                "no_answer_total": len(no_ans),
            }
        )
    return out
