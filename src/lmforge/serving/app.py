"""The FastAPI application of ``lmforge serve``, built by :func:`create_app`.

Routes: ``/health`` (liveness), ``/ready`` (model loaded and warmed), ``/metrics``
(Prometheus), ``/info``, ``/predict`` (the rows of ``lmforge predict``) and the served task's
own route, which the task defines (:meth:`~lmforge.finetuning.task.Task.http_route`:
``/classify``, ``/entities``, ``/answer``), or ``/generate`` for a generative task, which
also gets OpenAI's ``/v1`` routes (:mod:`.openai_api`). OpenAPI docs are at ``/docs``;
``/openapi.json`` states the served task's input fields and the server's limits, and every
error is one documented JSON shape (:mod:`.errors`).

Every prediction except ``/generate`` goes through the :class:`MicroBatcher`, so requests
that arrive together share one forward pass; the :class:`~.admission.Gate` in front of it
refuses work early (503) when the queue is full, not ready or draining, or the answer is
not expected within the latency budget, and the :class:`~.shedding.LoadShedder` in front of
the whole app refuses overload before a body is read, at the cost of a counter.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi.security import APIKeyHeader, HTTPBearer

from lmforge.finetuning.task import TaskSettings
from lmforge.predictor import Predictor
from lmforge.serving.admission import ClientGone, Gate, ServeState
from lmforge.serving.batcher import MicroBatcher
from lmforge.serving.continuous import start_batching
from lmforge.serving.docs_pages import assets_folder, docs_urls, mount_docs
from lmforge.serving.errors import (
    error_body,
    install_error_handlers,
    post_route,
    responses,
)
from lmforge.serving.explain_route import mount_explain_route
from lmforge.serving.generating import event_stream, reply_room, sse, whole_reply
from lmforge.serving.generation import GenerateParams, finish_reply, generate_text, stream_text
from lmforge.serving.limits import check_limits, document_limits, strings_in
from lmforge.serving.metrics import MetricsMiddleware, ServerMetrics
from lmforge.serving.openai_api import mount_openai_routes
from lmforge.serving.schemas import (
    GenerateResponse,
    Health,
    PredictResponse,
    Readiness,
    generate_request_model,
    predict_request_model,
)
from lmforge.serving.security import (
    BodyLimitMiddleware,
    key_matches,
    load_api_keys,
    presented_key,
)
from lmforge.serving.settings import ServeJob
from lmforge.serving.shedding import LoadShedder
from lmforge.version import __version__
from lmforge.wire import Route

log = logging.getLogger(__name__)


def create_app(predictor: Predictor, settings: ServeJob | None = None,
               api_keys: list[str] | None = None) -> FastAPI:
    """Build the server app for a loaded model.

    Args:
        predictor: The model to serve (:func:`~lmforge.predictor.load_predictor`).
        settings: Limits, batching, queue and auth (defaults of :class:`ServeJob`).
        api_keys: Accepted keys; None reads them from ``settings`` (list, file, env var).

    Returns:
        The FastAPI app; its lifespan starts the batcher, warms the model up in the
        background (``/ready`` is 503 until then) and drains the queue on shutdown;
        ``app.state.drain(timeout_s)`` refuses new work and waits for admitted requests
        (the server calls it on SIGTERM).
    """
    cfg = settings or ServeJob()
    keys = api_keys if api_keys is not None else load_api_keys(
        cfg.api_keys, cfg.api_key_file, cfg.api_key_env)
    metrics = ServerMetrics()
    metrics.model_info.labels(predictor.task_name, predictor.backend, predictor.precision).set(1)
    batcher = MicroBatcher(predictor.predict_batch, cfg.max_batch_size, cfg.max_wait_ms,
                           max_queue=cfg.max_queue, timeout_s=cfg.request_timeout_s,
                           on_batch=metrics.batch_size.observe,
                           on_done=lambda n, seconds: metrics.batch_seconds.observe(seconds),
                           on_drop=lambda reason: metrics.dropped.labels(reason).inc())
    metrics.queue_depth.set_function(lambda: batcher.depth)  # read when scraped
    state = ServeState()
    budget_s = cfg.latency_budget_ms / 1000 if cfg.latency_budget_ms is not None else None
    gate = Gate(batcher, state, metrics, predictor.count_tokens, cfg.max_input_tokens,
                budget_s)

    async def warm() -> None:
        try:
            await asyncio.to_thread(predictor.warmup)
            state.ready = True
        except Exception as err:  # noqa: BLE001 - reported by /ready, the server stays up
            log.exception("warm-up failed")
            state.error = f"{type(err).__name__}: {err}"

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await batcher.start()
        generations = None
        if predictor.generative:
            # Each generation waits for its pieces in a thread; the default pool (cores + 4
            # threads) would let only that many run at once.
            asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(
                cfg.max_queue + 32, thread_name_prefix="lmforge-generate"))
            generations = await asyncio.to_thread(
                start_batching, predictor, cfg.max_batch_generations, cfg.max_new_tokens)
            gate.generation_slots = cfg.max_batch_generations if generations else 1
        warming = asyncio.create_task(warm())
        watching = asyncio.create_task(metrics.watch_loop())
        try:
            yield
        finally:
            # New work is refused (503), queued work is still answered, then the worker ends.
            state.ready, state.draining = False, True
            watching.cancel()
            await warming
            await batcher.stop()
            if generations is not None:
                await asyncio.to_thread(generations.stop)

    docs_assets = assets_folder()
    app = FastAPI(title="lmforge serve", version=__version__, lifespan=lifespan,
                  **docs_urls(docs_assets),  # /docs and /redoc from local files (offline)
                  description=f"Serving a {predictor.task_name} model from "
                              f"{predictor.source} ({predictor.backend}, "
                              f"{predictor.precision}).")
    app.state.predictor, app.state.settings, app.state.metrics = predictor, cfg, metrics
    app.state.batcher, app.state.status, app.state.gate = batcher, state, gate
    app.state.drain = gate.drain
    install_error_handlers(app)
    mount_docs(app, docs_assets)

    @app.exception_handler(ClientGone)
    async def _gone(request: Request, err: ClientGone) -> Response:
        # Nobody reads it; the status only labels the request in /metrics (nginx's 499).
        return JSONResponse(error_body("the client disconnected"), status_code=499)

    auth = _auth(keys)
    route = predictor.task.http_route(predictor.settings)
    task_path = route.path if route is not None else "/generate" if predictor.generative \
        else "/predict"
    _ops_routes(app, predictor, cfg, state, metrics, auth, task_path)
    _predict_route(app, predictor, cfg, auth, gate)
    if route is not None:
        _task_route(app, route, predictor.settings, cfg, auth, gate)
    elif predictor.generative:
        _generate_route(app, predictor, cfg, auth, gate)
    openai_paths = mount_openai_routes(app, predictor, cfg, auth, gate) \
        if predictor.generative else set()
    if predictor.task.serves_explanations:

        mount_explain_route(app, predictor, cfg, auth, gate)

    predict_paths = {"/predict", task_path, *openai_paths}
    if predictor.task.serves_explanations:
        predict_paths.add("/explain")
    route_paths: set[str] = set()

    def known_paths() -> set[str]:
        if not route_paths:  # routes are fixed once create_app returns
            route_paths.update(getattr(r, "path", "") for r in app.routes)
        return route_paths

    # Added last = outermost: the metrics also count the 408s / 413s of the body guard.
    app.add_middleware(BodyLimitMiddleware, max_bytes=cfg.max_body_bytes,
                       timeout_s=cfg.body_timeout_s)
    app.add_middleware(MetricsMiddleware, metrics=metrics, paths=known_paths)
    # Outermost: a refusal for overload skips every other layer (see .shedding).
    app.add_middleware(LoadShedder, paths=predict_paths, max_in_flight=cfg.max_in_flight,
                       overloaded=gate.overloaded, refusals_per_s=cfg.refusals_per_s,
                       on_refuse=metrics.rejected.labels("overloaded").inc)
    _document_limits(app, cfg, {"/predict", task_path, "/explain", *openai_paths})
    return app


def _auth(keys: list[str]) -> list[Any]:
    """The route dependency checking API keys (none when auth is off)."""
    if not keys:
        return []
    # Declared as security schemes so /openapi.json tells a client how to authenticate.
    header = APIKeyHeader(name="X-API-Key", auto_error=False, scheme_name="APIKey")
    bearer = HTTPBearer(auto_error=False, scheme_name="Bearer")

    async def require_key(request: Request, _key: Any = Depends(header),
                          _bearer: Any = Depends(bearer)) -> None:
        given = presented_key(request.headers)
        if not key_matches(given, keys):
            raise HTTPException(401, "missing API key: send X-API-Key or Authorization: "
                                     "Bearer" if given is None else "wrong API key",
                                headers={"WWW-Authenticate": "Bearer"})

    return [Depends(require_key)]


def _document_limits(app: FastAPI, cfg: ServeJob, paths: set[str]) -> None:
    """Serve an OpenAPI schema that states max_items / max_input_chars on those routes."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document_limits(FastAPI.openapi(app), paths, cfg.max_items, cfg.max_input_chars)
        return app.openapi_schema  # type: ignore[return-value]

    app.openapi = openapi  # type: ignore[method-assign]


