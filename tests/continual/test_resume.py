"""A stream killed with SIGKILL inside its second experience resumes at that experience and
step, and ends with the same accuracy matrix as an uninterrupted stream."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.continual.conftest import stream_config


def _cmd(config: Path, out: Path, resume: bool = False) -> list[str]:
    cmd = [sys.executable, "-m", "lmforge", "continual", "-c", str(config),
           f"--output-dir={out}"]
    return [*cmd, "--resume"] if resume else cmd


@pytest.mark.slow
def test_sigkill_mid_experience_then_resume_equals_uninterrupted(
        tiny_stream: tuple[Path, dict[str, Path]], tmp_path: Path) -> None:
    encoder, data = tiny_stream
    cfg = stream_config(encoder, data, tmp_path / "unused", names=["mood", "topic"],
                        strategy={"name": "replay", "buffer_size": "20%"},
                        train={"max_steps": 12, "save_every": 2, "keep_last": 3})
    config = tmp_path / "stream.yaml"
    config.write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "LMFORGE_PROGRESS": "0"}
    full = tmp_path / "full"
    subprocess.run(_cmd(config, full), check=True, env=env, capture_output=True, timeout=600)

    killed = tmp_path / "killed"
    proc = subprocess.Popen(_cmd(config, killed), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    ckpts = killed / "experiences" / "1-topic" / "checkpoints"
    deadline = time.time() + 500
    while time.time() < deadline:
        if ckpts.exists() and any(int(p.name[5:]) >= 4 for p in ckpts.glob("step-*")):
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "summary.json").exists(), "the stream finished before it was killed"
    assert (killed / "experiences" / "0-mood" / "done.json").is_file()
    assert not (killed / "experiences" / "1-topic" / "done.json").exists()

    subprocess.run(_cmd(config, killed, resume=True), check=True, env=env,
                   capture_output=True, timeout=600)
    a = json.loads((full / "summary.json").read_text())
    b = json.loads((killed / "summary.json").read_text())
    assert b["accuracy_matrix"] == a["accuracy_matrix"]
    assert b["initial_accuracy"] == a["initial_accuracy"]
    # The resumed experience's training log continues from a checkpoint, not from step 0.
    rows = [json.loads(x) for x in
            (killed / "experiences" / "1-topic" / "metrics.jsonl").read_text().splitlines()]
    losses_full = {r["step"]: r["train_loss"] for r in map(json.loads, (
        full / "experiences" / "1-topic" / "metrics.jsonl").read_text().splitlines())
        if "train_loss" in r}
    last = [r for r in rows if "train_loss" in r][-1]
    assert last["train_loss"] == pytest.approx(losses_full[last["step"]], rel=1e-5)
