"""`lmforge serve` as a real process on loopback: ready, answer, SIGTERM, clean exit."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from lmforge.serving.client import Client, ServeError

KEY = "proc-key-0123456789"


def _bound_port(proc: subprocess.Popen, lines: queue.Queue, timeout: float) -> int:
    """The port uvicorn reports after binding ``port=0`` (the OS picks a free one: no port is
    chosen here and then raced for by another process)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.5)
        except queue.Empty:
            assert proc.poll() is None, "the server exited before it was listening"
            continue
        if (found := re.search(r"Uvicorn running on http://127\.0\.0\.1:(\d+)", line)):
            return int(found.group(1))
    raise AssertionError("the server never reported its port")


@pytest.mark.skipif(sys.platform == "win32", reason="SIGTERM semantics")
def test_serve_process_answers_and_exits_cleanly_on_sigterm(cls_run: Path,
                                                            tmp_path: Path) -> None:
    key_file = tmp_path / "keys"
    key_file.write_text(KEY + "\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "lmforge", "serve", str(cls_run), "port=0",
         f"api_key_file={key_file}", "precision=fp32", "threads=1", "log_level=info"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: queue.Queue = queue.Queue()
    output: list[str] = []

    def pump() -> None:  # read the output as it comes, so the pipe never fills up
        for line in proc.stdout:  # type: ignore[union-attr]
            output.append(line)
            lines.put(line)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        port = _bound_port(proc, lines, timeout=120)
        with Client(f"http://127.0.0.1:{port}", api_key=KEY, timeout=10) as client:
            client.wait_ready(timeout=120)
            results = client.classify(["the film was great", "a boring story"], top_k=2)
            assert [r["text"] for r in results] == ["the film was great", "a boring story"]
            assert all(r["label"] in {"neg", "pos"} for r in results)
            rows = client.predict(["the film was great"])
            assert rows[0]["label"] == results[0]["label"]
            with Client(f"http://127.0.0.1:{port}") as anonymous, \
                    pytest.raises(ServeError) as err:
                anonymous.classify("good")
            assert err.value.status == 401
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        reader.join(timeout=10)
    text = "".join(output)
    assert proc.returncode == 0, text
    assert "done:" in text and "classification" in text
