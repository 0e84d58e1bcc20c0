"""Run reports: one self-contained HTML file per run, or several runs side by side.

:mod:`~lmforge.reporting.html` holds the escaped HTML pieces (tables, embedded pictures) every
stage builds its report section from, :mod:`~lmforge.reporting.charts` the SVG line charts
and their downsampling, :mod:`~lmforge.reporting.rundata` the reading of a run folder and
:mod:`~lmforge.reporting.document` the page. It sits low in the floors (beside
:mod:`lmforge.lineage`) so that the stage packages that contribute sections (fine-tuning
tasks, attacks, attributions, continual streams, studies) can import the pieces; it names
no command and no task. ``lmforge report`` (:mod:`lmforge.commands.report`) composes them.
"""

from __future__ import annotations

from lmforge.reporting.document import comparison_page, single_run_page, write_report
from lmforge.reporting.html import Section
from lmforge.reporting.rundata import RunData, read_run

__all__ = ["RunData", "Section", "comparison_page", "read_run", "single_run_page",
           "write_report"]
