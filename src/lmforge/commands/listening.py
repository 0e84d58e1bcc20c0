"""Running a uvicorn server until it stops, shared by ``lmforge serve`` and ``lmforge ui``.

uvicorn reports a socket it cannot bind by logging and raising ``SystemExit``; both commands
turn that (and any start-up that never completed) into one :class:`ConfigError` line.
"""

from __future__ import annotations

from typing import Any

from lmforge.errors import ConfigError


def run_or_explain(server: Any, what: str, address: str, why: str) -> None:
    """Run ``server`` (a ``uvicorn.Server``) until it stops.

    Args:
        server: The server; its ``started`` flag tells whether it ever listened.
        what: What failed to start, for the message (``the UI``).
        address: ``host:port``.
        why: The likely causes, for the message (``port in use?``).

    Raises:
        ConfigError: The server never started listening.
    """
    try:
        server.run()
    except SystemExit:  # uvicorn exits this way when it cannot bind the socket
        server.started = False
    if not server.started:
        raise ConfigError(f"{what} did not start on {address} ({why}); pick another port=")
