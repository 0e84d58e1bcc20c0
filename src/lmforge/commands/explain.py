"""``lmforge explain``: attributions to jsonl / HTML / PNG, and their faithfulness."""

from __future__ import annotations

import itertools
import json
import logging
from pathlib import Path
from typing import Any

from lmforge.commands.context import open_run
from lmforge.errors import DataError
from lmforge.explaining.adapters import setting, settings_of
from lmforge.explaining.explainer import Explainer, Explanations, check_budgets, options_from
from lmforge.explaining.faithfulness import agreement_table, faithfulness_table
from lmforge.explaining.render import describe, write_html, write_png
from lmforge.explaining.settings import ExplainJob
from lmforge.predictor import load_predictor, read_inputs
from lmforge.runs import write_json

log = logging.getLogger(__name__)


def cost_table(cost: dict[str, dict[str, float]]) -> str:
    """Markdown table of seconds and model calls per explanation."""
    lines = ["| method | seconds / explanation | model sequences / explanation | "
             "forward passes / explanation |", "|---|---:|---:|---:|"]
    for name, c in cost.items():
        n = c["sequences"] / c["sequences_per_example"] if c["sequences_per_example"] else 1
        lines.append(f"| {name} | {c['seconds_per_example']:.3f} | "
                     f"{c['sequences_per_example']:.0f} | {c['forward_passes'] / n:.1f} |")
    return "\n".join(lines)


def _records(job: ExplainJob, predictor: Any) -> list[dict[str, Any]]:
    column = job.text_column or setting(settings_of(predictor), "text_column", "text")
    records = list(itertools.islice(read_inputs(job.input, column), job.limit))
    if not records:
        raise DataError(f"no inputs in {job.input!r}; give one text per line or a jsonl/tsv "
                        "file with the run's columns")
    target_column = setting(settings_of(predictor), "text_column", "text")
    if job.text_column and job.text_column != target_column:
        records = [{**r, target_column: r.get(job.text_column)} for r in records]
    return records


def write_outputs(out: Path, result: Explanations, job: ExplainJob, title: str) -> list[str]:
    """explanations.jsonl, explanations.html and example.png; returns the file names."""
    rows = result.rows(job.token_level)
    with open(out / "explanations.jsonl", "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    files = ["explanations.jsonl"]
    if job.html:
        note = ("word score = sum of its sub-word token scores; methods: "
                + ", ".join(result.scores))
        write_html(rows[:job.html_max_examples], out / "explanations.html", title, note)
        files.append("explanations.html")
    if job.png_example is not None and 0 <= job.png_example < len(rows):
        row = rows[job.png_example]
        write_png(row, out / "example.png", describe(row["prediction"]))
        files.append("example.png")
    return files


def run_explain(job: ExplainJob, resume: bool = False) -> dict[str, Any]:
    """Explain the inputs of ``job`` with a run's model; write the run directory.

    Returns:
        The summary (``run_dir``, cost per method, and with ``evaluate`` the faithfulness
        AOPCs); ``table`` holds the markdown table the CLI prints.
    """
    options = options_from(job)
    check_budgets(options)
    predictor = load_predictor(job.run, precision="fp32")
    explainer = Explainer(predictor, options, job.words)
    records = _records(job, predictor)
    run = open_run("explain", job)
    out = run.run_dir
    log.info("explaining %d input(s) with %s", len(records), ", ".join(job.methods))
    with predictor.lock:
        result = explainer.explain(records, job.methods, job.target, job.entity)
        evaluation = explainer.evaluate(result) if job.evaluate else None
    title = f"lmforge explain: {Path(predictor.source).name} ({predictor.task_name})"
    files = write_outputs(out, result, job, title)
    summary: dict[str, Any] = {"run": job.run, "examples": len(records),
                               "methods": list(result.scores), "cost": result.cost,
                               "files": files}
    table = cost_table(result.cost)
    if evaluation is not None:
        faith = {m: {k: v for k, v in r.items() if k != "per_example"}
                 for m, r in evaluation["faithfulness"].items()}
        summary["faithfulness"] = faith
        summary["agreement"] = evaluation["agreement"]
        write_json(out / "faithfulness.json", {**evaluation, "cost": result.cost})
        table = (faithfulness_table(evaluation["faithfulness"], result.cost)
                 + "\n\nRank agreement (Spearman, mean over examples):\n\n"
                 + agreement_table(evaluation["agreement"]))
        (out / "faithfulness.md").write_text(table + "\n", encoding="utf-8")
        summary["files"].extend(["faithfulness.json", "faithfulness.md"])
    return {**run.finish(summary), "table": table}
