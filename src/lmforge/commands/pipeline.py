"""``lmforge pipeline``: stages in dependency order with content caching.

A stage is skipped when its *key* is the one recorded at its last successful run. The key
hashes the command, the resolved config (references replaced by paths), the fingerprints of
its data files, lmforge's source, and the run ids of the parent stages' runs, so a rerun
parent (changed, or ``--force``) makes every stage below it rerun too.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lmforge.commands.registry import get_command, pipeline_commands
from lmforge.commands.runner import headline_metrics, resolve_job, run_command
from lmforge.config import _suggest, load_yaml, merge_dicts, parse_overrides, to_dict
from lmforge.errors import ConfigError, LmforgeError
from lmforge.lineage import canonical_hash, code_version, data_fingerprints, read_lineage
from lmforge.pipelines.settings import PipelineJob
from lmforge.runs import write_json

log = logging.getLogger(__name__)
STATE_FILE = "pipeline.json"
REFERENCE = re.compile(r"\$\{stages\.([A-Za-z0-9_\-]+)\.([A-Za-z_]+)\}")
FIELDS = ("run_dir", "model", "tokenizer")
STAGE_KEYS = ("command", "config", "overrides", "needs")
# Stage names that are also shorthand for a command.
ALIASES = {"tokenizer": "tokenizer train"}


@dataclass
class Stage:
    """One stage: its command, raw config and the stages it depends on."""

    name: str
    command: str
    data: dict[str, Any]
    needs: list[str] = field(default_factory=list)
    job: Any = None


def parse_stage(name: str, spec: Any) -> Stage:
    """A stage from its YAML mapping (see :class:`~lmforge.pipelines.settings.PipelineJob`)."""
    commands = pipeline_commands()
    if not isinstance(spec, Mapping):
        raise ConfigError(f"stage {name!r} must be a mapping with a command and its config")
    spec = dict(spec)
    command = str(spec.pop("command", ALIASES.get(name, name)))
    command = ALIASES.get(command, command)
    if command not in commands:
        raise ConfigError(f"stage {name!r}: unknown command {command!r}"
                          f"{_suggest(command, list(commands))}; set command: to one of "
                          f"{sorted(commands)}")
    config = spec.pop("config", None)
    overrides = spec.pop("overrides", []) or []
    needs = spec.pop("needs", []) or []
    if isinstance(config, str):
        data = load_yaml(config)
    elif isinstance(config, Mapping) or config is None:
        data = dict(config or {})
    else:
        raise ConfigError(f"stage {name!r}: config must be a YAML path or a mapping")
    if not isinstance(overrides, list) or not isinstance(needs, list):
        raise ConfigError(f"stage {name!r}: overrides and needs must be lists")
    data = merge_dicts(merge_dicts(data, spec), parse_overrides([str(o) for o in overrides]))
    if data.get("output_dir"):
        raise ConfigError(f"stage {name!r}: output_dir is set by the pipeline (OUTPUT/{name}); "
                          "remove it")
    return Stage(name, command, data, [str(n) for n in needs])


def _references(value: Any) -> list[tuple[str, str]]:
    if isinstance(value, Mapping):
        return [r for v in value.values() for r in _references(v)]
    if isinstance(value, list):
        return [r for v in value for r in _references(v)]
    return REFERENCE.findall(value) if isinstance(value, str) else []


def order_stages(stages: dict[str, Stage]) -> list[str]:
    """Stages in dependency order (file order among independent ones).

    Raises:
        ConfigError: A reference to an unknown stage (did-you-mean) or a cycle (named).
    """
    deps: dict[str, list[str]] = {}
    for name, stage in stages.items():
        for _, what in _references(stage.data):
            if what not in FIELDS:
                raise ConfigError(f"stage {name!r}: reference field {what!r} is not known"
                                  f"{_suggest(what, FIELDS)}; use one of {list(FIELDS)}")
        found = [s for s, _ in _references(stage.data)] + stage.needs
        for dep in found:
            if dep not in stages:
                raise ConfigError(f"stage {name!r} refers to unknown stage {dep!r}"
                                  f"{_suggest(dep, list(stages))}; stages are {list(stages)}")
        deps[name] = list(dict.fromkeys(found))
    order: list[str] = []
    state: dict[str, str] = {}

    def visit(name: str, path: list[str]) -> None:
        if state.get(name) == "done":
            return
        if state.get(name) == "visiting":
            cycle = path[path.index(name):] + [name]
            raise ConfigError(f"the pipeline has a cycle: {' -> '.join(cycle)}; remove one of "
                              "these references")
        state[name] = "visiting"
        for dep in deps[name]:
            visit(dep, [*path, name])
        state[name] = "done"
        order.append(name)

    for name in stages:
        visit(name, [])
    return order


def stage_output(stage: Stage, folder: Path, what: str) -> str:
    """The path a reference ``${stages.NAME.what}`` stands for."""
    if what == "model" and stage.command == "tune":
        return str(folder / "final")
    return str(folder)


def _substitute(value: Any, outputs: dict[str, dict[str, str]]) -> Any:
    if isinstance(value, Mapping):
        return {k: _substitute(v, outputs) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, outputs) for v in value]
    if isinstance(value, str):
        return REFERENCE.sub(lambda m: outputs[m.group(1)][m.group(2)], value)
    return value


def plan(job: PipelineJob) -> tuple[Path, dict[str, Stage], list[str]]:
    """Parse, order and fully resolve every stage's config before anything runs."""
    folder = Path(job.output_dir or Path("runs") / job.name)
    stages = {str(name): parse_stage(str(name), spec) for name, spec in job.stages.items()}
    order = order_stages(stages)
    for name in job.force:
        if name not in stages:
            raise ConfigError(f"--force {name!r}: no such stage{_suggest(name, list(stages))}; "
                              f"stages are {list(stages)}")
    outputs = {name: {f: stage_output(s, folder / name, f) for f in FIELDS}
               for name, s in stages.items()}
    for name in order:
        stage = stages[name]
        data = _substitute(stage.data, outputs)
        data["output_dir"] = str(folder / name)
        try:
            stage.job = resolve_job(stage.command, data)
        except LmforgeError as err:
            raise ConfigError(f"stage {name!r} ({stage.command}): {err}") from None
    return folder, stages, order


