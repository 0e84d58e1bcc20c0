"""A finished run folder as a report reads it: config, summary, logged metrics, lineage.

Only the run directory contract is read (``config.yaml``, ``summary.json``, ``metrics.jsonl``,
``lineage.json``); what a command writes beyond it is read by that command's own report
section. Nothing here loads a model, torch or a pickle: a report is built in a fraction of a
second from files any run leaves.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lmforge.errors import ConfigError
from lmforge.lineage import read_lineage
from lmforge.reporting.html import read_json, read_jsonl
from lmforge.tracking.loggers import METRICS_FILE

AXIS_KEYS = frozenset({"step", "time", "epoch"})
"""Logged keys that are positions in the run, not curves."""


@dataclass
class RunData:
    """The files of one run folder, read once.

    Attributes:
        folder: The run directory.
        name: Its name in the report (the folder's name, made unique among the runs shown).
        command: The command that made it (``summary.json``'s ``command``; "" if unknown).
        config: The resolved config (``config.yaml``; {} when missing).
        summary: ``summary.json`` ({} when the run did not finish).
        metrics: The rows of ``metrics.jsonl``, in logged order.
        lineage: ``lineage.json`` ({} when missing).
    """

    folder: Path
    name: str
    command: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    metrics: list[dict[str, Any]] = field(default_factory=list)
    lineage: dict[str, Any] = field(default_factory=dict)

    def curves(self) -> dict[str, list[tuple[float, float]]]:
        """Every logged number against ``step``: ``{key: [(step, value), ...]}``.

        Losses come first, then the learning rate, then evaluation metrics, then the rest
        (throughput, gradient norms, ...), each group in first-logged order.
        """
        out: dict[str, list[tuple[float, float]]] = {}
        for row in self.metrics:
            step = row.get("step")
            if not isinstance(step, (int, float)) or isinstance(step, bool):
                continue
            for key, value in row.items():
                if key in AXIS_KEYS or isinstance(value, bool) or \
                        not isinstance(value, (int, float)) or not math.isfinite(value):
                    continue
                out.setdefault(key, []).append((float(step), float(value)))
        for points in out.values():
            points.sort(key=lambda p: p[0])  # resumed runs may log a step twice; order by step
        return dict(sorted(out.items(), key=lambda kv: _curve_rank(kv[0])))


def _curve_rank(key: str) -> int:
    if key.endswith("loss"):
        return 0
    if key == "lr" or key.startswith("lr"):
        return 1
    if key.startswith("eval_"):
        return 2
    return 3


def read_run(folder: str | Path, name: str | None = None) -> RunData:
    """Read a run folder.

    Raises:
        ConfigError: ``folder`` is not a directory, or holds none of ``config.yaml``,
            ``summary.json``, ``metrics.jsonl`` (not a run folder).
    """
    path = Path(folder).expanduser()
    if not path.is_dir():
        raise ConfigError(f"run {str(folder)!r} is not a directory; pass a run folder "
                          "(runs/finetune-...)")
    files = [path / "config.yaml", path / "summary.json", path / METRICS_FILE]
    if not any(f.is_file() for f in files):
        raise ConfigError(f"{str(folder)!r} is not a run folder: it has no config.yaml, "
                          f"summary.json or {METRICS_FILE}")
    config: dict[str, Any] = {}
    if files[0].is_file():
        try:
            loaded = yaml.safe_load(files[0].read_text(encoding="utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError):
            loaded = None
        config = loaded if isinstance(loaded, dict) else {}
    summary = read_json(files[1])
    return RunData(folder=path, name=name or path.resolve().name,
                   command=str(summary.get("command") or (read_lineage(path) or {}).get(
                       "command") or ""),
                   config=config, summary=summary, metrics=read_jsonl(files[2]),
                   lineage=read_lineage(path) or {})


def unique_names(folders: list[Path]) -> list[str]:
    """Short, distinct names for runs: the folder names, with parents added where they clash."""
    names = [f.resolve().name for f in folders]
    for depth in range(2, 6):
        if len(set(names)) == len(names):
            break
        names = ["/".join(f.resolve().parts[-depth:]) for f in folders]
    return [n if names.count(n) == 1 else f"{n} #{i + 1}" for i, n in enumerate(names)]


def final_numbers(summary: Mapping[str, Any]) -> dict[str, float]:
    """Every number in a summary, nested keys dotted (``validation_metrics.accuracy``)."""
    from_keys: dict[str, float] = {}

    def walk(values: Mapping[str, Any], prefix: str) -> None:
        for key, value in values.items():
            if isinstance(value, Mapping):
                walk(value, f"{prefix}{key}.")
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                from_keys[f"{prefix}{key}"] = float(value)

    walk(summary, "")
    return from_keys
