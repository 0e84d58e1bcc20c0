"""The run context: what every command's entry point does at its start and at its end.

Start (:func:`open_run`): the accelerator and precision of a training run, the run folder
(the same on every process), the refusal to write over an earlier run, the resolved config
saved as ``config.yaml``, the seed. End (:meth:`RunContext.finish`): ``summary.json`` with
the command and the run folder first, written by the main process, and every process waiting
for it. :func:`~lmforge.commands.runner.run_command` then adds ``lineage.json`` (one place for
the CLI, the Python API, tune trials and pipeline stages).

A training command reads::

    run = open_run("finetune", job, resume=resume, train=True)
    loggers = run.loggers()
    ... Engine(..., run.run_dir, loggers=loggers, accelerator=run.accelerator)
    return run.finish({...})
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator

from lmforge.config import to_dict
from lmforge.engine.precision import make_accelerator
from lmforge.engine.sharding import check_fsdp_command
from lmforge.runs import make_run_dir, refuse_earlier_run, save_run_config, write_json
from lmforge.tracking import build_loggers
from lmforge.tracking.loggers import MultiLogger


@dataclass
class RunContext:
    """One run of a command: its config, its folder and (training runs) its accelerator."""

    command: str
    """The command as ``summary.json`` names it (``"tokenizer train"``)."""
    job: Any
    """The resolved config (a command's root config dataclass)."""
    run_dir: Path
    accelerator: Accelerator | None = None
    """Training runs only: the process group's accelerator (DDP under ``accelerate launch``)."""
    precision: str | None = None
    """Training runs only: the precision ``train.precision`` resolved to."""

    @property
    def is_main_process(self) -> bool:
        """Whether this process writes the run's files (always true outside DDP)."""
        return self.accelerator is None or self.accelerator.is_main_process

    def loggers(self, folder: Path | None = None, run_name: str | None = None) -> MultiLogger:
        """The tracking backends of ``job.track``, with the resolved config logged.

        Args:
            folder: Where the local backends write (default: the run folder).
            run_name: The name in remote trackers (default: ``track.run_name`` or the
                folder's name).
        """
        track = self.job.track
        folder = folder or self.run_dir
        loggers = build_loggers(folder, track.backends, project=track.project,
                                run_name=run_name or track.run_name or folder.name,
                                is_main_process=self.is_main_process)
        loggers.log_config(to_dict(self.job))
        return loggers

    def finish(self, summary: dict[str, Any],
               copies: Sequence[str] = ()) -> dict[str, Any]:
        """Write ``summary.json`` (and ``copies`` of it) and return the summary.

        Args:
            summary: The command's numbers; ``command`` and ``run_dir`` are put first.
            copies: Other file names the summary is also written to (a command's older
                contract, e.g. ``export_summary.json``).
        """
        summary = {"command": self.command, "run_dir": str(self.run_dir), **summary}
        if self.is_main_process:
            for name in (*copies, "summary.json"):
                write_json(self.run_dir / name, summary)
        if self.accelerator is not None:
            self.accelerator.wait_for_everyone()
        return summary


def open_run(command: str, job: Any, *, folder_prefix: str | None = None,
             resume: bool = False, train: bool = False,
             earlier_run: tuple[str, Sequence[str]] | None = None) -> RunContext:
    """Start a run of ``command``: accelerator, run folder, refusal, saved config, seed.

    Args:
        command: The command's name in ``summary.json`` (and its default folder's prefix).
        job: The resolved config; ``job.output_dir`` names the folder (None: a new
            ``runs/<prefix>-<time>``). Training runs read ``job.train`` too.
        folder_prefix: The default folder's prefix when it is not ``command``.
        resume: Continue the run in ``job.output_dir`` (it must exist).
        train: A training run: build the accelerator first (so every process agrees on the
            folder), refuse a folder holding an earlier run unless resuming, seed torch.
        earlier_run: ``(kind, marks)`` of :func:`~lmforge.runs.refuse_earlier_run` when an
            earlier run of this command leaves other files than a checkpoint or a model.

    Returns:
        The context; :meth:`RunContext.finish` ends the run.

    Raises:
        ConfigError: The folder holds an earlier run and ``resume`` is false, or ``resume``
            is true and there is no folder, or FSDP was asked of a command that does not
            support it.
    """
    check_fsdp_command(command)  # before any process builds a sharded accelerator
    accelerator = precision = None
    if train:
        accelerator, precision = make_accelerator(job.train.precision)
    run_dir = make_run_dir(job.output_dir, folder_prefix or command, must_exist=resume)
    if train:
        kind, marks = earlier_run or ("run", None)
        refuse_earlier_run(run_dir, resume, marks=marks, kind=kind)
    context = RunContext(command, job, run_dir, accelerator, precision)
    if context.is_main_process:
        save_run_config(run_dir, job)
    if train:
        torch.manual_seed(job.train.seed)
    return context
