"""What an explain run adds to its report: each method's word attributions drawn on the first
examples (red: towards the prediction, blue: against), the cost per method, faithfulness
when it was measured, and the run's example picture. Read from ``explanations.jsonl``,
``summary.json`` and ``example.png``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from lmforge.reporting.html import Section, esc, fmt, note, pictures, read_jsonl, table
from lmforge.reporting.rundata import RunData


def highlighted(words: Sequence[Any], scores: Sequence[Any]) -> str:
    """The words with a background whose strength is the score over the largest |score|."""
    values = [float(s) if isinstance(s, (int, float)) else 0.0 for s in scores]
    top = max((abs(v) for v in values), default=0.0) or 1.0
    spans = []
    for word, value in zip(words, values, strict=False):
        alpha = min(abs(value) / top, 1.0) * 0.8
        rgb = "214,39,40" if value >= 0 else "31,119,180"
        spans.append(f"<span title=\"{esc(fmt(value))}\" style=\"background:rgba({rgb},"
                     f"{alpha:.2f});padding:0 2px\">{esc(word)}</span>")
    return " ".join(spans)


def _scores(entry: Any) -> list[Any]:
    scores = entry.get("word_scores") if isinstance(entry, Mapping) else None
    if isinstance(scores, list) and scores and isinstance(scores[0], Mapping):
        return [s.get("score", 0.0) for s in scores]  # [{"word", "score"}, ...] form
    return scores if isinstance(scores, list) else []


def sections(run: RunData, job: Any) -> list[Section]:
    """Attributions on the first examples, cost and faithfulness tables, example.png."""
    body: list[str] = []
    rows = read_jsonl(run.folder / "explanations.jsonl", job.examples)
    for row in rows:
        methods = row.get("methods") if isinstance(row.get("methods"), Mapping) else {}
        lines = [f"<tr><td>{esc(name)}</td><td>{highlighted(row.get('words') or [], _scores(e))}"
                 "</td></tr>" for name, e in methods.items()]
        prediction = row.get("prediction")
        body.append(f"<h4>prediction: {esc(fmt(prediction))}</h4><table><thead><tr>"
                    f"<th>method</th><th>words</th></tr></thead><tbody>{''.join(lines)}"
                    "</tbody></table>")
    if not rows:
        body.append(note("No explanations.jsonl in this run folder."))
    cost = run.summary.get("cost")
    if isinstance(cost, Mapping) and cost:
        keys = [k for k in next(iter(cost.values()))]
        body.append("<h4>Cost per method</h4>" + table(
            ("method", *keys), [(m, *[c.get(k, "") for k in keys]) for m, c in cost.items()]))
    faith = run.summary.get("faithfulness")
    if isinstance(faith, Mapping) and faith:
        keys = sorted({k for f in faith.values() if isinstance(f, Mapping) for k in f})
        body.append("<h4>Faithfulness (ERASER AOPC)</h4>" + table(
            ("method", *keys), [(m, *[f.get(k, "") for k in keys]) for m, f in faith.items()]))
    body.append(pictures(run.folder.glob("example.png")))
    return [Section("Attributions", "".join(body))]
