"""What a prompting run adds to its report: accuracy and macro-F1 of each template, of their
ensemble and of the two baselines (calibrated too, when the run calibrated), then the most
confident mistakes; for ``mode=fewshot``, prompt-based against plain fine-tuning per seed.

Read from ``summary.json`` and ``predictions.jsonl`` (``lmforge prompt`` writes both).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lmforge.finetuning.classification.report_page import confident_mistakes
from lmforge.reporting.html import Section, examples_table, kv_table, note, read_jsonl, table
from lmforge.reporting.rundata import RunData

SETUP_KEYS = ("mode", "model", "lm", "template", "chat_template", "calibrate",
              "shots_per_class", "selection", "seeds", "precision", "examples", "labels",
              "seconds")
"""The facts of the run listed first, in this order."""

SCORES = ("accuracy", "macro_f1", "calibrated_accuracy", "calibrated_macro_f1")
"""Score columns of a zero-shot / in-context run (the calibrated ones when it calibrated)."""


def sections(run: RunData, job: Any) -> list[Section]:
    """Setup, the scores table and example predictions of a ``lmforge prompt`` run."""
    summary = run.summary
    setup = {key: summary[key] for key in SETUP_KEYS if key in summary}
    out = [Section("Prompting", kv_table(setup) if setup
                   else note("No prompting summary in summary.json."))]
    if summary.get("mode") == "fewshot":
        out.append(fewshot_scores(summary))
    elif isinstance(summary.get("templates"), Mapping):
        out.append(template_scores(summary))
    examples = example_predictions(run, summary.get("labels"), job.examples)
    if examples is not None:
        out.append(examples)
    return out


def template_scores(summary: Mapping[str, Any]) -> Section:
    """Each template, the ensemble (mean probabilities) and the two baselines."""
    rows: list[tuple[str, Mapping[str, Any]]] = list(summary["templates"].items())
    rows.append(("ensemble (mean p)", summary.get("ensemble") or {}))
    for key, title in (("majority", "majority class of train"),
                       ("constant", "best constant on these examples")):
        baseline = summary.get(key)
        if isinstance(baseline, Mapping):
            rows.append((f"{title} ({baseline.get('label')})", baseline))
    columns = [c for c in SCORES if any(c in scores for _, scores in rows)]
    return Section("Scores per prompt", table(("prompt", *columns),
                                              [(name, *[s.get(c, "") for c in columns])
                                               for name, s in rows]))


def fewshot_scores(summary: Mapping[str, Any]) -> Section:
    """Mean and spread over seeds of prompt-based and plain fine-tuning, then each seed."""
    methods = [m for m in ("prompt", "baseline") if isinstance(summary.get(m), Mapping)]
    keys = [k for k in ("accuracy_mean", "accuracy_std", "macro_f1_mean", "macro_f1_std")
            if any(k in summary[m] for m in methods)]
    body = table(("method", *keys), [(m, *[summary[m].get(k, "") for k in keys])
                                     for m in methods])
    seeds = [r for r in summary.get("runs") or [] if isinstance(r, Mapping)]
    if seeds:
        body += "<h4>Per seed</h4>" + table(
            ("seed", *[f"{m} {k}" for m in methods for k in ("accuracy", "macro_f1")]),
            [(r.get("seed"), *[(r.get(m) or {}).get(k, "") for m in methods
                               for k in ("accuracy", "macro_f1")]) for r in seeds])
    return Section("Few-shot: prompt-based vs plain fine-tuning", body)


def example_predictions(run: RunData, labels: Any, count: int) -> Section | None:
    """The most confident mistakes first (``predictions.jsonl`` holds each label's
    probability in the order of the summary's ``labels``)."""
    if count <= 0 or not isinstance(labels, list):
        return None
    rows = read_jsonl(run.folder / "predictions.jsonl")
    if not rows:
        return None
    scored = [{"text": r.get("text"), "label": r.get("label"), "predicted": r.get("predicted"),
               "scores": dict(zip(labels, r.get("probs") or [], strict=False))} for r in rows]
    how, picked = confident_mistakes(scored, count)
    return Section("Example predictions", note(how) + examples_table(picked))
