"""Request-body guards on a real socket: a slow body gets 408 without holding up others,
truncated and malformed bodies get a JSON 4xx (or nothing, when the client left)."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest

from lmforge.predictor import Predictor
from lmforge.serving import ServeJob, create_app, load_predictor
from tests.serving.conftest import live_server, raw_request, read_reply


@pytest.fixture(scope="module")
def predictor(cls_run: Path) -> Predictor:
    return load_predictor(str(cls_run), precision="fp32")


def _ask(port: int, data: bytes) -> tuple[int, dict[str, str], bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(data)
        return read_reply(sock)


def test_slow_bodies_time_out_and_broken_bodies_get_json_errors(predictor: Predictor) -> None:
    app = create_app(predictor, ServeJob(body_timeout_s=0.5, max_body_bytes=4096),
                     api_keys=[])
    with live_server(app) as port:
        while _ask(port, b"GET /ready HTTP/1.1\r\nHost: x\r\n\r\n")[0] != 200:
            time.sleep(0.05)
        # A client that sends its body a byte at a time: 408 once body_timeout_s is over,
        # and the connection is closed.
        slow = socket.create_connection(("127.0.0.1", port), timeout=30)
        slow.sendall(raw_request("/classify", b'{"te', length=40))
        t0 = time.monotonic()
        # Meanwhile a normal client is answered.
        assert _ask(port, raw_request("/classify", b'{"text": "good"}'))[0] == 200
        status, headers, body = read_reply(slow)
        assert status == 408 and headers["connection"] == "close"
        assert json.loads(body)["limit"] == "body_timeout_s"
        assert time.monotonic() - t0 < 20
        assert slow.recv(10) == b""  # closed by the server
        slow.close()
        # Malformed bodies: a JSON 422 with a one-line detail.
        for raw in (b'{"text": "a go', b"\xff", b"[" * 1500 + b"]" * 1500, b'{"text": 1e999}'):
            status, _, body = _ask(port, raw_request("/classify", raw))
            detail = json.loads(body)["detail"]
            assert status == 422 and isinstance(detail, str) and "\n" not in detail, raw[:20]
        # A chunked body over max_body_bytes: 413 before it is all read.
        chunked = (b"POST /classify HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                   b"Transfer-Encoding: chunked\r\n\r\n")
        for _ in range(3):
            chunked += b"800\r\n" + b" " * 0x800 + b"\r\n"
        status, _, body = _ask(port, chunked)
        assert status == 413 and json.loads(body)["limit"] == "max_body_bytes"
        # Bodies cut short (the client leaves): nothing to answer, the server goes on.
        for _ in range(5):
            with socket.create_connection(("127.0.0.1", port)) as gone:
                gone.sendall(raw_request("/classify", b'{"text": "a', length=100))
        assert _ask(port, raw_request("/classify", b'{"text": "fine"}'))[0] == 200
