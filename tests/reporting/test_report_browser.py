"""The report of a real fine-tuning run, opened from disk in Chromium with the network off."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from lmforge.cli import main
from lmforge.commands.report import REPORT_FILE
from lmforge.reporting.document import is_report
from tests.browser import PageWatch, artifact, block_network, chromium
from tests.finetuning.conftest import save_word_encoder
from tests.reporting.conftest import make_run

WORDS = ["good", "great", "bad", "awful", "the", "film", "was", "a", "story", "very"]


@pytest.fixture(scope="module")
def finetune_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A few steps of `lmforge finetune` (classification, validation + test evaluated)."""
    root = tmp_path_factory.mktemp("report-run")
    encoder = save_word_encoder(root / "encoder", WORDS)
    rng = random.Random(0)
    data = root / "data"
    data.mkdir()
    for split, rows in (("train", 64), ("dev", 24), ("test", 24)):
        lines = ["text,label"]
        for _ in range(rows):
            label = rng.choice(["neg", "pos"])
            word = rng.choice(WORDS[:2] if label == "pos" else WORDS[2:4])
            lines.append(f"the film was {word},{label}")
        (data / f"{split}.csv").write_text("\n".join(lines) + "\n")
    run = root / "run"
    assert main(["finetune", f"--output-dir={run}", f"data.path={data}",
                 f"model.pretrained={encoder}", "train.max_steps=6", "train.batch_size=16",
                 "train.eval_every=3", "train.log_every=1", "train.lr=5e-3",
                 "track.progress=false", "track.backends=[jsonl]"]) == 0
    return run


def _open(browser: Any, path: Path, shot: str) -> tuple[Any, PageWatch]:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    block_network(page)
    watch = PageWatch(page)
    page.goto(path.resolve().as_uri())
    page.wait_for_load_state("load")
    page.screenshot(path=artifact(shot), full_page=True)
    return page, watch


def test_the_end_of_run_report_renders_offline(finetune_run: Path) -> None:
    report = finetune_run / REPORT_FILE
    assert is_report(report), "finetune did not write report.html (track.report defaults on)"
    with chromium() as browser:
        page, watch = _open(browser, report, "report-finetune.png")
        assert watch.errors == [] and watch.outside() == [] and watch.failed == []
        assert page.title() == f"lmforge report: {finetune_run.name}"
        # Every task picture decoded (confusion matrix, ROC, PR, reliability per split).
        loaded = page.eval_on_selector_all(
            "img", "els => els.map(e => e.complete && e.naturalWidth > 0)")
        assert len(loaded) >= 4 and all(loaded)
        # The curves: loss, learning rate and an eval metric, each drawn with a visible line.
        titles = page.eval_on_selector_all("svg.chart .title",
                                           "els => els.map(e => e.textContent)")
        assert {"loss", "lr"} <= set(titles) and any(t.startswith("eval_") for t in titles)
        boxes = page.eval_on_selector_all(
            "svg.chart polyline", "els => els.map(e => e.getBoundingClientRect().width)")
        assert boxes and all(w > 0 for w in boxes)
        assert page.is_visible("text=Evaluation: validation") and \
            page.is_visible("text=Example predictions")
        # The config opens on a click.
        assert not page.is_visible("#config pre")
        page.click("#config summary")
        assert page.is_visible("#config pre") and "model:" in page.inner_text("#config pre")


def test_a_comparison_renders_offline(tmp_path: Path) -> None:
    a = make_run(tmp_path / "lr-1e-3", lr=1e-3, seed=0)
    b = make_run(tmp_path / "lr-3e-4", lr=3e-4, seed=1)
    out = tmp_path / "compare.html"
    assert main(["report", str(a), str(b), f"output={out}"]) == 0
    with chromium() as browser:
        page, watch = _open(browser, out, "report-compare.png")
        assert watch.errors == [] and watch.outside() == [] and watch.failed == []
        series = page.eval_on_selector_all(
            "svg.chart polyline", "els => els.map(e => e.dataset.series)")
        assert {"lr-1e-3", "lr-3e-4"} <= set(series)
        assert "train.lr" in page.inner_text("#config-diff")
