"""OpenAI-compatible routes of ``lmforge serve`` for generative models.

``POST /v1/chat/completions`` (chat models), ``POST /v1/completions`` and ``GET /v1/models``
answer as OpenAI's API does, so the clients written for it (the ``openai`` package, and
whatever speaks to vLLM or llama.cpp's server) work unchanged: whole replies as
``chat.completion`` / ``text_completion`` objects with ``usage``, or with ``stream: true``
the chunks of OpenAI's server-sent events ending in ``data: [DONE]``.

A generation runs exactly as one of ``/generate`` (:mod:`.generating`: same admission,
limits, timeout and cancellation) through ``stream_text``, with the request's ``stop``
strings cut out here: the text ends before the first one, a piece that may begin one is
held back until it is known, and the generation is cancelled once one appears. Whole and
streamed replies are therefore the same text. Where the server departs from OpenAI:

- no ``temperature`` (or 0) decodes greedily, as ``/generate`` and ``lmforge predict`` do
  (OpenAI samples at 1); ``temperature > 0`` samples, with ``top_p``;
- ``max_tokens`` is cut to the server's ``max_new_tokens`` (its default: the run's own);
- ``model`` may be left out; when given it must be the served name (``GET /v1/models``,
  ``served_model_name``), else 404, as vLLM answers;
- ``n`` must be 1; ``logprobs``, penalties, ``logit_bias``, tools, ``echo``, ``suffix`` and
  a non-text ``response_format`` are refused (422) rather than ignored; ``seed`` is
  accepted and not honoured (greedy decoding is the reproducible one); other unknown
  fields are ignored, as vLLM ignores them;
- a chat reply is stripped of surrounding whitespace, as ``/generate``'s is; a completion
  is the text as generated;
- ``completion_tokens`` is the generated text re-tokenized, and ``finish_reason`` is
  ``length`` when that count reaches the (cut) ``max_tokens``: the generation functions
  return text, not token ids;
- errors are the server's one JSON shape (:mod:`.errors`); an error inside a stream is
  OpenAI's ``data: {"error": {...}}``, which the ``openai`` client raises.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
import uuid
from collections.abc import Generator, Iterable, Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import FastAPI, HTTPException, Request
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from lmforge.predictor import Predictor
from lmforge.serving.admission import Gate
from lmforge.serving.errors import ErrorResponse, post_route, responses
from lmforge.serving.generating import event_stream, reply_room, sse, whole_reply
from lmforge.serving.generation import GenerateParams, stream_text
from lmforge.serving.limits import check_limits
from lmforge.serving.settings import ServeJob
from lmforge.wire import JsonInt, integral

log = logging.getLogger(__name__)

CHAT_PATH, COMPLETIONS_PATH = "/v1/chat/completions", "/v1/completions"
_MIN_TEMPERATURE = 1e-5

Text = Annotated[str, Field(min_length=1)]
# Field(ge=1) inside, so that the schema of an optional one says "minimum" (pydantic does not
# carry it through the validator of JsonInt).
Count = Annotated[int, Field(ge=1), BeforeValidator(integral)]

_INERT: dict[str, tuple[Any, ...]] = {
    "logprobs": (None, False), "top_logprobs": (None, 0), "logit_bias": (None, {}),
    "presence_penalty": (None, 0), "frequency_penalty": (None, 0), "best_of": (None, 1),
    "echo": (None, False), "suffix": (None, ""), "tools": (None, []),
    "functions": (None, []), "tool_choice": (None, "none", "auto"),
    "function_call": (None, "none", "auto"), "response_format": (None, {"type": "text"}),
}
"""OpenAI options this server cannot honour, with the values that ask for nothing."""


class StreamOptions(BaseModel):
    """``stream_options``: ``include_usage`` adds a last chunk with the token counts."""

    model_config = ConfigDict(extra="ignore", strict=True)
    include_usage: bool = False


class _OpenAIRequest(BaseModel):
    """The options both completion routes take (OpenAI's names and ranges)."""

    # Unknown fields are ignored, as vLLM does: OpenAI clients send options a server may
    # have no use for. Options it cannot honour are refused (_INERT).
    model_config = ConfigDict(extra="allow", strict=True)
    model: str | None = Field(None, description="The served model's name (GET /v1/models); "
                                                "another -> 404. May be left out.")
    max_tokens: Count | None = Field(None, description=(
        "Most tokens to generate; cut to the server's max_new_tokens. Default: the run's "
        "max_new_tokens."))
    temperature: float | None = Field(None, ge=0, le=2, description=(
        "Absent or 0 (below 1e-5): greedy decoding, as /generate; above: sampling."))
    top_p: float | None = Field(None, gt=0, le=1, description="Nucleus mass when sampling.")
    n: JsonInt | None = Field(1, description="Choices per request: only 1.",
                              json_schema_extra={"minimum": 1, "maximum": 1})
    stop: Text | list[Text] | None = Field(None, description=(
        "The reply ends before the first of these strings the model writes."))
    stream: bool | None = Field(False, description="Server-sent chunks, then 'data: [DONE]'.")
    stream_options: StreamOptions | None = None
    seed: JsonInt | None = Field(None, description="Accepted, not honoured: use temperature "
                                                   "0 for reproducible replies.")
    user: str | None = None

    @field_validator("n")
    @classmethod
    def _one_choice(cls, n: int | None) -> int | None:
        if n not in (None, 1):
            raise PydanticCustomError(
                "unsupported", "n={n} is not supported: lmforge serve returns one choice per "
                               "request (n=1); send more requests for more", {"n": n})
        return n

    @model_validator(mode="after")
    def _supported(self) -> _OpenAIRequest:
        for name, value in (self.model_extra or {}).items():
            if name in _INERT and value not in _INERT[name]:
                raise PydanticCustomError(
                    "unsupported", "{name}={value} is not supported by lmforge serve; leave "
                                   "it out", {"name": name, "value": repr(value)})
        return self

    @property
    def stops(self) -> list[str]:
        """The stop strings as a list."""
        return [self.stop] if isinstance(self.stop, str) else list(self.stop or [])


class TextPart(BaseModel):
    """A text part of a message's content (the only kind a text model reads)."""

    model_config = ConfigDict(extra="ignore", strict=True)
    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    """One turn; ``developer`` is OpenAI's newer name for ``system``."""

    model_config = ConfigDict(extra="ignore", strict=True)
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart]
    name: str | None = None

    def turn(self) -> dict[str, str]:
        """The turn as the chat task reads it (``{"role", "content"}``)."""
        content = self.content if isinstance(self.content, str) else \
            "\n".join(part.text for part in self.content)
        return {"role": "system" if self.role == "developer" else self.role,
                "content": content}


