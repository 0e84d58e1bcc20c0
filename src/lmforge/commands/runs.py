"""``lmforge runs``: a table of run directories with their lineage, and ``runs compare A B``."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from lmforge.commands.runner import headline_metrics
from lmforge.config import load_yaml
from lmforge.errors import ConfigError
from lmforge.lineage import read_lineage
from lmforge.pipelines.settings import RunsJob

_SKIP = ("checkpoints", "model", "tb", "trials", "eval-validation", "eval-test", "plots")


def find_runs(root: Path, depth: int) -> Iterator[Path]:
    """Run directories (holding ``lineage.json`` or ``summary.json``) under ``root``."""
    if (root / "lineage.json").is_file() or (root / "summary.json").is_file():
        yield root
    if depth <= 0 or not root.is_dir():
        return
    for child in sorted(p for p in root.iterdir() if p.is_dir()):
        if child.name in _SKIP or child.name.startswith("."):
            continue
        yield from find_runs(child, depth - 1)


def _summary(run: Path) -> dict[str, Any]:
    try:
        return json.loads((run / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _config(run: Path) -> dict[str, Any]:
    if (run / "config.yaml").is_file():
        return load_yaml(run / "config.yaml")
    return dict((read_lineage(run) or {}).get("config") or {})


def _flat(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, Mapping) and value:
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def run_metrics(run: Path) -> dict[str, float]:
    """A run's headline metrics (validation, then test with a ``test_`` prefix)."""
    summary = _summary(run)
    metrics = headline_metrics(summary) if summary else {}
    for key, value in (summary.get("test_metrics") or {}).items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            metrics[f"test_{key}"] = float(value)
    if summary.get("command") == "tune" and summary.get("best"):
        metrics = {f"best_{k}": float(v) for k, v in summary["best"]["values"].items()}
    return metrics


def _row(run: Path, root: Path) -> dict[str, Any]:
    lineage = read_lineage(run) or {}
    summary = _summary(run)
    metrics = run_metrics(run)
    parents = [Path(p.get("path", "")).name or str(p.get("run_id")) for p in
               lineage.get("parents", [])]
    name = str(run.relative_to(root)) if run != root else run.name
    return {"run": name, "command": lineage.get("command") or summary.get("command", "?"),
            "task": summary.get("task", ""),
            "metrics": ", ".join(f"{k}={v:.4g}" for k, v in list(metrics.items())[:3]),
            "parents": ", ".join(parents), "started": lineage.get("started", ""),
            "seconds": lineage.get("seconds", "")}


def table(rows: list[dict[str, Any]]) -> str:
    """Rows as an aligned text table."""
    if not rows:
        return "no runs"
    columns = list(rows[0])
    widths = {c: min(max(len(c), *(len(str(r[c])) for r in rows)), 60) for c in columns}
    lines = ["  ".join(c.ljust(widths[c]) for c in columns)]
    lines += ["  ".join(str(r[c])[:60].ljust(widths[c]) for c in columns) for r in rows]
    return "\n".join(lines)


def compare(a: Path, b: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(config differences, metric differences) between two runs."""
    for run in (a, b):
        if not run.is_dir():
            raise ConfigError(f"run {str(run)!r} does not exist; pass two run directories")
    ca, cb = _flat(_config(a)), _flat(_config(b))
    configs = [{"key": k, "A": ca.get(k, "—"), "B": cb.get(k, "—")}
               for k in sorted(set(ca) | set(cb))
               if k != "output_dir" and ca.get(k, "—") != cb.get(k, "—")]
    ma, mb = run_metrics(a), run_metrics(b)
    metrics = []
    for key in [*ma, *(k for k in mb if k not in ma)]:
        va, vb = ma.get(key), mb.get(key)
        delta = f"{vb - va:+.4g}" if va is not None and vb is not None else ""
        metrics.append({"metric": key, "A": "—" if va is None else f"{va:.4g}",
                        "B": "—" if vb is None else f"{vb:.4g}", "B - A": delta})
    return configs, metrics


def run_runs(job: RunsJob, resume: bool = False) -> dict[str, Any]:
    """List runs under ``job.root`` or compare ``job.a`` with ``job.b``."""
    if job.action == "compare":
        a, b = Path(job.a or ""), Path(job.b or "")
        configs, metrics = compare(a, b)
        text = (f"A = {a}\nB = {b}\n\nconfig differences:\n{table(configs)}\n\n"
                f"metrics:\n{table(metrics)}")
        return {"command": "runs compare", "a": str(a), "b": str(b),
                "config_differences": len(configs), "table": text}
    root = Path(job.root)
    if not root.is_dir():
        raise ConfigError(f"no runs folder {str(root)!r}; pass root=FOLDER (e.g. runs)")
    rows = [_row(run, root) for run in find_runs(root, job.depth)]
    rows.sort(key=lambda r: str(r["started"]))
    return {"command": "runs", "root": str(root), "count": len(rows), "table": table(rows)}
