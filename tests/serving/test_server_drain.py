"""`lmforge serve workers=2` as real processes: both workers answer on one port, and
SIGTERM under load drains them (no admitted request fails) and exits 0."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest


def _get(port: int, path: str) -> tuple[int, str]:
    import socket

    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
    except OSError:
        return 0, ""
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body.decode()


async def _load(port: int, seconds: float, log: list[tuple[float, str]]) -> None:
    body = json.dumps({"text": "the film was great"}).encode()
    request = (b"POST /classify HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    stop_at = time.monotonic() + seconds

    async def client() -> None:
        writer = None
        while time.monotonic() < stop_at:
            sent = time.monotonic()
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(re.search(rb"content-length: (\d+)", head, re.I).group(1))
                await reader.readexactly(length)
                log.append((sent, head.split()[1].decode()))
                if b"connection: close" in head.lower():
                    writer.close()
                    writer = None
            except (OSError, asyncio.IncompleteReadError):
                log.append((sent, "conn"))
                if writer is not None:
                    writer.close()
                writer = None
                await asyncio.sleep(0.05)
        if writer is not None:
            writer.close()

    await asyncio.gather(*(client() for _ in range(16)))


@pytest.mark.skipif(sys.platform == "win32", reason="SIGTERM semantics")
def test_two_workers_share_the_port_and_drain_on_sigterm(cls_run: Path) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    # port=0: the supervisor binds a free port once and logs it (no race for a port).
    proc = subprocess.Popen(
        [sys.executable, "-m", "lmforge", "serve", str(cls_run), "port=0", "workers=2",
         "threads=1", "precision=fp32", "drain_timeout_s=20", "log_level=info"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")),
                              daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 180
        port = None
        while port is None:
            assert proc.poll() is None and time.monotonic() < deadline, "".join(lines)
            found = re.search(r"running on http://127\.0\.0\.1:(\d+)", "".join(lines))
            port = int(found.group(1)) if found else None
            time.sleep(0.1)
        pids = set()
        while len(pids) < 2:  # each connection lands on one worker; both must answer
            assert proc.poll() is None and time.monotonic() < deadline, "".join(lines)
            status, body = _get(port, "/info")
            if status == 200 and _get(port, "/ready")[0] == 200:
                pids.add(json.loads(body)["pid"])
            time.sleep(0.05)
        assert len(pids) == 2 and proc.pid not in pids  # two model-loading processes

        log: list[tuple[float, str]] = []

        async def scenario() -> float:
            load = asyncio.ensure_future(_load(port, 6, log))
            await asyncio.sleep(2)
            signalled = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            await load
            return signalled

        signalled = asyncio.run(scenario())
        proc.wait(timeout=60)
        exited = time.monotonic() - signalled
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(timeout=10)
    before = [status for sent, status in log if sent < signalled]
    after = {status for sent, status in log if sent >= signalled}
    assert proc.returncode == 0, "".join(lines)
    assert exited < 20 + 10  # within drain_timeout_s (and the supervisor's join)
    assert before and set(before) <= {"200", "503"}, sorted(set(before))  # none lost
    assert before.count("200") > 0
    assert after <= {"200", "503", "conn"}, after
    assert "done:" in "".join(lines)
