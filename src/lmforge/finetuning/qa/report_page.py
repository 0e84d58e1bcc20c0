"""What an extractive-QA run adds to its report: the most confident wrong answers first.
Torch-free (the task section calls it)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def _gold(row: Mapping[str, Any]) -> list[str]:
    gold = row.get("gold")
    if isinstance(gold, list):
        return [str(g).strip() for g in gold]
    return [str(gold or "").strip()]


def confident_wrong_answers(rows: list[dict[str, Any]],
                            count: int) -> tuple[str, list[dict[str, Any]]]:
    """Answers that match no reference (after stripping), highest span score first."""
    def score(row: Mapping[str, Any]) -> float:
        value = row.get("score")
        return float(value) if isinstance(value, (int, float)) else 0.0

    wrong, right = [], []
    for row in rows:
        (right if str(row.get("answer", "")).strip() in _gold(row) else wrong).append(row)
    ranked = sorted(wrong, key=score, reverse=True) + sorted(right, key=score, reverse=True)
    picked = [{k: r.get(k) for k in ("question", "answer", "gold", "score") if k in r}
              for r in ranked[:count]]
    return (f"The most confident wrong answers first ({len(wrong)} of {len(rows)} answers match "
            "no reference exactly), then the most confident right ones."), picked
