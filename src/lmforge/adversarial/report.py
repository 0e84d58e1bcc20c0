"""Attack reports: TextAttack's summary table, a jsonl of adversarial examples, an HTML page."""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lmforge.adversarial.attacks import AttackResult

_ROWS = [("Number of successful attacks:", "successful", "{:d}"),
         ("Number of failed attacks:", "failed", "{:d}"),
         ("Number of skipped attacks:", "skipped", "{:d}"),
         ("Original accuracy:", "original_accuracy", "{:.2%}"),
         ("Accuracy under attack:", "accuracy_under_attack", "{:.2%}"),
         ("Attack success rate:", "attack_success_rate", "{:.2%}"),
         ("Average perturbed word %:", "avg_perturbed_word_pct", "{:.2f}%"),
         ("Average num. words per input:", "avg_words_per_input", "{:.2f}"),
         ("Avg num queries:", "avg_queries", "{:.2f}"),
         ("Seconds:", "seconds", "{:.1f}")]


def text_table(name: str, summary: dict[str, Any]) -> str:
    """The summary as TextAttack prints it (``Attack Results`` box)."""
    cells = [(label, fmt.format(int(summary[key]) if fmt == "{:d}" else summary[key]))
             for label, key, fmt in _ROWS if key in summary]
    left = max(len(label) for label, _ in cells + [(f"Attack Results ({name})", "")])
    right = max(len(value) for _, value in cells)
    rule = f"+-{'-' * left}-+-{'-' * right}-+"
    lines = [rule, f"| {f'Attack Results ({name})':<{left}} | {'':>{right}} |", rule]
    lines += [f"| {label:<{left}} | {value:>{right}} |" for label, value in cells]
    return "\n".join([*lines, rule])


def write_jsonl(path: Path, results: Sequence[AttackResult], labels: Sequence[str]) -> int:
    """One line per successful adversarial example; returns how many were written."""
    count = 0
    with open(path, "w", encoding="utf-8") as fh:
        for r in results:
            if r.status != "success":
                continue
            fh.write(json.dumps({
                "original": r.original, "perturbed": r.perturbed, "label": labels[r.label],
                "original_prediction": labels[r.original_pred],
                "original_score": round(r.original_score, 6),
                "perturbed_prediction": labels[r.perturbed_pred],
                "perturbed_score": round(r.perturbed_score, 6),
                "changed_words": [{"original": a, "perturbed": b} for a, b in r.words],
                "words": r.num_words, "queries": r.queries}, ensure_ascii=False) + "\n")
            count += 1
    return count


def _marked(result: AttackResult, perturbed: bool) -> str:
    """The text with the changed words wrapped in <del> (original) or <ins> (perturbed)."""
    text = result.perturbed if perturbed else result.original
    targets = [b if perturbed else a for a, b in result.words]
    out, pos = [], 0
    for word in targets:
        found = text.find(word, pos)
        if found < 0:
            continue
        out.append(html.escape(text[pos:found]))
        tag = "ins" if perturbed else "del"
        out.append(f"<{tag}>{html.escape(word)}</{tag}>")
        pos = found + len(word)
    out.append(html.escape(text[pos:]))
    return "".join(out)


_STYLE = """body{font-family:system-ui,sans-serif;margin:2em;max-width:70em}
table{border-collapse:collapse;margin-bottom:2em}td,th{border:1px solid #ccc;padding:.3em .6em;
vertical-align:top}th{background:#f3f3f3}del{background:#fdd;text-decoration:none}
ins{background:#cfc;text-decoration:none;font-weight:bold}.s{white-space:nowrap}
pre{background:#f7f7f7;padding:.6em}"""


def write_html(path: Path, title: str, sections: Sequence[tuple[str, dict[str, Any],
                                                                Sequence[AttackResult]]],
               labels: Sequence[str], limit: int = 200) -> None:
    """A self-contained page: per attack its summary and up to ``limit`` adversarial examples
    with the changed words highlighted (red: original, green: replacement)."""
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
             f"</title><style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>"]
    for name, summary, results in sections:
        parts.append(f"<h2>{html.escape(name)}</h2><pre>{html.escape(text_table(name, summary))}"
                     "</pre>")
        shown = [r for r in results if r.status == "success"][:limit]
        if not shown:
            parts.append("<p>No successful adversarial example.</p>")
            continue
        parts.append("<table><tr><th>original</th><th>perturbed</th><th>label</th>"
                     "<th>prediction</th><th>queries</th></tr>")
        for r in shown:
            parts.append(
                f"<tr><td>{_marked(r, False)}</td><td>{_marked(r, True)}</td>"
                f"<td>{html.escape(labels[r.label])}</td><td class='s'>"
                f"{html.escape(labels[r.original_pred])} ({r.original_score:.2f}) &rarr; "
                f"{html.escape(labels[r.perturbed_pred])} ({r.perturbed_score:.2f})</td>"
                f"<td>{r.queries}</td></tr>")
        parts.append("</table>")
    parts.append("</body></html>")
    path.write_text("".join(parts), encoding="utf-8")