def stage_key(stage: Stage, parent_runs: dict[str, str | None]) -> str:
    """The cache key of a stage (see the module doc)."""
    config = to_dict(stage.job)
    config.pop("output_dir", None)
    return canonical_hash({"command": stage.command, "config": config,
                           "data": data_fingerprints(config),
                           "code": code_version()["source_hash"], "parents": parent_runs})


def _parents(stage: Stage, stages: dict[str, Stage]) -> list[str]:
    return list(dict.fromkeys([s for s, _ in _references(stage.data)] + stage.needs))


def run_pipeline(job: PipelineJob, resume: bool = False) -> dict[str, Any]:
    """Run the stages that changed; reuse the rest.

    Returns:
        The summary: each stage's status (ran / cached), run directory, seconds and metrics.
    """
    folder, stages, order = plan(job)
    folder.mkdir(parents=True, exist_ok=True)
    state_path = folder / STATE_FILE
    state: dict[str, Any] = {}
    if state_path.is_file():
        state = json.loads(state_path.read_text(encoding="utf-8")).get("stages", {})
    forced = set(job.force)
    run_ids: dict[str, str | None] = {}
    rows: list[dict[str, Any]] = []
    for name in order:
        stage = stages[name]
        stage_dir = folder / name
        key = stage_key(stage, {p: run_ids.get(p) for p in _parents(stage, stages)})
        record = state.get(name, {})
        lineage = read_lineage(stage_dir)
        cached = (record.get("key") == key and record.get("status") == "done"
                  and lineage is not None and lineage.get("run_id") == record.get("run_id")
                  and name not in forced)
        if job.dry_run:
            rows.append({"stage": name, "command": stage.command,
                         "status": "cached" if cached else "would run",
                         "run_dir": str(stage_dir)})
            run_ids[name] = record.get("run_id") if cached else f"planned-{key[:8]}"
            continue
        if cached:
            log.info("stage %s: cached (%s)", name, stage_dir)
            run_ids[name] = record["run_id"]
            rows.append({"stage": name, "command": stage.command, "status": "cached",
                         "run_dir": str(stage_dir), "seconds": 0.0,
                         "metrics": record.get("metrics", {})})
            continue
        # A stage killed mid-run with the same key continues from its checkpoints.
        resume_stage = (record.get("key") == key and record.get("status") == "running"
                        and get_command(stage.command).resumes
                        and (stage_dir / "checkpoints").is_dir()
                        and name not in forced)
        if not resume_stage and stage_dir.exists():
            shutil.rmtree(stage_dir)
        state[name] = {"key": key, "status": "running", "command": stage.command}
        write_json(state_path, {"name": job.name, "stages": state})
        log.info("stage %s: running %s%s", name, stage.command,
                 " (resuming)" if resume_stage else "")
        t0 = time.perf_counter()
        summary = run_command(stage.command, stage.job, resume=resume_stage)
        seconds = round(time.perf_counter() - t0, 2)
        lineage = read_lineage(stage_dir) or {}
        metrics = headline_metrics(summary)
        run_ids[name] = lineage.get("run_id")
        state[name] = {"key": key, "status": "done", "command": stage.command,
                       "run_id": run_ids[name], "seconds": seconds,
                       "metrics": {k: v for k, v in list(metrics.items())[:6]}}
        write_json(state_path, {"name": job.name, "stages": state})
        rows.append({"stage": name, "command": stage.command, "status": "ran",
                     "run_dir": str(stage_dir), "seconds": seconds,
                     "metrics": state[name]["metrics"]})
    summary = {"command": "pipeline", "run_dir": str(folder), "name": job.name,
               "ran": [r["stage"] for r in rows if r["status"] == "ran"],
               "cached": [r["stage"] for r in rows if r["status"] == "cached"],
               "stages": rows}
    if not job.dry_run:
        write_json(folder / "summary.json", summary)
    summary["table"] = _table(rows)
    return summary


def _table(rows: list[dict[str, Any]]) -> str:
    lines = [f"{'stage':<14} {'command':<16} {'status':<10} {'seconds':>8}  metrics"]
    for row in rows:
        metrics = ", ".join(f"{k}={v:.4g}" for k, v in list(row.get("metrics", {}).items())[:3])
        seconds = row.get("seconds")
        lines.append(f"{row['stage']:<14} {row['command']:<16} {row['status']:<10} "
                     f"{'' if seconds is None else f'{seconds:.1f}':>8}  {metrics}")
    return "\n".join(lines)
