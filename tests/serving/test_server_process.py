"""`lmforge serve` as a real process on loopback: ready, answer, SIGTERM, clean exit."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from lmforge.serving.client import Client, ServeError

KEY = "proc-key-0123456789"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.skipif(sys.platform == "win32", reason="SIGTERM semantics")
def test_serve_process_answers_and_exits_cleanly_on_sigterm(cls_run: Path,
                                                            tmp_path: Path) -> None:
    port = _free_port()
    key_file = tmp_path / "keys"
    key_file.write_text(KEY + "\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "lmforge", "serve", str(cls_run), f"port={port}",
         f"api_key_file={key_file}", "precision=fp32", "threads=1", "log_level=warning"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        with Client(f"http://127.0.0.1:{port}", api_key=KEY, timeout=10) as client:
            client.wait_ready(timeout=90)
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
        output, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, output
    assert "done:" in output and "classification" in output
