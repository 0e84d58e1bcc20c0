"""A small Python client for ``lmforge serve`` (httpx).

Example::

    from lmforge.serving.client import Client

    with Client("http://127.0.0.1:8000", api_key="...") as client:
        client.wait_ready()
        client.classify("what a lovely film")      # [{"label": "positive", ...}]
        for piece in client.generate_stream(prompt="hello"):
            print(piece, end="")

An overloaded server answers 503 with ``Retry-After`` (and 429 may come from a proxy in
front of it). The client then backs off and retries, ``retries`` times at most: it waits
the ``Retry-After`` seconds (capped at ``max_backoff``) or, without the header, an
exponential back-off ``backoff * 2**attempt`` (capped likewise), each stretched by a random
factor in [1, 1.5] so that clients refused together do not come back together.
:func:`backoff_delay` is the rule, for clients written in other languages.
"""

from __future__ import annotations

import contextlib
import json
import random
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx


class ServeError(RuntimeError):
    """The server answered with an error status; ``status`` and ``detail`` say which."""

    def __init__(self, status: int, detail: Any) -> None:
        super().__init__(f"HTTP {status}: {detail}")
        self.status = status
        self.detail = detail


class Client:
    """Calls the endpoints of an ``lmforge serve`` server.

    Args:
        base_url: e.g. ``http://127.0.0.1:8000``.
        api_key: Sent as ``Authorization: Bearer`` when given.
        timeout: Seconds per request.
        transport: An httpx transport (tests pass ``httpx.ASGITransport``/``MockTransport``).
        retries: Most retries of a request refused with 503 / 429 (0: none).
        backoff: First back-off in seconds when the server sends no ``Retry-After``.
        max_backoff: Longest single wait, whatever ``Retry-After`` says.
        sleep: The function that waits (tests pass a recorder).
    """

    def __init__(self, base_url: str, api_key: str | None = None, timeout: float = 60.0,
                 transport: httpx.BaseTransport | None = None, retries: int = 5,
                 backoff: float = 0.25, max_backoff: float = 30.0,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(base_url=base_url.rstrip("/"), headers=headers,
                                  timeout=timeout, transport=transport)
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._sleep = sleep
        self._rng = random.Random()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def _send(self, request: Callable[[], httpx.Response]) -> httpx.Response:
        """``request()``, retried after a back-off while the server refuses it (503 / 429)."""
        attempt = 0
        while True:
            response = request()
            if response.status_code not in RETRY_STATUSES or attempt >= self.retries:
                return response
            response.close()
            self._sleep(backoff_delay(attempt, response.headers.get("retry-after"),
                                      self.backoff, self.max_backoff, self._rng))
            attempt += 1

    def _post(self, path: str, body: dict[str, Any]) -> Any:
        response = self._send(lambda: self._http.post(path, json=body))
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail")
            except ValueError:
                detail = response.text
            raise ServeError(response.status_code, detail)
        return response.json()

    def health(self) -> bool:
        """True when the server answers /health."""
        try:
            return self._http.get("/health").status_code == 200
        except httpx.HTTPError:
            return False

    def ready(self) -> bool:
        """True when the model is loaded and warmed up."""
        try:
            return self._http.get("/ready").status_code == 200
        except httpx.HTTPError:
            return False

    def wait_ready(self, timeout: float = 60.0, interval: float = 0.2) -> None:
        """Block until /ready answers 200.

        Raises:
            TimeoutError: Not ready within ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        while not self.ready():
            if time.monotonic() > deadline:
                raise TimeoutError(f"server not ready after {timeout} s")
            time.sleep(interval)

    def predict(self, inputs: list[Any], top_k: int = 1) -> list[dict[str, Any]]:
        """The rows of ``lmforge predict`` for raw records (or bare texts)."""
        return self._post("/predict", {"inputs": inputs, "top_k": top_k})["results"]

    def classify(self, texts: str | list[str], top_k: int = 1,
                 text_pair: str | list[str] | None = None) -> list[dict[str, Any]]:
        """Labels with scores, one result per text."""
        body: dict[str, Any] = {"text" if isinstance(texts, str) else "texts": texts,
                                "top_k": top_k}
        if text_pair is not None:
            body["text_pair"] = text_pair
        return self._post("/classify", body)["results"]

    def entities(self, texts: str | list[str]) -> list[list[dict[str, Any]]]:
        """Entities (start, end, label, score, text) per text."""
        body = {"text" if isinstance(texts, str) else "texts": texts}
        return [r["entities"] for r in self._post("/entities", body)["results"]]

    def answer(self, question: str, context: str) -> dict[str, Any]:
        """The answer span: ``{"answer", "score", "start", "end"}``."""
        return self._post("/answer", {"question": question, "context": context})

    def generate(self, prompt: str | None = None, messages: list[dict[str, str]] | None = None,
                 **options: Any) -> str:
        """The generated text (options: max_new_tokens, temperature, top_p, do_sample)."""
        body = {"prompt": prompt, "messages": messages, **options, "stream": False}
        return self._post("/generate", {k: v for k, v in body.items() if v is not None})["text"]

    def generate_stream(self, prompt: str | None = None,
                        messages: list[dict[str, str]] | None = None,
                        **options: Any) -> Iterator[str]:
        """Yield text pieces as the server streams them (server-sent events)."""
        body = {"prompt": prompt, "messages": messages, **options, "stream": True}
        body = {k: v for k, v in body.items() if v is not None}
        # A refusal comes before the first event, so the stream is retried like a request.
        response = self._send(lambda: self._http.send(self._http.build_request(
            "POST", "/generate", json=body), stream=True))
        with contextlib.closing(response):
            if response.status_code >= 400:
                response.read()
                raise ServeError(response.status_code, response.text)
            for event in iter_events(response.iter_lines()):
                if event.get("event") == "error":
                    raise ServeError(504, event["data"].get("detail"))
                if "token" in event["data"]:
                    yield event["data"]["token"]


RETRY_STATUSES = (429, 503)
"""Statuses that mean "not now": retried after a back-off."""


def backoff_delay(attempt: int, retry_after: str | None, backoff: float = 0.25,
                  max_backoff: float = 30.0, rng: random.Random | None = None) -> float:
    """Seconds to wait before retry number ``attempt + 1`` of a refused request.

    ``Retry-After`` (seconds, as ``lmforge serve`` sends it) is honoured when present,
    else the wait doubles per attempt from ``backoff``; either is capped at ``max_backoff``
    and stretched by a random factor in [1, 1.5]. The jitter only lengthens the wait:
    retrying before ``Retry-After`` would be refused again.

    Args:
        attempt: 0 for the first retry.
        retry_after: The response's ``Retry-After`` header (None if absent; an HTTP date
            or garbage counts as absent).
        backoff: The first wait without ``Retry-After``.
        max_backoff: The longest wait before jitter.
        rng: Source of the jitter (a seeded one in tests).
    """
    base = backoff * 2 ** attempt
    if retry_after is not None:
        with contextlib.suppress(ValueError):
            base = max(float(retry_after), 0.0)
    return min(base, max_backoff) * (1.0 + 0.5 * (rng or random).random())


def iter_events(lines: Iterator[str]) -> Iterator[dict[str, Any]]:
    """Parse server-sent events: ``{"event": name or None, "data": parsed JSON}`` each."""
    name: str | None = None
    data: list[str] = []
    for line in lines:
        if not line:
            if data:
                yield {"event": name, "data": json.loads("\n".join(data))}
            name, data = None, []
        elif line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())
    if data:
        yield {"event": name, "data": json.loads("\n".join(data))}
