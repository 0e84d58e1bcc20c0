"""`lmforge ui` in a real Chromium: runs and comparison, a training from the form, the
playground against `lmforge predict`, a streamed chat, the language switch, refusals.

One UI server (uvicorn on a free loopback port) over one root for the whole module; each
page is saved as a screenshot under test-artifacts/ (ui-*.png).
"""

from __future__ import annotations

import json
import random
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from lmforge.cli import main
from lmforge.commands.ui import ui_hooks
from lmforge.errors import ConfigError
from lmforge.ui import UiJob, build_app
from tests.browser import PageWatch, artifact, block_network, chromium
from tests.finetuning.conftest import save_word_encoder
from tests.reporting.conftest import make_run
from tests.serving.conftest import cls_run, live_server, sft_run  # noqa: F401 - fixtures

WORDS = ["good", "great", "bad", "awful", "the", "film", "was", "a", "story", "very"]


@pytest.fixture(scope="module")
def ui_root(tmp_path_factory: pytest.TempPathFactory, cls_run: Path,  # noqa: F811
            sft_run: Path) -> Path:  # noqa: F811
    """Two fixture runs, a fine-tuned classifier, a chat model, and training inputs."""
    root = tmp_path_factory.mktemp("ui") / "runs"
    make_run(root / "alpha", seed=0, lr=1e-3)
    make_run(root / "beta", seed=1, lr=2e-3)
    lineage = root / "beta" / "lineage.json"  # beta was fine-tuned from alpha
    lineage.write_text(lineage.read_text().replace("runs/pretrain-1", str(root / "alpha")))
    shutil.copytree(cls_run, root / "classifier")
    shutil.copytree(sft_run, root / "chat")
    inputs = root / "inputs"
    save_word_encoder(inputs / "encoder", WORDS)
    rng = random.Random(0)
    rows = ["text,label"]
    for _ in range(48):
        label = rng.choice(["neg", "pos"])
        rows.append(f"the film was {rng.choice(WORDS[:2] if label == 'pos' else WORDS[2:4])},"
                    f"{label}")
    (inputs / "train.csv").write_text("\n".join(rows) + "\n")
    return root


@pytest.fixture(scope="module")
def server(ui_root: Path) -> Iterator[str]:
    app = build_app(UiJob(root=str(ui_root), poll_ms=300), ui_hooks(), None)
    with live_server(app) as port:
        yield f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as launched:
        yield launched


def _page(browser: Any, url: str) -> tuple[Any, PageWatch]:
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    block_network(page, ("127.0.0.1",))
    watch = PageWatch(page)
    page.goto(url)
    page.wait_for_selector("body[data-ready='1']")
    return page, watch


def test_runs_table_lists_runs_and_compares_two(browser: Any, server: str) -> None:
    page, watch = _page(browser, server)
    runs = page.eval_on_selector_all("#runs tbody tr", "rows => rows.map(r => r.dataset.run)")
    assert {"alpha", "beta", "classifier", "chat"} <= set(runs)
    page.fill("#filter", "alpha")
    assert page.eval_on_selector_all("#runs tbody tr", "r => r.length") == 1
    page.fill("#filter", "")
    page.click("th[data-sort='run']")  # ascending by name
    ordered = page.eval_on_selector_all("#runs tbody tr", "rows => rows.map(r => r.dataset.run)")
    assert ordered == sorted(ordered)
    for run in ("alpha", "beta"):
        page.check(f"#runs tr[data-run='{run}'] input.pick")
    page.click("#compare")
    page.wait_for_selector("#compare-charts svg")
    legends = page.eval_on_selector_all(
        "#compare-charts svg", "svgs => svgs.map(s => s.querySelectorAll('polyline').length)")
    assert legends and max(legends) == 2  # both curves drawn in one chart
    assert "alpha" in page.inner_text("#compare-view") and "beta" in page.inner_text(
        "#compare-view")
    page.click("#runs tr[data-run='beta'] a.parent")  # the lineage link to its parent
    assert page.get_attribute("#runs tr.hl", "data-run") == "alpha"
    page.click("#runs tr[data-run='alpha'] a.open")
    frame = page.frame_locator("#report-frame")
    assert "alpha" in frame.locator("h1").first.inner_text()
    page.screenshot(path=artifact("ui-runs.png"), full_page=True)
    assert watch.errors == [] and watch.outside(("127.0.0.1",)) == []


