"""The runs under the UI's root, as rows of the Runs table and curves to compare.

A row is read from the small files of the run directory contract (``summary.json``,
``lineage.json``, ``config.yaml``) and, for a running training, the tail of
``metrics.jsonl``; a whole metrics file is read only when a run's curves are asked for.
200 runs list in tens of milliseconds.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from lmforge.reporting.charts import line_chart
from lmforge.reporting.rundata import read_run
from lmforge.tracking.loggers import METRICS_FILE
from lmforge.ui.jobs import STATE_FILE, job_status, read_state
from lmforge.ui.paths import relative_name

LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
"""libyaml's safe loader where PyYAML has it (a config.yaml in a tenth of the time)."""

Headline = Callable[[Mapping[str, Any]], dict[str, float]]
"""A summary -> its headline metrics (the command registry's ``headline_metrics``)."""

SKIP = frozenset({"checkpoints", "model", "tb", "trials", "eval-validation", "eval-test",
                  "plots", "tokenizer"})
MARKS = ("summary.json", "lineage.json", "config.yaml", STATE_FILE)
TASK_FILE = "lmforge_task.json"


def find_runs(root: Path, depth: int) -> Iterator[Path]:
    """Run directories under ``root`` (holding one of :data:`MARKS`), never following a
    symlinked folder out of it."""
    stack = [(root, depth)]
    while stack:
        folder, left = stack.pop()
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name, reverse=True)
        except OSError:
            continue
        names = {e.name for e in entries}
        if folder != root and (any(mark in names for mark in MARKS) or _holds_model(folder,
                                                                                  names)):
            yield folder
        if left <= 0:
            continue
        for entry in entries:
            if entry.name in SKIP or entry.name.startswith(".") or \
                    not entry.is_dir(follow_symlinks=False):
                continue
            stack.append((Path(entry.path), left - 1))


def _holds_model(folder: Path, names: set[str]) -> bool:
    """A fine-tuned model folder or an export (``lmforge_task.json``) without run files."""
    return TASK_FILE in names or ("model" in names and (folder / "model" / TASK_FILE).is_file())


def _json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _config(run: Path) -> dict[str, Any]:
    try:
        data = yaml.load((run / "config.yaml").read_text(encoding="utf-8"), Loader=LOADER)
    except (OSError, yaml.YAMLError, UnicodeDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def last_metrics(run: Path, max_bytes: int = 8192) -> dict[str, Any]:
    """The last complete row of ``metrics.jsonl`` with a ``step`` ({} when none)."""
    try:
        with open(run / METRICS_FILE, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - max_bytes))
            lines = fh.read().decode("utf-8", errors="replace").splitlines()
    except OSError:
        return {}
    for line in reversed(lines):
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict) and "step" in row:
            return row
    return {}


def _model(config: Mapping[str, Any]) -> str:
    model = config.get("model")
    if not isinstance(model, Mapping):
        return str(config.get("run") or "")
    named = model.get("pretrained") or model.get("name")
    if named:
        return str(named)
    return " ".join(str(model[k]) for k in ("family", "size") if model.get(k))


def run_row(root: Path, run: Path, headline: Headline) -> dict[str, Any]:
    """One row of the Runs table."""
    summary = _json(run / "summary.json")
    lineage = _json(run / "lineage.json")
    config = _config(run)
    state = read_state(run)
    status = job_status(run, state) if state is not None else \
        ("finished" if summary or not (run / "config.yaml").is_file() else "incomplete")
    task = config.get("task")
    saved = {} if summary.get("task") or task else \
        _json(run / "model" / TASK_FILE) or _json(run / TASK_FILE)
    metrics = {k: round(v, 6) for k, v in list(headline(summary).items())[:4]} \
        if summary else {}
    row: dict[str, Any] = {
        "run": relative_name(root, run),
        "command": str(lineage.get("command") or summary.get("command")
                       or (state or {}).get("argv", ["", "", "", ""])[3]),
        "task": str(summary.get("task") or (task.get("name") if isinstance(task, Mapping)
                                            else "") or saved.get("task") or ""),
        "model": _model(config), "metrics": metrics, "status": status,
        "started": str(lineage.get("started") or ""), "seconds": lineage.get("seconds"),
        "parents": [_parent(root, run, p) for p in lineage.get("parents") or []
                    if isinstance(p, Mapping)],
        "has_model": (run / "model" / TASK_FILE).is_file() or (run / TASK_FILE).is_file(),
    }
    if state is not None:
        row["started"] = row["started"] or _iso(state.get("started"))
        if status == "running":
            last = last_metrics(run)
            steps = (config.get("train") or {}).get("max_steps") \
                if isinstance(config.get("train"), Mapping) else None
            row["progress"] = {"step": last.get("step"), "max_steps": steps,
                               "loss": last.get("train_loss", last.get("loss"))}
    return row


def _iso(stamp: Any) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(float(stamp))) if stamp else ""


def _parent(root: Path, run: Path, parent: Mapping[str, Any]) -> dict[str, Any]:
    """A lineage parent, with its name in the table when it lies under the root."""
    path = str(parent.get("path") or "")
    link = None
    if path:
        candidate = Path(path) if Path(path).is_absolute() else run / path
        for place in (candidate, Path.cwd() / path, root.parent / path):
            try:
                resolved = place.resolve()
            except OSError:
                continue
            if resolved.is_relative_to(root) and resolved != root and resolved.is_dir():
                link = relative_name(root, resolved)
                break
    return {"key": str(parent.get("key") or ""), "path": path, "run": link,
            "command": str(parent.get("command") or "")}


def list_runs(root: Path, depth: int, headline: Headline) -> list[dict[str, Any]]:
    """Every run under ``root``, newest start first."""
    rows = [run_row(root, run, headline) for run in find_runs(root, depth)]
    rows.sort(key=lambda r: (r["started"], r["run"]), reverse=True)
    return rows


def compare_charts(runs: Mapping[str, Path], max_points: int = 400) -> list[str]:
    """SVG charts, one per logged key, each with one curve per run (keys of any run)."""
    curves = {name: read_run(path, name).curves() for name, path in runs.items()}
    keys: list[str] = []
    for per_run in curves.values():
        keys += [k for k in per_run if k not in keys]
    charts = []
    for key in keys:
        series = {name: per_run[key] for name, per_run in curves.items() if key in per_run}
        chart = line_chart(key, series, max_points=max_points)
        if chart:
            charts.append(chart)
    return charts
