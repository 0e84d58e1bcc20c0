"""The config of ``lmforge ui``."""

from __future__ import annotations

from dataclasses import dataclass

from lmforge.config import check, opt


@dataclass
class UiJob:
    """``lmforge ui [--root runs/]``: a local web app over the runs under a folder.

    Runs (a sortable, filterable table, curves compared, reports, lineage), Train (a form
    generated from the commands' configs; started runs are detached ``lmforge`` processes),
    Playground (predictions, attributions, streamed chat). Bound to 127.0.0.1; any other
    address needs a token.
    """

    root: str = opt("runs", "Folder of runs the UI lists, reads and launches into (it reads "
                            "and writes nothing outside it).")
    host: str = opt("127.0.0.1", "Interface to listen on; anything but loopback needs a "
                                 "token.")
    port: int = opt(7860, "TCP port.")
    token: str | None = opt(None, "Access token (header Authorization: Bearer, or ?token= "
                                  "once in the browser); required off loopback.")
    token_env: str = opt("LMFORGE_UI_TOKEN", "Environment variable read when token is unset.")
    depth: int = opt(3, "How deep under root to look for run directories.")
    poll_ms: int = opt(1000, "How often the page refreshes a running training's log and "
                             "curve (milliseconds).")
    max_models: int = opt(2, "Loaded models kept in memory by the playground.")
    data_roots: list[str] = opt([], "Folders, besides the root, whose files the Train form "
                                    "may name (data, models, templates); a path elsewhere is "
                                    "refused.")
    output_dir: str | None = opt(None, "Unused (the UI writes only run folders under root).")

    def __post_init__(self) -> None:
        check(1 <= self.port <= 65535, "port must be in 1..65535")
        check(self.depth >= 0, "depth must be >= 0")
        check(self.poll_ms >= 100, "poll_ms must be >= 100")
        check(self.max_models >= 1, "max_models must be >= 1")
