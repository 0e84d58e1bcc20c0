"""What a token-classification (NER) run adds to its report: the entity table (per type) and
the sentences with the most wrongly tagged words. Torch-free (the task section calls it)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lmforge.reporting.html import Section, table


def entity_table(metrics: Mapping[str, Any]) -> list[Section]:
    """Precision / recall / F1 / support per entity type, then the micro average."""
    per_type = metrics.get("per_type")
    if not isinstance(per_type, Mapping) or not per_type:
        return []
    rows: list[tuple[Any, ...]] = [
        (kind, m.get("precision"), m.get("recall"), m.get("f1"), m.get("support"))
        for kind, m in sorted(per_type.items()) if isinstance(m, Mapping)]
    rows.append(("micro", metrics.get("precision"), metrics.get("recall"), metrics.get("f1"),
                 sum(int(r[4] or 0) for r in rows)))
    return [Section("Entities (strict, per type)",
                    table(("type", "precision", "recall", "f1", "support"), rows))]


def _errors(row: Mapping[str, Any]) -> list[str]:
    words, gold, pred = row.get("tokens") or [], row.get("tags") or [], row.get("predicted") or []
    return [f"{w}: {g}→{p}" for w, g, p in zip(words, gold, pred, strict=False) if g != p]


def worst_sentences(rows: list[dict[str, Any]],
                    count: int) -> tuple[str, list[dict[str, Any]]]:
    """Sentences with the most wrongly tagged words first (word: gold→predicted)."""
    ranked = sorted(rows, key=lambda r: len(_errors(r)), reverse=True)[:count]
    wrong = sum(1 for r in rows if _errors(r))
    picked = [{"text": " ".join(map(str, r.get("tokens") or [])),
               "wrong tags": "; ".join(_errors(r)) or "none",
               "predicted entities": r.get("entities", "")} for r in ranked]
    return (f"The sentences with the most wrongly tagged words first ({wrong} of {len(rows)} "
            "sentences have one); each error reads word: gold→predicted."), picked