class ChatCompletionRequest(_OpenAIRequest):
    """``POST /v1/chat/completions``: a conversation (chat models)."""

    messages: list[ChatMessage] = Field(..., min_length=1)
    max_completion_tokens: Count | None = Field(None, description=(
        "OpenAI's newer name for max_tokens (wins when both are given)."))


class CompletionRequest(_OpenAIRequest):
    """``POST /v1/completions``: a prompt (a chat model reads it as one user turn)."""

    prompt: str | Annotated[list[str], Field(min_length=1, max_length=1)] = Field(
        ..., description="The prompt (or a list of exactly one: one prompt per request).")


class Usage(BaseModel):
    """Token counts of one request."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class AssistantMessage(BaseModel):
    """The reply of a chat completion."""

    role: Literal["assistant"]
    content: str


class _Choice(BaseModel):
    """What every choice has: its index (0) and why the generation ended."""

    index: int
    logprobs: None = None
    finish_reason: Literal["stop", "length"]


class ChatChoice(_Choice):
    """The one choice of a chat completion."""

    message: AssistantMessage


class CompletionChoice(_Choice):
    """The one choice of a completion."""

    text: str


class _Answer(BaseModel):
    """What both whole answers have."""

    id: str
    created: int
    model: str
    usage: Usage


class ChatCompletion(_Answer):
    """A whole chat reply (OpenAI's ``chat.completion``)."""

    object: Literal["chat.completion"]
    choices: list[ChatChoice]


class Completion(_Answer):
    """A whole completion (OpenAI's ``text_completion``)."""

    object: Literal["text_completion"]
    choices: list[CompletionChoice]


class ModelCard(BaseModel):
    """The served model."""

    id: str
    object: Literal["model"]
    created: int
    owned_by: str


class ModelList(BaseModel):
    """``GET /v1/models``: the one served model."""

    object: Literal["list"]
    data: list[ModelCard]


def served_name(source: str) -> str:
    """The default model name: the run folder's name (not its ``model/`` or ``onnx/``)."""
    path = Path(source).resolve()
    while path.name in ("model", "onnx", "onnx-int8") and path.parent != path:
        path = path.parent
    return path.name or "lmforge"


def _first_stop(text: str, stops: list[str]) -> int | None:
    """Where the earliest stop string begins in ``text`` (None: none there)."""
    found = [at for at in (text.find(stop) for stop in stops) if at >= 0]
    return min(found) if found else None


def _may_begin_stop(text: str, stops: list[str]) -> int:
    """Length of the longest end of ``text`` that a stop string starts with."""
    for keep in range(min(max(map(len, stops), default=1) - 1, len(text)), 0, -1):
        if any(stop.startswith(text[-keep:]) for stop in stops):
            return keep
    return 0


def _stripped(pieces: Iterable[str]) -> Iterator[str]:
    """The pieces of ``"".join(pieces).strip()``: leading whitespace dropped, trailing
    whitespace held back until text follows it."""
    started, pending = False, ""
    for piece in pieces:
        if not started:
            piece = piece.lstrip()
            started = bool(piece)
        text = pending + piece
        body = text.rstrip()
        pending = text[len(body):]
        if body:
            yield body


class _Reply:
    """One generation of an OpenAI request: its pieces (cut at the stop strings) and, once
    they are all out, its ``finish_reason`` and ``usage``."""

    def __init__(self, predictor: Predictor, prompt: str | None,
                 messages: list[dict[str, str]] | None, params: GenerateParams,
                 stops: list[str], strip: bool, prompt_tokens: int) -> None:
        self.predictor, self.prompt, self.messages = predictor, prompt, messages
        self.params, self.stops, self.strip = params, stops, strip
        self.prompt_tokens = prompt_tokens
        self.raw = ""  # what the model wrote, up to the stop string
        self.stopped = False  # a stop string of the request ended it

    def pieces(self, cancel: threading.Event) -> Generator[str, None, None]:
        """The reply piece by piece (blocking); ``cancel`` or closing it stops the model."""
        source = stream_text(self.predictor, self.prompt, self.messages, self.params, cancel)
        try:
            cut = self._until_stop(source, cancel)
            yield from (_stripped(cut) if self.strip else cut)
        finally:
            source.close()

    def _until_stop(self, source: Iterator[str], cancel: threading.Event) -> Iterator[str]:
        held = ""
        for piece in source:
            self.raw += piece
            held += piece
            at = _first_stop(held, self.stops)
            if at is not None:
                self.stopped = True
                cancel.set()  # the model stops at its next step
                if at:
                    yield held[:at]
                return
            ready = len(held) - _may_begin_stop(held, self.stops)
            if ready:
                yield held[:ready]
                held = held[ready:]
        if held:
            yield held

    @functools.cached_property
    def completion_tokens(self) -> int:
        """Tokens generated (read once the pieces are all out): the text re-tokenized, at
        most ``max_new_tokens`` (the generation functions give text, not token ids)."""
        return min(self.predictor.count_tokens(self.raw), self.params.max_new_tokens)

    def usage(self) -> dict[str, int]:
        """OpenAI's ``usage``."""
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "total_tokens": self.prompt_tokens + self.completion_tokens}

    def finish_reason(self) -> str:
        """``length`` when the reply reached ``max_new_tokens``, else ``stop``."""
        full = not self.stopped and self.completion_tokens >= self.params.max_new_tokens
        return "length" if full else "stop"


