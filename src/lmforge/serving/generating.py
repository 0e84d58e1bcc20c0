"""One generation for an HTTP route: admitted, charged, bounded in time, cancelled when its
client leaves.

``/generate`` and the OpenAI-compatible routes (:mod:`.openai_api`) differ only in their
request and event formats. Both answer through :func:`whole_reply` (one JSON body) or
:func:`event_stream` (server-sent events), so admission (:class:`~.admission.Gate`), the
charge of a running generation on the gate's expected wait, ``request_timeout_s`` and the
cancellation of abandoned work are written once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import weakref
from collections.abc import AsyncIterator, Callable, Generator, Iterable
from typing import Any, Protocol, TypeVar

from fastapi import HTTPException, Request
from fastapi.responses import StreamingResponse

from lmforge.serving.admission import Gate, until_disconnect

T = TypeVar("T")
_END = object()


def reply_room(predictor: Any, prompt: str | None,
               messages: list[dict[str, str]] | None) -> tuple[int, int]:
    """(prompt tokens as the model reads them, tokens it can still write after them).

    A decoder-only model's context length (``max_position_embeddings``) bounds prompt and
    reply together; an encoder-decoder's input is cut to its max_length, so its room is not
    bounded here.

    Raises:
        HTTPException: 422 when the prompt alone fills the context.
    """
    inputs = predictor.task.generation_inputs(predictor.tokenizer, predictor.settings, prompt,
                                              messages)
    prompt_tokens = int(inputs["input_ids"].shape[-1])  # chat template and prefix included
    config = getattr(predictor.model, "config", None)
    context = getattr(config, "max_position_embeddings", None)
    if not isinstance(context, int) or getattr(config, "is_encoder_decoder", False):
        return prompt_tokens, 1 << 30
    if prompt_tokens >= context:
        raise HTTPException(422, f"the prompt is {prompt_tokens} tokens; the model reads at "
                                 f"most {context} (its context length): shorten it")
    return prompt_tokens, context - prompt_tokens


def sse(data: Any, event: str | None = None) -> str:
    """One server-sent event carrying ``data`` as JSON (non-ASCII text kept as is)."""
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(data, ensure_ascii=False)}\n\n"


class EventFormat(Protocol):
    """How a route writes its stream: one event per text piece, then its closing events."""

    def piece(self, text: str) -> str:
        """The event of one text piece."""

    def end(self) -> Iterable[str]:
        """The events after the last piece (the whole text, a finish reason, ...)."""

    def timeout(self, detail: str) -> str:
        """The event that ends a stream stopped by ``request_timeout_s``."""


async def whole_reply(request: Request, gate: Gate, max_new_tokens: int, timeout_s: float,
                      work: Callable[[threading.Event], T]) -> T:
    """Run ``work(cancel)`` in a thread as one admitted generation and return its result.

    The generation is charged ``max_new_tokens`` on the gate until it ends. A client that
    disconnects, or ``timeout_s`` passing (504), sets ``cancel``, which stops the
    generation at its next decoding step.

    Raises:
        Unavailable: Not ready, draining or overloaded (503).
        HTTPException: 504 after ``timeout_s``.
        ClientGone: The client disconnected first.
    """
    cancel = threading.Event()
    with gate.admitted():
        finish = gate.start_generation(max_new_tokens)
        job = asyncio.ensure_future(asyncio.to_thread(work, cancel))
        try:
            return await until_disconnect(
                asyncio.ensure_future(asyncio.wait_for(job, timeout_s)), request.receive)
        except asyncio.TimeoutError:
            raise HTTPException(504, f"no answer within request_timeout_s={timeout_s}"
                                ) from None
        finally:
            cancel.set()  # a timed-out or abandoned generation stops at its next step
            finish()


def event_stream(gate: Gate, max_new_tokens: int, timeout_s: float,
                 pieces: Callable[[threading.Event], Generator[str, None, None]],
                 fmt: EventFormat) -> StreamingResponse:
    """Admit a generation and answer with its pieces as server-sent events.

    Admission happens now (a refusal is a plain 503, before any event); the generation
    starts when the response is sent and stays charged on the gate until the stream ends,
    however it ends. ``pieces(cancel)`` must be a generator: setting ``cancel`` or closing
    it stops the generation.
    """
    cancel = threading.Event()
    with gate.admitted():
        finish = gate.start_generation(max_new_tokens)
    events = _events(pieces(cancel), fmt, cancel, timeout_s, finish)
    # A stream never started (its client left first) runs no `finally`.
    weakref.finalize(events, finish)
    return StreamingResponse(events, media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache"})


async def _events(pieces: Generator[str, None, None], fmt: EventFormat,
                  cancel: threading.Event, timeout_s: float,
                  finish: Callable[[], None]) -> AsyncIterator[str]:
    """The stream's events; ``finish`` ends its charge on the gate."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    try:
        while True:
            # next() blocks on the streamer's queue, so it runs in a thread.
            piece = await asyncio.to_thread(next, pieces, _END)
            if piece is _END:
                break
            yield fmt.piece(piece)
            if loop.time() > deadline:
                yield fmt.timeout(f"stopped after request_timeout_s={timeout_s}")
                return
        for event in fmt.end():
            yield event
    finally:
        cancel.set()
        finish()
        # close() joins the generation thread; ValueError: next() still runs in a cancelled
        # to_thread, and that generation ends on `cancel` by itself.
        with contextlib.suppress(ValueError):
            await asyncio.to_thread(pieces.close)
