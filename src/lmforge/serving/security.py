"""API keys and request-size limits of ``lmforge serve``.

Keys come from the config, a file (one per line) or an environment variable, so they need
not appear in shell history. They are compared with :func:`hmac.compare_digest` against
every configured key (no early exit), so response time does not reveal how much of a
guessed key was right.
"""

from __future__ import annotations

import hmac
import json
import os
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

from lmforge.errors import ConfigError
from lmforge.serving.metrics import ASGIApp, Message, Scope


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
        for line in path.read_text(encoding="utf-8").splitlines():
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
    """Answer 413 to request bodies over ``max_bytes`` before anything parses them.

    Checks ``Content-Length`` up front and counts the bytes of chunked bodies as they come.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def _reject(self, send: Callable[[Message], Awaitable[None]]) -> None:
        body = json.dumps({"detail": f"request body is larger than max_body_bytes="
                                     f"{self.max_bytes}; send less per request",
                           "limit": "max_body_bytes"}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Callable[[], Awaitable[Message]],
                       send: Callable[[Message], Awaitable[None]]) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await self._reject(send)
            return
        seen = 0
        rejected = False

        async def counting_receive() -> Message:
            nonlocal seen, rejected
            message = await receive()
            if message["type"] == "http.request" and not rejected:
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    # Answer now and tell the app the client left; its own reply is dropped.
                    rejected = True
                    await self._reject(send)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            if not rejected:
                await send(message)

        await self.app(scope, counting_receive, guarded_send)
