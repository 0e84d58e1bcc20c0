"""A server that cannot bind its port is one ConfigError line (serve and ui share this)."""

from __future__ import annotations

import socket

import pytest
import uvicorn

from lmforge.commands.listening import run_or_explain
from lmforge.errors import ConfigError


async def _app(scope: dict, receive: object, send: object) -> None:  # never called
    raise AssertionError("no request expected")


def test_a_port_in_use_is_one_line_naming_the_address() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = uvicorn.Server(uvicorn.Config(_app, host="127.0.0.1", port=port,
                                               log_level="critical"))
        with pytest.raises(ConfigError, match=rf"^the UI did not start on 127.0.0.1:{port} "
                                              r"\(port in use\?\); pick another port=$"):
            run_or_explain(server, "the UI", f"127.0.0.1:{port}", "port in use?")
