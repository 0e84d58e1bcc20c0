"""The config of ``lmforge report``."""

from __future__ import annotations

from dataclasses import dataclass

from lmforge.config import check, opt


@dataclass
class ReportJob:
    """``lmforge report RUN [RUN...]``: one self-contained HTML page for one run or several.

    One run: its final metrics, training curves, what its command adds (a task's pictures
    and example predictions, an accuracy matrix, a study's trials, attack results,
    attributions), lineage and config. Several runs: the curves overlaid, the metrics side by
    side and the config keys that differ. The file has no script and loads nothing.
    """

    runs: list[str] = opt([], "Run folders to report (bare words: `lmforge report RUN "
                              "[RUN...]`).")
    output: str | None = opt(None, "The HTML file to write (default: RUN/report.html for one "
                                   "run, report.html in the current folder for several).")
    examples: int = opt(8, "Example predictions shown per evaluated split (the most "
                           "confident mistakes first, where the task has scores).")
    max_points: int = opt(600, "Points kept per curve: longer curves keep each bucket's "
                               "lowest and highest value (spikes survive).")
    output_dir: str | None = opt(None, "Unused (a report is one file: output=...).")

    def __post_init__(self) -> None:
        check(self.examples >= 0, "examples must be >= 0")
        check(self.max_points >= 4, "max_points must be >= 4")
