"""`lmforge serve`'s /docs and /redoc load nothing from the internet, checked in Chromium."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from lmforge.predictor import Predictor
from lmforge.serving import create_app, load_predictor
from lmforge.serving.docs_pages import ASSETS_PATH, assets_folder
from tests.browser import PageWatch, artifact, block_network, chromium
from tests.serving.conftest import live_server, served

REDOC_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"


@pytest.fixture(scope="module")
def predictor(cls_run: Path) -> Predictor:
    return load_predictor(cls_run)


def test_docs_pages_point_only_at_the_server_itself(predictor: Predictor) -> None:
    assert assets_folder() is not None, "fastapi-offline (a dependency) is not installed"
    with served(create_app(predictor)) as client:
        for page in ("/docs", "/redoc"):
            html = client.get(page).text
            urls = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)""", html)
            urls += re.findall(r"""url:\s*['"]([^'"]+)""", html)
            assert urls and not [u for u in urls if "//" in u], (page, urls)
            assert "img-src 'self' data:" in client.get(page).headers[
                "content-security-policy"]
        for name in ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js"):
            asset = client.get(f"{ASSETS_PATH}/{name}")
            assert asset.status_code == 200 and len(asset.content) > 100_000
        assert client.get("/docs/oauth2-redirect").status_code == 200
        assert "/docs" not in client.get("/openapi.json").json()["paths"]


def test_docs_and_redoc_render_offline_in_chromium(predictor: Predictor) -> None:
    app = create_app(predictor)
    with chromium() as browser, live_server(app) as port:
        base = f"http://127.0.0.1:{port}"
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        block_network(page, allowed_hosts=("127.0.0.1",))
        watch = PageWatch(page)
        page.goto(f"{base}/docs")
        page.wait_for_selector(".swagger-ui .info .title", timeout=30_000)
        assert "lmforge serve" in page.inner_text(".swagger-ui .info .title")
        page.wait_for_selector(".opblock", timeout=30_000)
        paths = page.eval_on_selector_all(".opblock-summary-path",
                                          "els => els.map(e => e.textContent)")
        assert {"/classify", "/predict", "/health"} <= {p.strip().replace("\u200b", "")
                                                         for p in paths}
        page.screenshot(path=artifact("serve-docs.png"), full_page=False)
        assert watch.requests and watch.outside(("127.0.0.1",)) == [] and watch.errors == []
        page.goto(f"{base}/redoc")
        page.wait_for_selector("h1", timeout=30_000)
        page.wait_for_function("document.body.innerText.includes('/classify')",
                               timeout=30_000)
        assert "lmforge serve" in page.inner_text("h1")
        page.screenshot(path=artifact("serve-redoc.png"), full_page=False)
        # The one thing either page reaches for outside: ReDoc's attribution logo, which the
        # page's Content-Security-Policy refuses before any request leaves (it then hides).
        assert set(watch.outside(("127.0.0.1",))) <= {REDOC_LOGO}, watch.outside(("127.0.0.1",))
        assert set(watch.failed) <= {REDOC_LOGO}, watch.failed
        assert [e for e in watch.errors if REDOC_LOGO not in e] == [], watch.errors
