"""``/docs`` (Swagger UI) and ``/redoc`` served from installed files: they work offline.

FastAPI's own pages load Swagger UI's script and stylesheet (and ReDoc's script, a favicon,
Google Fonts) from CDNs, so on a machine without internet ``/docs`` is a blank page. The
``fastapi-offline`` package ships those files (Swagger UI 5, ReDoc 2, MIT licensed); they are
mounted at :data:`ASSETS_PATH` and the two pages point at them. Where the package is missing
(an environment installed before it became a dependency) the server keeps FastAPI's CDN
pages and logs one warning, rather than failing to start.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

log = logging.getLogger(__name__)

ASSETS_PACKAGE = "fastapi_offline"
ASSETS_PATH = "/docs-assets"
"""Where the Swagger UI / ReDoc files are served."""
ASSET_FILES = ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js", "favicon.png")

DOCS_CSP = ("default-src 'self'; script-src 'self' 'unsafe-inline' blob:; "
            "style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; "
            "worker-src 'self' blob:; connect-src 'self'")
"""The pages' Content-Security-Policy: the browser itself refuses anything from elsewhere.
Needed beyond the local files: ReDoc's sidebar shows a logo from its CDN; refused, it hides
itself (its ``onError``), where it would otherwise be a request to the internet."""


def assets_folder() -> Path | None:
    """The installed folder holding every file of :data:`ASSET_FILES`, or None."""
    spec = importlib.util.find_spec(ASSETS_PACKAGE)
    for location in (spec.submodule_search_locations or []) if spec else []:
        folder = Path(location) / "static"
        if all((folder / name).is_file() for name in ASSET_FILES):
            return folder
    return None


def docs_urls(folder: Path | None) -> dict[str, str | None]:
    """``FastAPI(**docs_urls(...))``: FastAPI's own pages off when the local ones replace them."""
    return {"docs_url": None, "redoc_url": None} if folder is not None else {}


def mount_docs(app: FastAPI, folder: Path | None) -> None:
    """Add ``/docs``, its OAuth2 redirect and ``/redoc``, loading only :data:`ASSETS_PATH`.

    Args:
        app: An app built with ``docs_urls(folder)``.
        folder: :func:`assets_folder`; None leaves FastAPI's (CDN) pages in place.
    """
    if folder is None:
        log.warning("%s is not installed: /docs and /redoc load their scripts from a CDN "
                    "(pip install fastapi-offline for offline pages)", ASSETS_PACKAGE)
        return
    app.mount(ASSETS_PATH, StaticFiles(directory=folder), name="docs-assets")
    openapi_url = app.openapi_url or "/openapi.json"
    redirect_url = app.swagger_ui_oauth2_redirect_url or "/docs/oauth2-redirect"

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return _local_only(get_swagger_ui_html(
            openapi_url=f"{root}{openapi_url}", title=f"{app.title} - Swagger UI",
            oauth2_redirect_url=f"{root}{redirect_url}",
            swagger_js_url=f"{root}{ASSETS_PATH}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS_PATH}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS_PATH}/favicon.png",
            swagger_ui_parameters=app.swagger_ui_parameters))

    @app.get(redirect_url, include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return _local_only(get_redoc_html(
            openapi_url=f"{root}{openapi_url}", title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root}{ASSETS_PATH}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{ASSETS_PATH}/favicon.png", with_google_fonts=False))


def _local_only(page: HTMLResponse) -> HTMLResponse:
    page.headers["Content-Security-Policy"] = DOCS_CSP
    return page
