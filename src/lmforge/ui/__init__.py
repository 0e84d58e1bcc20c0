"""``lmforge ui``: a local web app over a folder of runs (FastAPI + a small vanilla page).

Tabs: Runs (:mod:`~lmforge.ui.runlist`: a sortable, filterable table, curves compared,
reports from :mod:`lmforge.reporting`, lineage links), Train (:mod:`~lmforge.ui.forms`: a
form generated from a command's config dataclass; :mod:`~lmforge.ui.jobs`: detached
``lmforge`` processes that outlive the page and the UI), Playground
(:mod:`~lmforge.ui.playground`: predictions, attributions, streamed chat). Every path is
resolved inside the root (:mod:`~lmforge.ui.paths`); :mod:`~lmforge.ui.app` holds the routes
and the token / host / header checks. The page (``static/``) ships with the package and
loads nothing from elsewhere. It is a stage library: ``lmforge ui``
(:mod:`lmforge.commands.ui`) hands it what it needs from the command registry.
"""

from __future__ import annotations

from lmforge.lazy import lazy_getattr

__all__ = ["UiHooks", "UiJob", "build_app"]

# Lazy: the command registry imports UiJob, and `lmforge --help` must not load FastAPI or torch.
_EXPORTS = {"UiHooks": "lmforge.ui.app", "build_app": "lmforge.ui.app",
            "UiJob": "lmforge.ui.settings"}

__getattr__ = lazy_getattr(__name__, _EXPORTS)
