"""A UI root with run folders (written directly: milliseconds) and an app over it."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from lmforge.commands.ui import ui_hooks
from lmforge.ui import UiJob, build_app
from tests.reporting.conftest import make_run

POST = {"X-Lmforge-UI": "1"}
"""The header every POST of the page sends."""


def ui_client(root: Path, token: str | None = None, **options: object) -> TestClient:
    """A TestClient of the UI over ``root``, talking to it as 127.0.0.1."""
    app = build_app(UiJob(root=str(root), **options), ui_hooks(), token)  # type: ignore[arg-type]
    return TestClient(app, base_url="http://127.0.0.1:7860")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """Two finished fine-tuning runs under ``runs/`` (one the other's parent)."""
    runs = tmp_path / "runs"
    make_run(runs / "alpha", seed=0, lr=1e-3)
    make_run(runs / "beta", seed=1, lr=2e-3)
    lineage = (runs / "beta" / "lineage.json")
    lineage.write_text(lineage.read_text().replace("runs/pretrain-1", str(runs / "alpha")))
    return runs