class _Chunks:
    """OpenAI's stream: ``chat.completion.chunk`` / ``text_completion`` chunks, a last one
    with the finish reason (and one with ``usage`` if asked), then ``[DONE]``."""

    def __init__(self, reply: _Reply, chat: bool, head: dict[str, Any],
                 include_usage: bool) -> None:
        self.reply, self.chat, self.include_usage = reply, chat, include_usage
        self.head = {**head, "object": "chat.completion.chunk" if chat else "text_completion"}
        self.first = True

    def _chunk(self, text: str | None, finish: str | None = None) -> str:
        if not self.chat:
            choice = {"index": 0, "text": text or "", "logprobs": None}
        else:
            delta = {} if text is None else {"content": text}
            if self.first:  # the first chunk names the role
                delta, self.first = {"role": "assistant", **delta}, False
            choice = {"index": 0, "delta": delta, "logprobs": None}
        return sse({**self.head, "choices": [{**choice, "finish_reason": finish}]})

    def piece(self, text: str) -> str:
        return self._chunk(text)

    def end(self) -> list[str]:
        events = [self._chunk("")] if self.chat and self.first else []
        events.append(self._chunk(None, self.reply.finish_reason()))
        if self.include_usage:
            events.append(sse({**self.head, "choices": [], "usage": self.reply.usage()}))
        return [*events, "data: [DONE]\n\n"]

    def timeout(self, detail: str) -> str:
        return sse({"error": {"message": detail, "type": "timeout", "code": 504}})


