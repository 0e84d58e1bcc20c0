"""The FastAPI application of ``lmforge serve``, built by :func:`create_app`.

Routes: ``/health`` (liveness), ``/ready`` (model loaded and warmed), ``/metrics``
(Prometheus), ``/predict`` (the rows of ``lmforge predict``) and the served task's own route,
which the task defines (:meth:`~lmforge.finetuning.task.Task.http_route`: ``/classify``,
``/entities``, ``/answer``), or ``/generate`` for a generative task. OpenAPI docs are at
``/docs``.

Every prediction except ``/generate`` goes through the :class:`MicroBatcher`, so requests
that arrive together share one forward pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from lmforge import __version__
from lmforge.errors import LmforgeError
from lmforge.finetuning.task import Route
from lmforge.predictor import Predictor
from lmforge.serving.batcher import BatcherClosed, MicroBatcher
from lmforge.serving.generation import GenerateParams, finish_reply, generate_text, stream_text
from lmforge.serving.metrics import MetricsMiddleware, ServerMetrics
from lmforge.serving.schemas import (
    ErrorResponse,
    GenerateRequest,
    GenerateResponse,
    PredictRequest,
    PredictResponse,
)
from lmforge.serving.security import (
    BodyLimitMiddleware,
    key_matches,
    load_api_keys,
    presented_key,
)
from lmforge.serving.settings import ServeJob

log = logging.getLogger(__name__)

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorResponse, "description": "Missing or wrong API key."},
    413: {"model": ErrorResponse, "description": "An input exceeds a configured limit."},
    503: {"model": ErrorResponse, "description": "Not ready yet, or shutting down."},
    504: {"model": ErrorResponse, "description": "Took longer than request_timeout_s."},
}
_END = object()


class LimitExceeded(Exception):
    """An input is over a configured limit (answered with 413)."""

    def __init__(self, message: str, limit: str) -> None:
        super().__init__(message)
        self.limit = limit


def _strings(value: Any) -> list[str]:
    """Every string inside a record (nested lists / dicts included)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def create_app(predictor: Predictor, settings: ServeJob | None = None,
               api_keys: list[str] | None = None) -> FastAPI:
    """Build the server app for a loaded model.

    Args:
        predictor: The model to serve (:func:`~lmforge.predictor.load_predictor`).
        settings: Limits, batching and auth (defaults of :class:`ServeJob`).
        api_keys: Accepted keys; None reads them from ``settings`` (list, file, env var).

    Returns:
        The FastAPI app; its lifespan starts the batcher, warms the model up in the
        background (``/ready`` is 503 until then) and drains the queue on shutdown.
    """
    cfg = settings or ServeJob()
    keys = api_keys if api_keys is not None else load_api_keys(
        cfg.api_keys, cfg.api_key_file, cfg.api_key_env)
    metrics = ServerMetrics()
    metrics.model_info.labels(predictor.task_name, predictor.backend, predictor.precision).set(1)
    batcher = MicroBatcher(predictor.predict_batch, cfg.max_batch_size, cfg.max_wait_ms,
                           on_batch=metrics.batch_size.observe,
                           on_queue=metrics.queue_depth.set)
    state: dict[str, Any] = {"ready": False, "error": None}

    async def warm() -> None:
        try:
            await asyncio.to_thread(predictor.warmup)
            state["ready"] = True
        except Exception as err:  # noqa: BLE001 - reported by /ready, the server stays up
            log.exception("warm-up failed")
            state["error"] = f"{type(err).__name__}: {err}"

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await batcher.start()
        warming = asyncio.create_task(warm())
        try:
            yield
        finally:
            # New work is refused (503), queued work is still answered, then the worker ends.
            state["ready"] = False
            await warming
            await batcher.stop()

    app = FastAPI(title="lmforge serve", version=__version__, lifespan=lifespan,
                  description=f"Serving a {predictor.task_name} model from "
                              f"{predictor.source} ({predictor.backend}, "
                              f"{predictor.precision}).")
    app.state.predictor, app.state.settings, app.state.metrics = predictor, cfg, metrics
    app.state.batcher, app.state.status = batcher, state
    task, settings = predictor.task, predictor.settings
    route = task.http_route(settings)
    task_path = route.path if route is not None else "/generate" if predictor.generative \
        else "/predict"

    async def require_key(request: Request) -> None:
        if keys and not key_matches(presented_key(request.headers), keys):
            missing = presented_key(request.headers) is None
            raise HTTPException(401, "missing API key: send X-API-Key or Authorization: "
                                     "Bearer" if missing else "wrong API key",
                                headers={"WWW-Authenticate": "Bearer"})

    auth = [Depends(require_key)]

    @app.exception_handler(LimitExceeded)
    async def _limit(request: Request, err: LimitExceeded) -> JSONResponse:
        return JSONResponse({"detail": str(err), "limit": err.limit}, status_code=413)

    @app.exception_handler(LmforgeError)
    async def _user_error(request: Request, err: LmforgeError) -> JSONResponse:
        return JSONResponse({"detail": str(err)}, status_code=422)

    def check_texts(texts: list[str], items: int = 1) -> None:
        if items > cfg.max_items:
            raise LimitExceeded(f"{items} inputs in one request; the limit is max_items="
                                f"{cfg.max_items}", "max_items")
        for text in texts:
            if len(text) > cfg.max_input_chars:
                raise LimitExceeded(f"an input has {len(text)} characters; the limit is "
                                    f"max_input_chars={cfg.max_input_chars}", "max_input_chars")
        if cfg.max_input_tokens is not None:
            for text in texts:
                n = predictor.count_tokens(text)
                if n > cfg.max_input_tokens:
                    raise LimitExceeded(f"an input has {n} tokens; the limit is "
                                        f"max_input_tokens={cfg.max_input_tokens}",
                                        "max_input_tokens")

    def check_ready() -> None:
        if not state["ready"]:
            raise HTTPException(503, "model is not ready yet; poll /ready")

    async def batched(records: list[dict[str, Any]], top_k: int = 1) -> list[dict[str, Any]]:
        check_ready()
        try:
            return await asyncio.wait_for(batcher.submit((records, top_k), len(records)),
                                          cfg.request_timeout_s)
        except asyncio.TimeoutError:
            raise HTTPException(504, f"no answer within request_timeout_s="
                                     f"{cfg.request_timeout_s}") from None
        except BatcherClosed:
            raise HTTPException(503, "the server is shutting down") from None

    @app.get("/health", tags=["ops"])
    async def health() -> dict[str, str]:
        """Liveness: 200 while the process serves HTTP."""
        return {"status": "ok"}

    @app.get("/ready", tags=["ops"], responses={503: _ERRORS[503]})
    async def ready() -> JSONResponse:
        """Readiness: 200 once the model is loaded and warmed up, 503 before and at shutdown."""
        if state["ready"]:
            return JSONResponse({"status": "ready", "task": predictor.task_name})
        status = "failed" if state["error"] else "loading"
        return JSONResponse({"status": status, "detail": state["error"]}, status_code=503)

    @app.get("/metrics", tags=["ops"], dependencies=auth, responses={401: _ERRORS[401]})
    async def prometheus() -> Response:
        """Prometheus text format: requests, latency, batch sizes, queue depth."""
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    @app.get("/info", tags=["ops"], dependencies=auth, responses={401: _ERRORS[401]})
    async def model_info() -> dict[str, Any]:
        """The served model and the server's limits (and its `lmforge attack` report)."""
        report = Path(predictor.source) / "robustness.json"  # seam: issue 11
        robustness = json.loads(report.read_text("utf-8")) if report.is_file() else None
        return {"task": predictor.task_name, "robustness": robustness, "backend": predictor.backend,
                "precision": predictor.precision, "source": predictor.source,
                "labels": predictor.labels, "route": task_path,
                "max_batch_size": cfg.max_batch_size,
                "max_wait_ms": cfg.max_wait_ms, "max_items": cfg.max_items,
                "max_input_chars": cfg.max_input_chars,
                "max_input_tokens": cfg.max_input_tokens}

    @app.post("/predict", response_model=PredictResponse, tags=["predict"],
              dependencies=auth, responses=_ERRORS)
    async def predict(req: PredictRequest) -> PredictResponse:
        """The rows ``lmforge predict`` writes for these records (bare strings are texts)."""
        records = [r if isinstance(r, dict) else task.record_from_text(settings, r)
                   for r in req.inputs]
        check_texts([s for r in records for s in _strings(r)], len(records))
        for record in records:
            problem = task.check_record(settings, record)
            if problem:
                raise HTTPException(422, problem)
        return PredictResponse(results=await batched(records, req.top_k))

    if route is not None:
        _task_route(app, route, settings, auth, check_texts, batched)
    elif predictor.generative:
        _generate_route(app, predictor, cfg, auth, state, check_texts)
    if task.serves_explanations:
        from lmforge.serving.explain_route import mount_explain_route  # POST /explain

        mount_explain_route(app, predictor, cfg, auth, state, check_texts, _ERRORS)

    route_paths: set[str] = set()

    def known_paths() -> set[str]:
        if not route_paths:  # routes are fixed once create_app returns
            route_paths.update(getattr(r, "path", "") for r in app.routes)
        return route_paths

    # Added last = outermost: the metrics also count the 413s of the body limit.
    app.add_middleware(BodyLimitMiddleware, max_bytes=cfg.max_body_bytes)
    app.add_middleware(MetricsMiddleware, metrics=metrics, paths=known_paths)
    return app


