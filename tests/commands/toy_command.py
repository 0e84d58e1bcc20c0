"""A toy command for the registry tests: its config and its entry point, nothing else.

Registered by the tests with one line (``COMMANDS["toy"] = Command(ToyJob, ...)``), it must
then show up in ``lmforge --help``, run from the CLI, the Python API and a pipeline.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lmforge.config import check, opt
from lmforge.runs import make_run_dir, refuse_earlier_run, save_run_config, write_json


@dataclass
class ToyJob:
    """``lmforge toy``: count the words of a greeting."""

    greeting: str = opt("hello toy world", "The text whose words are counted.")
    repeat: int = opt(1, "How many times the greeting is said.")
    output_dir: str | None = opt(None, "Run directory (default: runs/toy-<time>).")

    def __post_init__(self) -> None:
        check(self.repeat >= 1, "repeat must be >= 1")


def run_toy(job: ToyJob, resume: bool = False) -> dict[str, Any]:
    """Write a run folder whose summary holds the word count."""
    run_dir = make_run_dir(job.output_dir, "toy")
    refuse_earlier_run(run_dir, resume)
    save_run_config(run_dir, job)
    summary = {"command": "toy", "run_dir": str(run_dir),
               "counts": {"words": len(job.greeting.split()) * job.repeat}}
    write_json(run_dir / "summary.json", summary)
    return summary
