"""The FastAPI app of ``lmforge ui``: a JSON API under ``/api`` and a static page.

The page (``static/``: one HTML file, one script, one style sheet, shipped with the package,
no CDN) calls the API. Every run the API names is a path relative to the root, resolved by
:func:`lmforge.ui.paths.resolve_under` (403 outside it). Requests need the token when one
is set (required off loopback); without one, only loopback ``Host`` headers are answered (a
web page elsewhere cannot reach the UI through DNS rebinding), and every POST needs the
``X-Lmforge-UI`` header (a cross-site form cannot set it).
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field

from lmforge.errors import ConfigError, LmforgeError
from lmforge.serving.generation import GenerateParams
from lmforge.ui import forms, jobs, playground, runlist
from lmforge.ui.paths import OutsideRoot, check_option_paths, resolve_under
from lmforge.ui.settings import UiJob

STATIC = Path(__file__).with_name("static")
COOKIE = "lmforge_ui_token"
REPORT_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


@dataclass(frozen=True)
class UiHooks:
    """What the UI asks of the command layer above it (it never imports ``commands/``).

    Attributes:
        headline: A summary -> its headline metrics (the registry's ``headline_metrics``).
        report: Run folders -> the HTML page of ``lmforge report``.
        commands: The commands the Train tab can start -> their root config classes.
    """

    headline: runlist.Headline
    report: Callable[[list[Path]], str]
    commands: Mapping[str, type]


class FormBody(BaseModel):
    command: str
    values: dict[str, Any] = Field(default_factory=dict)
    name: str = ""


class RunBody(BaseModel):
    run: str


class PredictBody(BaseModel):
    run: str
    record: dict[str, str]
    method: str = "ig"


class ChatBody(BaseModel):
    run: str
    prompt: str | None = None
    messages: list[dict[str, str]] | None = None
    max_new_tokens: int = Field(64, ge=1, le=1024)
    temperature: float = Field(1.0, gt=0)
    top_p: float = Field(1.0, gt=0, le=1)
    do_sample: bool = False


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or address) is this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _host_name(header: str) -> str:
    if header.startswith("["):
        return header[1:].split("]")[0]
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


def _authorized(request: Request, token: str | None) -> bool:
    if token is None:
        return is_loopback(_host_name(request.headers.get("host", "")))
    auth = request.headers.get("authorization", "")
    given = auth[7:] if auth.lower().startswith("bearer ") else \
        request.cookies.get(COOKIE) or request.query_params.get("token") or ""
    return hmac.compare_digest(given.encode(), token.encode())


def build_app(job: UiJob, hooks: UiHooks, token: str | None = None) -> FastAPI:
    """The UI's app over ``job.root`` (created when missing).

    Raises:
        ConfigError: ``job.host`` is not loopback and no token is set.
    """
    if not is_loopback(job.host) and not token:
        raise ConfigError(f"host={job.host} is not loopback: set token= (or ${job.token_env}) "
                          "so that only you can use the UI")
    root = Path(job.root).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    root = root.resolve()
    models = playground.Models(job.max_models)
    app = FastAPI(title="lmforge ui", docs_url=None, redoc_url=None, openapi_url=None)

    @app.middleware("http")
    async def guard(request: Request, call_next: Callable[..., Any]) -> Response:
        if not _authorized(request, token):
            return JSONResponse({"detail": "a token is required (?token=... once, or "
                                           "Authorization: Bearer ...)"}, status_code=401)
        if request.method == "POST" and request.headers.get("x-lmforge-ui") != "1":
            return JSONResponse({"detail": "missing X-Lmforge-UI header"}, status_code=403)
        response = await call_next(request)
        if token and request.query_params.get("token") == token:
            response.set_cookie(COOKIE, token, httponly=True, samesite="strict")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "SAMEORIGIN")
        return response

    @app.exception_handler(LmforgeError)
    async def lmforge_error(request: Request, err: LmforgeError) -> JSONResponse:
        return JSONResponse({"detail": str(err)},
                            status_code=403 if isinstance(err, OutsideRoot) else 400)

    def folder(name: str) -> Path:
        path = resolve_under(root, name)
        if not path.is_dir():
            raise ConfigError(f"no run folder {name!r} under the root")
        return path

    @app.get("/", response_class=HTMLResponse)
    def index() -> HTMLResponse:
        return HTMLResponse((STATIC / "index.html").read_text(encoding="utf-8"))

    @app.get("/api/info")
    def info() -> dict[str, Any]:
        return {"root": str(root), "commands": list(hooks.commands), "poll_ms": job.poll_ms}

    @app.get("/api/runs")
    def runs() -> list[dict[str, Any]]:
        return runlist.list_runs(root, job.depth, hooks.headline)

    charts_cache: dict[Path, tuple[tuple[int, int], list[str]]] = {}

    def run_charts(name: str, path: Path) -> tuple[str, list[str]]:
        """(version, a run's curves), redrawn only when its metrics file changed (a watched
        run is asked every poll_ms)."""
        try:
            stat = (path / "metrics.jsonl").stat()
        except OSError:
            return "", []
        key = (stat.st_mtime_ns, stat.st_size)
        if path not in charts_cache or charts_cache[path][0] != key:
            charts_cache[path] = (key, runlist.compare_charts({name: path}, 300))
        return f"{key[0]}-{key[1]}", charts_cache[path][1]

    @app.get("/api/run")
    def run_detail(run: str, known: str = "") -> dict[str, Any]:
        """A run's row, log tail and curves; ``known``: the curves' version the page already
        shows (then they are not sent again)."""
        path = folder(run)
        row = runlist.run_row(root, path, hooks.headline)
        version, charts = run_charts(row["run"], path)
        return {**row, "log": jobs.read_log(path), "charts_version": version,
                "charts": None if version and version == known else charts}

    @app.get("/api/compare")
    def compare(run: list[str] = Query(...)) -> dict[str, Any]:  # noqa: B008
        paths = {name: folder(name) for name in run}
        return {"charts": runlist.compare_charts(paths),
                "rows": [runlist.run_row(root, p, hooks.headline) for p in paths.values()]}

    @app.get("/api/report", response_class=HTMLResponse)
    def report(run: list[str] = Query(...)) -> HTMLResponse:  # noqa: B008
        page = hooks.report([folder(name) for name in run])
        return HTMLResponse(page, headers={"Content-Security-Policy": REPORT_CSP})

    @app.get("/api/form/{command}")
    def form(command: str) -> dict[str, Any]:
        return {"command": command, "name": forms.default_name(command),
                "sections": forms.form_spec(config_of(command))}

    def config_of(command: str) -> type:
        if command not in hooks.commands:
            raise ConfigError(f"the UI starts {sorted(hooks.commands)}, not {command!r}")
        return hooks.commands[command]

    allowed = [root, *(Path(d).expanduser().resolve() for d in job.data_roots)]

    def checked_preview(body: FormBody) -> dict[str, Any]:
        """The form's validated config, refused when an option names a file the UI may not
        use (a started run works in the root: see :func:`check_option_paths`)."""
        name = body.name or forms.default_name(body.command)
        planned = forms.preview(body.command, config_of(body.command), body.values, name)
        check_option_paths(planned["overrides"], root, allowed)
        return planned

    @app.post("/api/preview")
    def preview(body: FormBody) -> dict[str, Any]:
        return checked_preview(body)

    @app.post("/api/start")
    def start(body: FormBody) -> dict[str, Any]:
        name = body.name or forms.default_name(body.command)
        planned = checked_preview(body)
        target = forms.run_folder(root, name)
        state = jobs.start_job(target, planned["argv"])
        return {"run": name, "pid": state["pid"], "command": planned["command"]}

    @app.post("/api/stop")
    def stop(body: RunBody) -> dict[str, Any]:
        return {"run": body.run, "stopped": jobs.stop_job(folder(body.run))}

    @app.get("/api/models")
    def model_list() -> list[dict[str, Any]]:
        return [{"run": r["run"], "task": r["task"], "command": r["command"]}
                for r in runlist.list_runs(root, job.depth, hooks.headline) if r["has_model"]]

    @app.get("/api/model")
    def model_info(run: str) -> dict[str, Any]:
        return playground.describe(models.get(folder(run)))

    @app.post("/api/predict")
    def predict(body: PredictBody) -> dict[str, Any]:
        return playground.predict(models.get(folder(body.run)), dict(body.record))

    @app.post("/api/explain")
    def explain(body: PredictBody) -> dict[str, Any]:
        return playground.explain(models.get(folder(body.run)), dict(body.record), body.method)

    @app.post("/api/chat")
    def chat(body: ChatBody) -> StreamingResponse:
        predictor = models.get(folder(body.run))
        if not predictor.generative:
            raise ConfigError(f"{body.run} is a {predictor.task_name} model; chat needs a "
                              "generative run")
        params = GenerateParams(max_new_tokens=body.max_new_tokens,
                                temperature=body.temperature, top_p=body.top_p,
                                do_sample=body.do_sample)
        return StreamingResponse(playground.chat(predictor, body.prompt, body.messages, params),
                                 media_type="text/plain; charset=utf-8",
                                 headers={"Cache-Control": "no-store"})

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app