def _ops_routes(app: FastAPI, predictor: Predictor, cfg: ServeJob, state: ServeState,
                metrics: ServerMetrics, auth: list[Any], task_path: str) -> None:
    """``/health``, ``/ready``, ``/metrics``, ``/info``."""
    secured = responses(401) if auth else {}

    @app.get("/health", tags=["ops"], response_model=Health)
    async def health() -> dict[str, str]:
        """Liveness: 200 while the process serves HTTP."""
        return {"status": "ok"}

    @app.get("/ready", tags=["ops"], response_model=Readiness,
             responses={503: {"model": Readiness, "description": "Loading, failed or "
                                                                 "shutting down."}})
    async def ready() -> JSONResponse:
        """Readiness: 200 once the model is loaded and warmed up, 503 before and at shutdown."""
        body = {"status": state.status, "task": predictor.task_name}
        if state.status == "ready":
            return JSONResponse(body)
        detail = state.error or ("shutting down" if state.draining else "warming up")
        return JSONResponse({**body, "detail": detail}, status_code=503)

    @app.get("/metrics", tags=["ops"], dependencies=auth, response_class=PlainTextResponse,
             responses=secured)
    async def prometheus() -> Response:
        """Prometheus text format: requests, latency, batches, queue, refusals, loop lag."""
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    @app.get("/info", tags=["ops"], dependencies=auth, responses=secured)
    async def model_info() -> dict[str, Any]:
        """The served model, the server's limits, and the model's ``lmforge attack`` report."""
        report = Path(predictor.source) / "robustness.json"
        robustness = json.loads(report.read_text("utf-8")) if report.is_file() else None
        return {"task": predictor.task_name, "robustness": robustness,
                "backend": predictor.backend,
                "precision": predictor.precision, "source": predictor.source,
                "labels": predictor.labels, "route": task_path,
                "max_batch_size": cfg.max_batch_size, "max_wait_ms": cfg.max_wait_ms,
                "max_batch_generations": cfg.max_batch_generations,
                "max_queue": cfg.max_queue, "max_items": cfg.max_items,
                "max_input_chars": cfg.max_input_chars,
                "max_input_tokens": cfg.max_input_tokens,
                "request_timeout_s": cfg.request_timeout_s,
                "latency_budget_ms": cfg.latency_budget_ms,
                "max_in_flight": cfg.max_in_flight, "refusals_per_s": cfg.refusals_per_s,
                "pid": os.getpid()}  # which worker answered (workers > 1)


