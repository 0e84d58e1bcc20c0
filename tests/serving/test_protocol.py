"""Idle connections: many opened at once are harmless, and those that never send a request
are closed after keep_alive_s like idle keep-alive connections."""

from __future__ import annotations

import selectors
import socket
import time

from fastapi import FastAPI

from tests.serving.conftest import live_server, read_reply


def test_idle_connections_are_served_around_and_closed() -> None:
    app = FastAPI()

    @app.get("/ping")
    async def ping() -> dict[str, str]:
        return {"pong": "yes"}

    with live_server(app, timeout_keep_alive=1) as port:
        idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(300)]
        with socket.create_connection(("127.0.0.1", port), timeout=30) as used:
            used.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
            assert read_reply(used)[0] == 200  # answered while 300 connections sit idle
            idle.append(used.dup())
        # Every connection that sent nothing (and the used one, now idle) is closed by the
        # server after about timeout_keep_alive seconds.
        selector = selectors.DefaultSelector()
        for sock in idle:
            sock.setblocking(False)
            selector.register(sock, selectors.EVENT_READ)
        closed = 0
        deadline = time.monotonic() + 30
        while closed < len(idle) and time.monotonic() < deadline:
            for key, _ in selector.select(timeout=1):
                if key.fileobj.recv(1) == b"":  # type: ignore[union-attr]
                    selector.unregister(key.fileobj)
                    closed += 1
        for sock in idle:
            sock.close()
        assert closed == len(idle)