def _task_route(app: FastAPI, route: Route, settings: Any, auth: list[Any],
                check_texts: Callable[..., None],
                batched: Callable[..., Any]) -> None:
    """Mount the task's own route: its request schema in, its response schema out."""

    async def handler(req: Any) -> dict[str, Any]:
        call = route.call(req, settings)  # a request the model cannot take: DataError, 422
        todo = [i for i, record in enumerate(call.records) if record is not None]
        check_texts(call.texts, len(call.records))
        rows = await batched([call.records[i] for i in todo], call.top_k) if todo else []
        aligned: list[Any] = [None] * len(call.records)
        for i, row in zip(todo, rows, strict=True):
            aligned[i] = row
        return route.respond(req, aligned)

    # FastAPI reads the body model from the signature; the task's class is only known here.
    handler.__signature__ = inspect.Signature([inspect.Parameter(  # type: ignore[attr-defined]
        "req", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=route.request)])
    handler.__doc__ = route.description
    app.post(route.path, response_model=route.response,
             response_model_exclude_none=route.exclude_none, tags=["predict"],
             dependencies=auth, responses=_ERRORS, name=route.path.strip("/"))(handler)


def _generate_route(app: FastAPI, predictor: Predictor, cfg: ServeJob, auth: list[Any],
                    state: dict[str, Any], check_texts: Callable[..., None]) -> None:
    """Mount ``POST /generate`` (whole reply, or server-sent events with ``stream``)."""

    @app.post("/generate", response_model=GenerateResponse, tags=["predict"],
              dependencies=auth, responses={**_ERRORS, 200: {"content": {
                  "text/event-stream": {}}, "description": "The reply (JSON), or with "
                  "stream=true events 'data: {\"token\": ...}' then 'data: {\"done\": "
                  "true, \"text\": ...}'."}})
    async def generate(req: GenerateRequest) -> Any:
        """Generate a reply to a prompt or conversation (not micro-batched)."""
        if not state["ready"]:
            raise HTTPException(503, "model is not ready yet; poll /ready")
        messages = [m.model_dump() for m in req.messages] if req.messages else None
        check_texts([req.prompt] if req.prompt is not None else
                    [m["content"] for m in messages or []])
        if messages and not predictor.task.accepts_messages:
            raise HTTPException(422, f"a {predictor.task_name} model takes a prompt, not "
                                     "messages")
        wanted = req.max_new_tokens or predictor.settings.max_new_tokens
        if wanted > cfg.max_new_tokens:
            raise LimitExceeded(f"max_new_tokens={wanted} is over the server's limit "
                                f"max_new_tokens={cfg.max_new_tokens}", "max_new_tokens")
        params = GenerateParams(max_new_tokens=wanted, temperature=req.temperature,
                                top_p=req.top_p, do_sample=req.do_sample)
        cancel = threading.Event()
        if req.stream:
            return StreamingResponse(_events(predictor, req.prompt, messages, params, cancel,
                                             cfg.request_timeout_s),
                                     media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache"})
        try:
            text = await asyncio.wait_for(asyncio.to_thread(
                generate_text, predictor, req.prompt, messages, params, cancel),
                cfg.request_timeout_s)
        except asyncio.TimeoutError:
            cancel.set()  # the generation thread stops at its next step
            raise HTTPException(504, f"no answer within request_timeout_s="
                                     f"{cfg.request_timeout_s}") from None
        return {"text": text}


async def _events(predictor: Predictor, prompt: str | None,
                  messages: list[dict[str, str]] | None, params: GenerateParams,
                  cancel: threading.Event, timeout_s: float) -> AsyncIterator[str]:
    """Server-sent events: one per text piece, then a final one with the whole text."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    pieces = stream_text(predictor, prompt, messages, params, cancel)
    parts: list[str] = []
    try:
        while True:
            # next() blocks on the streamer's queue, so it runs in a thread.
            piece = await asyncio.to_thread(next, pieces, _END)
            if piece is _END:
                break
            parts.append(piece)
            yield f"data: {json.dumps({'token': piece}, ensure_ascii=False)}\n\n"
            if loop.time() > deadline:
                detail = f"stopped after request_timeout_s={timeout_s}"
                yield f"event: error\ndata: {json.dumps({'detail': detail})}\n\n"
                return
        text = finish_reply(predictor, "".join(parts))
        yield f"data: {json.dumps({'done': True, 'text': text}, ensure_ascii=False)}\n\n"
    finally:
        cancel.set()
        # close() joins the generation thread; ValueError: next() still runs in a cancelled
        # to_thread, and that generation ends on `cancel` by itself.
        with contextlib.suppress(ValueError):
            await asyncio.to_thread(pieces.close)
