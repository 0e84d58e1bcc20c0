"""What an attack run adds to its report: accuracy before and under each attack, and a few
of its successful adversarial examples. Read from ``summary.json`` and
``attack-<name>/adversarial.jsonl`` (which holds only the successful ones)."""

from __future__ import annotations

from typing import Any

from lmforge.reporting.html import Section, esc, examples_table, note, read_jsonl, table
from lmforge.reporting.rundata import RunData

COLUMNS = ("original_accuracy", "accuracy_under_attack", "attack_success_rate",
           "avg_perturbed_word_pct", "avg_queries", "seconds")
"""The per-attack numbers shown first (any other number of an attack follows)."""

SHOWN = ("original", "perturbed", "label", "original_prediction", "original_score",
         "perturbed_prediction", "perturbed_score")
"""The example columns shown (the changed words are visible in the two texts)."""


def sections(run: RunData, job: Any) -> list[Section]:
    """One row per attack, then each attack's first successful adversarial examples."""
    attacks = run.summary.get("attacks")
    if not isinstance(attacks, dict) or not attacks:
        return [Section("Attack results", note("No attack results in summary.json."))]
    keys = [k for k in COLUMNS if any(k in a for a in attacks.values())]
    keys += sorted({k for a in attacks.values() for k, v in a.items()
                    if isinstance(v, (int, float)) and not isinstance(v, bool)} - set(keys))
    body = [table(("attack", *keys), [(name, *[a.get(k, "") for k in keys])
                                      for name, a in attacks.items()])]
    for name in attacks:
        rows = read_jsonl(run.folder / f"attack-{name}" / "adversarial.jsonl", job.examples)
        if rows and job.examples > 0:
            body += [f"<h4>{esc(name)}: successful adversarial examples</h4>",
                     examples_table([{k: r.get(k) for k in SHOWN if k in r} for r in rows])]
    return [Section("Attack results", "".join(body))]