def _predict_route(app: FastAPI, predictor: Predictor, cfg: ServeJob, auth: list[Any],
                   gate: Gate) -> None:
    """``POST /predict``: records of the served task (its input fields in the schema)."""
    task, settings = predictor.task, predictor.settings
    request_model = predict_request_model(
        task.input_record_model(settings),
        (lambda text: task.record_from_text(settings, text)) if task.accepts_texts else None)

    async def predict(request: Request, req: Any) -> dict[str, Any]:
        body = req.model_dump(by_alias=True, exclude_none=True)
        check_limits(body, cfg.max_items, cfg.max_input_chars)
        records = body["inputs"]
        for record in records:
            problem = task.check_record(settings, record)
            if problem:  # the record model should have said so: a task defect
                raise HTTPException(422, problem)
        gate.check_tokens(strings_in(records))
        return {"results": await gate.run(request.receive, records, body["top_k"])}

    post_route(app, "/predict", request_model, predict,
               "The rows ``lmforge predict`` writes for these records (bare strings are texts).",
               auth, response_model=PredictResponse)


def _task_route(app: FastAPI, route: Route, settings: TaskSettings, cfg: ServeJob, auth: list[Any],
                gate: Gate) -> None:
    """Mount the task's own route: its request schema in, its response schema out."""

    async def handler(request: Request, req: Any) -> dict[str, Any]:
        check_limits(req.model_dump(by_alias=True, exclude_none=True), cfg.max_items,
                     cfg.max_input_chars)
        call = route.call(req, settings)  # a request the model cannot take: DataError, 422
        gate.check_tokens(call.texts)
        todo = [i for i, record in enumerate(call.records) if record is not None]
        rows = await gate.run(request.receive, [call.records[i] for i in todo],
                              call.top_k) if todo else []
        aligned: list[Any] = [None] * len(call.records)
        for i, row in zip(todo, rows, strict=True):
            aligned[i] = row
        return route.respond(req, aligned)

    post_route(app, route.path, route.request, handler, route.description, auth,
               response_model=route.response, response_model_exclude_none=route.exclude_none)


