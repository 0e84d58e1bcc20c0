"""uvicorn's HTTP protocol with one more timeout: a connection that never sends a request.

uvicorn closes a keep-alive connection that stays idle ``timeout_keep_alive`` seconds after
a response, but a fresh connection that sends nothing has no timer at all: thousands of
them hold a file descriptor and a protocol object each for as long as the client likes.
Here the same timer starts when the connection opens (``keep_alive_s``); the first byte
cancels it, exactly as after a response. Request bodies are bounded separately
(``body_timeout_s``, :class:`~lmforge.serving.security.BodyLimitMiddleware`).
"""

from __future__ import annotations

import asyncio

try:  # the fast parser when installed (uvicorn's own choice for http="auto")
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as _Base
except ImportError:  # pragma: no cover - httptools missing
    from uvicorn.protocols.http.h11_impl import H11Protocol as _Base  # type: ignore[assignment]


class IdleTimeoutProtocol(_Base):  # type: ignore[misc, valid-type]
    """The HTTP protocol uvicorn would pick, closing connections idle from the start."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Accept the connection and start its idle timer."""
        super().connection_made(transport)
        if self.timeout_keep_alive_task is None:
            self.timeout_keep_alive_task = self.loop.call_later(
                self.timeout_keep_alive, self.timeout_keep_alive_handler)
