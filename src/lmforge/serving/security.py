"""API keys and request-size limits of ``lmforge serve``.

Keys come from the config, a file (one per line) or an environment variable, so they need
not appear in shell history. They are compared with :func:`hmac.compare_digest` against
every configured key (no early exit), so response time does not reveal how much of a
guessed key was right.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import os
import sys
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

from lmforge.errors import ConfigError
from lmforge.serving.metrics import ASGIApp, Message, Scope
from lmforge.textfiles import read_text


def load_api_keys(keys: Iterable[str] = (), key_file: str | None = None,
                  env_var: str | None = "LMFORGE_API_KEYS") -> list[str]:
    """All accepted API keys: from ``keys``, ``key_file`` and the ``env_var`` variable.

    Args:
        keys: Keys given in the config.
        key_file: A file with one key per line; blank lines and ``#`` comments are skipped.
        env_var: Name of an environment variable with comma-separated keys (unset: none).

    Returns:
        The distinct keys, in order; empty means authentication is off.

    Raises:
        ConfigError: The key file does not exist, or a key is shorter than 8 characters.
    """
    found = [k.strip() for k in keys if k and k.strip()]
    if key_file:
        path = Path(key_file).expanduser()
        if not path.is_file():
            raise ConfigError(f"api_key_file {key_file!r} not found; give a file with one key "
                              "per line")
        for line in read_text(path, ConfigError).splitlines():
            line = line.split("#", 1)[0].strip()
            if line:
                found.append(line)
    if env_var and os.environ.get(env_var):
        found.extend(k.strip() for k in os.environ[env_var].split(",") if k.strip())
    short = [k for k in found if len(k) < 8]
    if short:
        raise ConfigError("an API key is shorter than 8 characters; use long random keys "
                          "(e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))')")
    return list(dict.fromkeys(found))


def presented_key(headers: Any) -> str | None:
    """The key a request carries: ``X-API-Key`` or ``Authorization: Bearer <key>``."""
    key = headers.get("x-api-key")
    if key:
        return str(key).strip()
    auth = headers.get("authorization") or ""
    scheme, _, value = str(auth).partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


def key_matches(presented: str | None, keys: list[str]) -> bool:
    """True when ``presented`` equals one of ``keys`` (constant-time per key)."""
    if presented is None:
        return False
    given = presented.encode("utf-8")
    ok = False
    for key in keys:
        # Evaluate every key: stopping at the first match would leak which slot matched.
        ok |= hmac.compare_digest(given, key.encode("utf-8"))
    return ok


class BodyLimitMiddleware:
    """Guard request bodies before anything parses them.

    - 413 for bodies over ``max_bytes``: ``Content-Length`` is checked up front and the bytes
      of chunked bodies are counted as they come;
    - 408 for bodies that take longer than ``timeout_s`` to arrive (a client sending a body
      byte by byte holds a connection and a task; the timeout bounds both).

    Either way the connection is closed and the app sees the client leave.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, timeout_s: float | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s

    async def _reject(self, send: Callable[[Message], Awaitable[None]], status: int,
                      detail: str, limit: str) -> None:
        body = json.dumps({"detail": detail, "limit": limit}).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})

    def _too_large(self, send: Callable[[Message], Awaitable[None]]) -> Awaitable[None]:
        return self._reject(send, 413, f"request body is larger than max_body_bytes="
                                       f"{self.max_bytes}; send less per request",
                            "max_body_bytes")

    async def __call__(self, scope: Scope, receive: Callable[[], Awaitable[Message]],
                       send: Callable[[Message], Awaitable[None]]) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await self._too_large(send)
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s if self.timeout_s else None
        seen = 0
        body_done = False
        rejected = False

        async def guarded_receive() -> Message:
            nonlocal seen, body_done, rejected
            if rejected:
                return {"type": "http.disconnect"}
            if body_done or deadline is None:
                return await receive()  # after the body: only the disconnect is left
            try:
                message = await _within(receive, deadline - loop.time())
            except (asyncio.TimeoutError, TimeoutError):
                rejected = True
                await self._reject(send, 408, f"the request body did not arrive within "
                                              f"body_timeout_s={self.timeout_s:g}",
                                   "body_timeout_s")
                return {"type": "http.disconnect"}
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                body_done = not message.get("more_body", False)
                if seen > self.max_bytes:
                    # Answer now and tell the app the client left; its own reply is dropped.
                    rejected = True
                    await self._too_large(send)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            if not rejected:
                await send(message)

        try:
            await self.app(scope, guarded_receive, guarded_send)
        except Exception:
            if not rejected:  # the app failed on a body we cut short: already answered
                raise


async def _within(receive: Callable[[], Awaitable[Message]], seconds: float) -> Message:
    """``await receive()`` for at most ``seconds`` (TimeoutError after)."""
    if seconds <= 0:
        raise TimeoutError
    if sys.version_info >= (3, 11):  # no extra task per call
        async with asyncio.timeout(seconds):
            return await receive()
    return await asyncio.wait_for(receive(), seconds)  # pragma: no cover - Python 3.10
