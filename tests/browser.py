"""A real Chromium for the browser tests (Playwright driving the Debian ``chromium``).

Playwright's own browser download is not reachable on these machines, so the tests launch the
system browser (``apt-get install chromium``; ``.ci/run`` installs it). Where the browser or
the ``playwright`` package is missing, :func:`chromium` skips the test with one line saying
which, and the rest of the suite runs. Screenshots go to :func:`artifact` (``LMFORGE_ARTIFACTS``
or ``test-artifacts/`` at the repository root, ignored by git).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

ROOT = Path(__file__).resolve().parents[1]
CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")


def browser_path() -> str | None:
    """The system Chromium (``LMFORGE_CHROMIUM`` first), or None."""
    for candidate in (os.environ.get("LMFORGE_CHROMIUM"), *CANDIDATES,
                      shutil.which("chromium")):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def artifact(name: str) -> Path:
    """Where a test saves ``name`` (a screenshot) for people and CI to look at."""
    folder = Path(os.environ.get("LMFORGE_ARTIFACTS", ROOT / "test-artifacts"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder / name


@contextmanager
def chromium() -> Iterator[Any]:
    """A launched headless Chromium (``--no-sandbox``: the tests run as root); skips the
    calling test, with one line, where the browser or playwright is missing."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("browser test: the playwright package is not installed (pip install "
                    "playwright)")
    path = browser_path()
    if path is None:
        pytest.skip("browser test: no chromium at /usr/bin/chromium (apt-get install chromium)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=path, args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()


class PageWatch:
    """What a page did: console errors, failed loads and every URL it asked for."""

    def __init__(self, page: Any) -> None:
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.failed: list[str] = []
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        page.on("request", lambda r: self.requests.append(r.url))
        page.on("requestfailed", lambda r: self.failed.append(r.url))

    def outside(self, allowed_hosts: tuple[str, ...] = ()) -> list[str]:
        """Requests that left the machine (anything but file:, data:, about: and the hosts
        allowed, e.g. the test server's 127.0.0.1)."""
        out = []
        for url in self.requests:
            parsed = urlparse(url)
            if parsed.scheme in ("file", "data", "about", "blob"):
                continue
            if parsed.hostname in allowed_hosts:
                continue
            out.append(url)
        return out


def block_network(page: Any, allowed_hosts: tuple[str, ...] = ()) -> None:
    """Abort every request to another host: the page must work as it would offline."""
    def route(r: Any) -> None:
        parsed = urlparse(r.request.url)
        if parsed.scheme in ("file", "data", "about", "blob") or parsed.hostname in allowed_hosts:
            r.continue_()
        else:
            r.abort()

    page.route("**/*", route)