def test_a_training_started_from_the_form_finishes_with_the_previewed_config(
        browser: Any, server: str, ui_root: Path) -> None:
    page, watch = _page(browser, server + "/#train")
    page.wait_for_selector("#train-form [data-key='train.lr']")
    values = {"data.path": str(ui_root / "inputs"),
              "model.pretrained": str(ui_root / "inputs" / "encoder"),
              "train.max_steps": "4", "train.batch_size": "16", "train.log_every": "1",
              "track.backends": "[jsonl]"}
    for key, value in values.items():
        page.fill(f"#train-form [data-key='{key}']", value)
    page.uncheck("#train-form [data-key='track.progress']")
    page.fill("#train-name", "from-the-form")
    page.click("#preview")
    page.wait_for_function("(t => t.includes('--output-dir=from-the-form') && "
                           "t.includes('track.progress=false'))"
                           "(document.querySelector('#preview-command').textContent)")
    command = page.inner_text("#preview-command")
    previewed = yaml.safe_load(page.inner_text("#preview-yaml"))
    assert command.startswith("lmforge finetune --output-dir=from-the-form ")
    page.click("#start")
    page.wait_for_selector("#live-status.st-finished", timeout=240_000)
    run = ui_root / "from-the-form"
    saved = yaml.safe_load((run / "config.yaml").read_text())
    # The task resolves metric_for_best=auto when the run starts (and with it the direction).
    assert previewed["train"]["metric_for_best"] == "auto"
    for config in (saved, previewed):
        del config["train"]["metric_for_best"], config["train"]["greater_is_better"]
    assert saved == previewed
    assert (run / "summary.json").is_file() and "train_loss" in page.inner_text(
        "#live-charts")
    page.screenshot(path=artifact("ui-train.png"))
    page.click("#tabs button[data-tab='runs']")
    page.click("#refresh")
    page.wait_for_selector("#runs tr[data-run='from-the-form'] .st-finished")
    assert watch.errors == []


def test_the_playground_predicts_what_lmforge_predict_does(
        browser: Any, server: str, ui_root: Path, tmp_path: Path) -> None:
    text = "the film was really lovely"
    (tmp_path / "in.txt").write_text(text + "\n")
    assert main(["predict", str(ui_root / "classifier"), f"input={tmp_path / 'in.txt'}",
                 f"output={tmp_path / 'out.jsonl'}", "top_k=2"]) == 0
    expected = json.loads((tmp_path / "out.jsonl").read_text())
    page, watch = _page(browser, server + "/#play")
    page.wait_for_selector("#play-model option[value='classifier']", state="attached")
    page.select_option("#play-model", "classifier")
    page.wait_for_selector("#play-model[data-loaded='classifier']")
    page.fill("#play-fields textarea", text)
    page.click("#predict")
    page.wait_for_selector(".pred-label")
    assert page.inner_text(".pred-label") == expected["label"]
    shown = page.eval_on_selector_all(".bars .prob", "e => e.map(x => Number(x.textContent))")
    assert shown == pytest.approx([p["score"] for p in expected["top_k"]], abs=1e-4)
    page.click("#explain")
    page.wait_for_selector(".attr span, #play-error:not([hidden])", timeout=60_000)
    assert page.is_hidden("#play-error"), page.inner_text("#play-error")
    assert page.eval_on_selector_all(".attr span", "e => e.length") == len(text.split())
    page.screenshot(path=artifact("ui-playground.png"), full_page=True)
    assert watch.errors == []


def test_a_chat_with_a_generative_run_streams_a_reply(browser: Any, server: str) -> None:
    page, watch = _page(browser, server + "/#play")
    page.wait_for_selector("#play-model option[value='chat']", state="attached")
    page.select_option("#play-model", "chat")
    page.wait_for_selector("#play-model[data-loaded='chat']")
    page.fill("#dec-max", "8")
    page.fill("#chat-input", "say red cat")
    page.click("#send")
    page.wait_for_selector(".msg.assistant[data-done='1']", timeout=60_000)
    reply = page.inner_text(".msg.assistant")
    assert reply.strip() and int(page.get_attribute(".msg.assistant", "data-pieces")) >= 1
    page.screenshot(path=artifact("ui-chat.png"), full_page=True)
    assert watch.errors == []


def test_labels_switch_to_chinese_and_refusals(browser: Any, server: str,
                                               ui_root: Path) -> None:
    page, _ = _page(browser, server)
    page.click("#lang")
    assert page.inner_text("#tabs button[data-tab='train']") == "训练"
    assert page.inner_text("th[data-sort='status']") == "状态"
    page.screenshot(path=artifact("ui-runs-zh.png"), full_page=True)
    page.click("#lang")  # back to English for the next tests (stored in localStorage)
    status = page.evaluate("async () => (await fetch('/api/report?run=../../etc')).status")
    assert status == 403
    with pytest.raises(ConfigError, match="token"):
        build_app(UiJob(root=str(ui_root), host="0.0.0.0"), ui_hooks(), None)