def _generate_route(app: FastAPI, predictor: Predictor, cfg: ServeJob, auth: list[Any],
                    gate: Gate) -> None:
    """Mount ``POST /generate`` (whole reply, or server-sent events with ``stream``).

    Generations share the admission of the batched routes: each one, streamed or not, is
    charged its expected cost in the gate's expected wait until it ends.
    """

    async def generate(request: Request, req: Any) -> Any:
        check_limits(req.model_dump(exclude_none=True), cfg.max_items, cfg.max_input_chars)
        messages = [m.model_dump() for m in req.messages] if req.messages else None
        gate.check_tokens([req.prompt] if req.prompt is not None else
                          [m["content"] for m in messages or []])
        if messages and not predictor.task.accepts_messages:
            raise HTTPException(422, f"a {predictor.task_name} model takes a prompt, not "
                                     "messages")
        wanted = req.max_new_tokens or predictor.settings.max_new_tokens
        _, room = reply_room(predictor, req.prompt, messages)  # 422 for an over-long prompt
        params = GenerateParams.for_run(predictor.settings,
                                        min(wanted, cfg.max_new_tokens, room),
                                        temperature=req.temperature, top_p=req.top_p,
                                        do_sample=req.do_sample, top_k=req.top_k,
                                        repetition_penalty=req.repetition_penalty)
        if req.stream:
            return event_stream(gate, params.max_new_tokens, cfg.request_timeout_s,
                                lambda cancel: stream_text(predictor, req.prompt, messages,
                                                           params, cancel),
                                _GenerateEvents(predictor))
        text = await whole_reply(request, gate, params.max_new_tokens, cfg.request_timeout_s,
                                 lambda cancel: generate_text(predictor, req.prompt, messages,
                                                              params, cancel))
        return {"text": text}

    post_route(app, "/generate", generate_request_model(cfg.max_new_tokens), generate,
               "Generate a reply to a prompt or conversation (not micro-batched).", auth,
               response_model=GenerateResponse, responses={200: {"content": {
                   "text/event-stream": {}}, "description": "The reply (JSON), or with "
                   "stream=true events 'data: {\"token\": ...}' then 'data: {\"done\": true, "
                   "\"text\": ...}'."}})


class _GenerateEvents:
    """``/generate``'s events: ``{"token"}`` per piece, then ``{"done", "text"}``."""

    def __init__(self, predictor: Predictor) -> None:
        self.predictor = predictor
        self.parts: list[str] = []

    def piece(self, text: str) -> str:
        self.parts.append(text)
        return sse({"token": text})

    def end(self) -> list[str]:
        return [sse({"done": True, "text": finish_reply(self.predictor, "".join(self.parts))})]

    def timeout(self, detail: str) -> str:
        return sse({"detail": detail}, event="error")