_STREAMED = {200: {"content": {"text/event-stream": {}}, "description": (
    "The reply (JSON), or with stream=true OpenAI's chunks as server-sent events, then "
    "'data: [DONE]'.")}, 404: {"model": ErrorResponse, "description": (
        "The request names a model this server does not serve.")}}


def mount_openai_routes(app: FastAPI, predictor: Predictor, cfg: ServeJob, auth: list[Any],
                        gate: Gate) -> set[str]:
    """Mount ``/v1/chat/completions``, ``/v1/completions`` and ``/v1/models``.

    Returns:
        The two POST paths (prediction routes for load shedding and limits).
    """
    name = cfg.served_model_name or served_name(predictor.source)
    card = {"id": name, "object": "model", "created": int(time.time()), "owned_by": "lmforge"}
    secured = responses(401) if auth else {}

    @app.get("/v1/models", tags=["openai"], dependencies=auth, response_model=ModelList,
             responses=secured)
    async def list_models() -> dict[str, Any]:
        """The served model (OpenAI's model list)."""
        return {"object": "list", "data": [card]}

    @app.get("/v1/models/{model_id:path}", tags=["openai"], dependencies=auth,
             response_model=ModelCard, responses={**secured, 404: _STREAMED[404]})
    async def get_model(model_id: str) -> dict[str, Any]:
        """The served model, if that is its name."""
        _check_model(model_id, name)
        return card

    async def complete(request: Request, req: _OpenAIRequest, prompt: str | None,
                       messages: list[dict[str, str]] | None, wanted: int | None) -> Any:
        _check_model(req.model, name)
        if req.model_extra:
            log.info("ignored request fields: %s", ", ".join(sorted(req.model_extra)))
        check_limits(req.model_dump(exclude_none=True), cfg.max_items, cfg.max_input_chars)
        gate.check_tokens([prompt] if prompt is not None else
                          [m["content"] for m in messages or []])
        # As the model reads it (chat template, prefix): what counts against its context.
        prompt_tokens, room = reply_room(predictor, prompt, messages)
        limit = min(wanted or predictor.settings.max_new_tokens, cfg.max_new_tokens, room)
        # Below vLLM's epsilon a temperature is greedy (dividing by 1e-311 makes inf logits).
        sample = (req.temperature or 0.0) >= _MIN_TEMPERATURE
        params = GenerateParams(max_new_tokens=limit, top_p=req.top_p or 1.0, do_sample=sample,
                                temperature=req.temperature if sample else 1.0)
        chat = messages is not None
        reply = _Reply(predictor, prompt, messages, params, req.stops, chat, prompt_tokens)
        head = {"id": f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex}",
                "created": int(time.time()), "model": name}
        if req.stream:
            usage = req.stream_options is not None and req.stream_options.include_usage
            return event_stream(gate, limit, cfg.request_timeout_s, reply.pieces,
                                _Chunks(reply, chat, head, usage))
        text = await whole_reply(request, gate, limit, cfg.request_timeout_s,
                                 lambda cancel: "".join(reply.pieces(cancel)))
        choice = {"message": {"role": "assistant", "content": text}} if chat else \
            {"text": text, "logprobs": None}
        return {**head, "object": "chat.completion" if chat else "text_completion",
                "choices": [{"index": 0, **choice, "finish_reason": reply.finish_reason()}],
                "usage": reply.usage()}

    async def chat_completions(request: Request, req: Any) -> Any:
        if not predictor.task.accepts_messages:
            raise HTTPException(422, f"a {predictor.task_name} model takes a prompt, not "
                                     f"messages; use POST {COMPLETIONS_PATH}")
        return await complete(request, req, None, [m.turn() for m in req.messages],
                              req.max_completion_tokens or req.max_tokens)

    async def completions(request: Request, req: Any) -> Any:
        prompt = req.prompt if isinstance(req.prompt, str) else req.prompt[0]
        return await complete(request, req, prompt, None, req.max_tokens)

    post_route(app, CHAT_PATH, ChatCompletionRequest, chat_completions,
               "OpenAI's chat completion: the assistant's reply to a conversation (chat "
               "models).", auth, response_model=ChatCompletion, responses=_STREAMED)
    post_route(app, COMPLETIONS_PATH, CompletionRequest, completions,
               "OpenAI's completion: the continuation of a prompt.", auth,
               response_model=Completion, responses=_STREAMED)
    return {CHAT_PATH, COMPLETIONS_PATH}


def _check_model(model: str | None, served: str) -> None:
    """404 when a request names a model other than the served one (as vLLM answers)."""
    if model is not None and model != served:
        raise HTTPException(404, f"model {model!r} is not served here; this server serves "
                                 f"{served!r} (GET /v1/models)")
