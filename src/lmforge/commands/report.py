"""``lmforge report RUN [RUN...]``: one self-contained HTML report of runs.

The generic page comes from :mod:`lmforge.reporting`; what each run's command adds (a task's
pictures and examples, an accuracy matrix, a study's trials, attack results, attributions)
comes from the modules that command names in its registry entry (``report_sections``), so
this module knows no command and no task. :func:`write_run_report` is what
:func:`~lmforge.commands.runner.run_command` calls at the end of every run whose config has a
``track`` section with ``track.report`` on, writing ``report.html`` into the run folder.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lmforge.commands.registry import COMMANDS, headline_metrics
from lmforge.errors import ConfigError
from lmforge.reporting import comparison_page, read_run, single_run_page, write_report
from lmforge.reporting.html import Section, note
from lmforge.reporting.rundata import RunData, unique_names
from lmforge.reporting.settings import ReportJob

log = logging.getLogger(__name__)

REPORT_FILE = "report.html"


def stage_sections(run: RunData, job: ReportJob) -> list[Section]:
    """What the run's command adds to its report (the registry's ``report_sections``).

    A section that fails to draw becomes a one-line note: a report of a run folder written
    by another lmforge version (or damaged by hand) still shows everything else.
    """
    command = COMMANDS.get(run.command)
    if command is None:
        return []
    out: list[Section] = []
    for make in command.load_report_sections():
        try:
            out.extend(make(run, job))
        except Exception as err:  # noqa: BLE001 - reported in the page, the rest still drawn
            log.warning("report section %s of %s failed: %s", make.__name__, run.folder, err)
            out.append(Section(f"{run.command} results",
                               note(f"This section could not be drawn: {type(err).__name__}: "
                                    f"{err}")))
    return out


def build_page(folders: Sequence[str | Path], job: ReportJob | None = None) -> str:
    """The report of ``folders`` (one run: its page; several: side by side) as HTML text.

    Raises:
        ConfigError: No folder given, or one is not a run folder.
    """
    job = job or ReportJob()
    if not folders:
        raise ConfigError("name the runs to report: lmforge report RUN [RUN...]")
    paths = [Path(f).expanduser() for f in folders]
    runs = [read_run(p, name) for p, name in zip(paths, unique_names(paths), strict=True)]
    sections = [stage_sections(r, job) for r in runs]
    headlines = [headline_metrics(r.summary) if r.summary else {} for r in runs]
    if len(runs) == 1:
        return single_run_page(runs[0], headlines[0], sections[0], job.max_points)
    return comparison_page(runs, headlines, sections, job.max_points)


def default_output(folders: Sequence[str]) -> Path:
    """``RUN/report.html`` for one run, ``report.html`` here for several."""
    return Path(folders[0]).expanduser() / REPORT_FILE if len(folders) == 1 \
        else Path(REPORT_FILE)


def run_report(job: ReportJob, resume: bool = False) -> dict[str, Any]:
    """Write the report of ``job.runs``; return where, how big and how long it took."""
    started = time.perf_counter()
    page = build_page(job.runs, job)
    output = Path(job.output).expanduser() if job.output else default_output(job.runs)
    write_report(output, page)
    return {"command": "report", "output": str(output), "runs": len(job.runs),
            "bytes": len(page.encode("utf-8")),
            "seconds": round(time.perf_counter() - started, 3)}


def write_run_report(run_dir: str | Path, job: Any) -> Path | None:
    """``report.html`` at the end of a run, when its ``track.report`` is on.

    A failure is logged, never raised: the run itself has finished and must stay a success.

    A command without a ``track`` section reads its own ``report`` switch instead (``lmforge
    attack``, ``lmforge explain``).

    Returns:
        The file written, or None (``track.report=false`` or ``report=false``, no switch at
        all, or failed).
    """
    track = getattr(job, "track", None)
    wanted = getattr(track, "report", False) if track is not None else getattr(job, "report",
                                                                              False)
    return _write_quietly(Path(run_dir)) if wanted else None


def refresh_run_report(run_dir: str | Path) -> Path | None:
    """Rewrite ``RUN/report.html`` after something was added to a finished run (``lmforge
    evaluate`` leaves an ``eval-<split>/`` folder in it), when the run has a report already.

    Returns:
        The file rewritten, or None (the run has no report, or writing it failed).
    """
    return _write_quietly(Path(run_dir)) if (Path(run_dir) / REPORT_FILE).is_file() else None


def _write_quietly(run_dir: Path) -> Path | None:
    try:
        output = run_dir / REPORT_FILE
        write_report(output, build_page([run_dir]))
        return output
    except Exception as err:  # noqa: BLE001 - the run succeeded; its report is a bonus
        log.warning("could not write %s: %s", run_dir / REPORT_FILE, err)
        return None
