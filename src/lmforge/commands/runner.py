"""Run a command: resolve its config from any mix of forms, run it in its process scope, write
its lineage. The CLI, the Python API, ``lmforge tune`` and ``lmforge pipeline`` all run
commands through :func:`run_command`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

# headline_metrics lives with the registry; kept importable from here (API, pipelines, runs).
from lmforge.commands.registry import get_command, headline_metrics
from lmforge.commands.report import write_run_report
from lmforge.config import build_config, load_yaml, merge_dicts, to_dict
from lmforge.engine.scope import run_scope
from lmforge.errors import ConfigError
from lmforge.lineage import write_lineage
from lmforge.runs import is_main_process

ConfigSource = Any  # a config dataclass instance, a mapping, a YAML path, or None

__all__ = ["ConfigSource", "drop_load_report", "headline_metrics", "quiet_libraries",
           "resolve_job", "run_command"]


def _config_data(config: ConfigSource) -> tuple[dict[str, Any], str | None]:
    """(mapping, YAML path) from the ``config`` argument."""
    if config is None:
        return {}, None
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        return to_dict(config), None
    if isinstance(config, Mapping):
        return dict(config), None
    if isinstance(config, (str, Path)):
        return {}, str(config)
    raise ConfigError(f"config must be a config dataclass, a dict or a YAML path, not "
                      f"{type(config).__name__}")


def resolve_job(command: str, config: ConfigSource = None, overrides: Sequence[str] = (),
                sections: Mapping[str, Any] | None = None) -> Any:
    """The validated config of ``command`` from any mix of config forms.

    Resolved in this order (later wins): the command's defaults, ``config`` (a config
    dataclass, a dict or a YAML path), ``sections`` (``{"train": {"lr": 3e-5}}``), then
    ``key=value`` ``overrides``.
    """
    spec = get_command(command)
    base, yaml_path = _config_data(config)
    if yaml_path is not None:
        base = load_yaml(yaml_path)
    data = merge_dicts(base, dict(sections or {}))
    return build_config(spec.config, None, list(overrides), base=data)


def drop_load_report(record: logging.LogRecord) -> bool:
    """Logging filter: False for transformers' multi-line ``LOAD REPORT`` table.

    lmforge logs its own one line when a head is new (``models.build``), so the table (a
    screenful per model load, most of it "can be ignored") is only shown with ``--debug``.
    """
    return "LOAD REPORT" not in record.getMessage()


def quiet_libraries(debug: bool, interactive: bool) -> None:
    """Trim library noise: the load-report table unless ``debug``, and the per-file
    loading / dataset progress bars when stderr is not a terminal (log files, CI)."""
    if debug:
        return
    logger = logging.getLogger("transformers.modeling_utils")
    if drop_load_report not in logger.filters:
        logger.addFilter(drop_load_report)
    if not interactive:
        import datasets  # heavy: only a run that is about to start pays for it
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        datasets.disable_progress_bars()


def run_command(command: str, job: Any, resume: bool = False,
                hooks: Sequence[Any] = (), **options: Any) -> dict[str, Any]:
    """Run one command on a resolved config inside a :func:`run_scope`; return its summary.

    ``hooks`` (engine :class:`~lmforge.engine.hooks.StepHook` objects) go to the commands
    that train with the engine (finetune, pretrain, continual); ``options`` are extra keyword
    arguments of the command's function (e.g. ``report_splits`` of finetune). Every command
    that returns a ``run_dir`` gets its ``lineage.json`` there (:mod:`lmforge.lineage`), and
    its ``report.html`` when its config has ``track.report`` on.
    """
    spec = get_command(command)
    if spec.loads_models:
        quiet_libraries(debug=False, interactive=True)  # lmforge logs its own line for new heads
    kwargs = {"hooks": list(hooks)} if hooks else {}
    started = time.time()
    # A command that reads files only needs no torch state restored (nor torch imported).
    with run_scope() if spec.loads_models else contextlib.nullcontext():
        summary = spec.load()(job, resume=resume, **kwargs, **options)
    if isinstance(summary, Mapping) and summary.get("run_dir") and is_main_process() and \
            dataclasses.is_dataclass(job) and Path(summary["run_dir"]).is_dir():
        write_lineage(command, to_dict(job), summary["run_dir"], started)
        # After the lineage, so the report shows it; only jobs with track.report on.
        write_run_report(summary["run_dir"], job)
    return summary
