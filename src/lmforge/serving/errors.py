"""Every error of ``lmforge serve`` is one JSON shape, documented in the OpenAPI schema.

The body is :class:`ErrorResponse`: a one-line ``detail`` naming the problem (and how to fix
it), ``limit`` naming the setting a request exceeded, and for requests that fail
validation, ``errors`` listing each problem with its location. The codes:

=====  =====================================================================================
401    missing or wrong API key
408    the request body did not arrive within ``body_timeout_s`` (a slow client)
413    the request body is larger than ``max_body_bytes`` (refused before parsing)
422    malformed JSON, a missing / unknown / wrongly typed field, or an input over
       ``max_items``, ``max_input_chars``, ``max_input_tokens`` (``limit`` says which)
500    an unexpected server error (a bug: please report it)
503    not ready yet, shutting down, or overloaded (queue full, max_in_flight, or over
       latency_budget_ms); ``Retry-After``
504    waited ``request_timeout_s`` in the queue without being served (never computed)
=====  =====================================================================================
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from lmforge.errors import LmforgeError

log = logging.getLogger(__name__)


class Problem(BaseModel):
    """One validation problem: where (``loc``, e.g. ``["body", "texts", 0]``) and what."""

    loc: list[str | int]
    msg: str
    type: str


class ErrorResponse(BaseModel):
    """The body of every error response."""

    detail: str = Field(..., description="What went wrong, in one line.")
    limit: str | None = Field(None, description="The server setting the request exceeded.")
    errors: list[Problem] | None = Field(None, description="Each validation problem (422).")


class LimitExceeded(Exception):
    """An input is over a configured limit (answered with 422 naming the limit)."""

    def __init__(self, message: str, limit: str) -> None:
        super().__init__(message)
        self.limit = limit


class Unavailable(Exception):
    """Not ready, shutting down or overloaded: 503 with ``Retry-After``.

    ``close``: also close the connection (a draining server sends clients elsewhere).
    """

    def __init__(self, message: str, retry_after: int = 1, close: bool = False) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.close = close


_RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before retrying.",
                                "schema": {"type": "integer"}}}
RESPONSES: dict[int, dict[str, Any]] = {
    401: {"description": "Missing or wrong API key."},
    408: {"description": "The request body did not arrive within body_timeout_s."},
    413: {"description": "The request body is larger than max_body_bytes."},
    422: {"description": "Invalid request: malformed JSON, a missing, unknown or wrongly "
                         "typed field, or an input over max_items / max_input_chars / "
                         "max_input_tokens ('limit' names it; the token limit cannot be "
                         "stated in this schema)."},
    500: {"description": "Unexpected server error."},
    503: {"description": "Not ready yet, shutting down, or overloaded (the queue is full, "
                         "max_in_flight, or over latency_budget_ms): retry after "
                         "Retry-After seconds.", "headers": _RETRY_AFTER},
    504: {"description": "Waited request_timeout_s in the queue without being served."},
}


def responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for these error codes (all :class:`ErrorResponse`)."""
    return {code: {"model": ErrorResponse, **RESPONSES[code]} for code in codes}


def error_body(detail: str, **extra: Any) -> dict[str, Any]:
    """An :class:`ErrorResponse` body (keys that are None left out), ``detail`` on one line."""
    return {"detail": " ".join(str(detail).split()),
            **{k: v for k, v in extra.items() if v is not None}}


def _where(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc[1:]] if loc and loc[0] == "body" else [str(p) for p in loc]
    return ".".join(parts) or "body"


def validation_detail(errors: list[dict[str, Any]]) -> str:
    """One line for a list of pydantic errors: the first problem and how many more."""
    if not errors:
        return "invalid request"
    first = errors[0]
    if first.get("type") == "json_invalid":
        reason = (first.get("ctx") or {}).get("error", "")
        return f"the request body is not valid JSON ({reason}); send a JSON object"
    msg = str(first.get("msg", "invalid value"))
    where = _where(tuple(first.get("loc", ())))
    if first.get("type") == "missing":
        line = f"{where}: field required"
    elif where == "body" or not first.get("loc", ())[1:]:
        line = f"request body: {msg}"
    else:
        line = f"{where}: {msg}"
    more = len(errors) - 1
    return line + (f" (and {more} more problem{'s' if more > 1 else ''})" if more else "")


def install_error_handlers(app: FastAPI) -> None:
    """Answer every error with an :class:`ErrorResponse` body."""

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, err: RequestValidationError) -> JSONResponse:
        errors = list(err.errors())
        problems = [{"loc": [p if isinstance(p, int | str) else str(p)
                             for p in e.get("loc", ())],
                     "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))}
                    for e in errors]
        return JSONResponse(error_body(validation_detail(errors), errors=problems),
                            status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, err: StarletteHTTPException) -> JSONResponse:
        if err.status_code == 400:
            # FastAPI's answer to a body it could not decode (e.g. bytes that are not UTF-8):
            # the same 422 as any other malformed body.
            cause = type(err.__cause__).__name__ if err.__cause__ else "unreadable body"
            return JSONResponse(error_body(f"the request body is not valid JSON ({cause}); "
                                           "send a UTF-8 JSON object"), status_code=422)
        return JSONResponse(error_body(str(err.detail)), status_code=err.status_code,
                            headers=err.headers)

    @app.exception_handler(LimitExceeded)
    async def _limit(request: Request, err: LimitExceeded) -> JSONResponse:
        return JSONResponse(error_body(str(err), limit=err.limit), status_code=422)

    @app.exception_handler(LmforgeError)
    async def _user_error(request: Request, err: LmforgeError) -> JSONResponse:
        return JSONResponse(error_body(str(err)), status_code=422)

    @app.exception_handler(Unavailable)
    async def _unavailable(request: Request, err: Unavailable) -> JSONResponse:
        headers = {"Retry-After": str(err.retry_after)}
        if err.close:
            headers["Connection"] = "close"
        return JSONResponse(error_body(str(err)), status_code=503, headers=headers)

    @app.exception_handler(Exception)
    async def _bug(request: Request, err: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return JSONResponse(error_body(f"internal error ({type(err).__name__}); see the "
                                       "server log"), status_code=500)


PREDICTION_ERRORS = (408, 413, 422, 500, 503, 504)
"""Status codes every prediction route can answer (its OpenAPI ``responses``)."""

def post_route(app: FastAPI, path: str, body: type, handler: Callable[..., Any], doc: str,
               auth: list[Any], **options: Any) -> None:
    """Mount ``POST path`` whose body model is only known at run time (the served task's).

    FastAPI reads the body model from the handler's signature: ``(request, req: body)``.
    """
    handler.__signature__ = inspect.Signature([  # type: ignore[attr-defined]
        inspect.Parameter("request", inspect.Parameter.POSITIONAL_OR_KEYWORD,
                          annotation=Request),
        inspect.Parameter("req", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=body)])
    handler.__doc__ = doc
    errors = responses(*PREDICTION_ERRORS, *((401,) if auth else ()))
    app.post(path, tags=["predict"], dependencies=auth, name=path.strip("/"),
             responses={**errors, **options.pop("responses", {})}, **options)(handler)
