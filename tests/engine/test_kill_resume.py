"""A pretraining run killed with SIGKILL mid-way and resumed ends exactly like an
uninterrupted run of the same config."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import TINY_TRAIN


def _cmd(run: Path, corpus: Path, tok: Path, cache: Path, resume: bool = False) -> list[str]:
    cmd = [sys.executable, "-m", "lmforge", "pretrain", f"--output-dir={run}", *TINY_TRAIN,
           f"data.path={corpus}", f"model.tokenizer={tok}", f"data.cache_dir={cache}",
           "train.max_steps=60", "train.save_every=4", "train.eval_every=20",
           "train.keep_last=3"]
    return [*cmd, "--resume"] if resume else cmd


def _final(run: Path) -> tuple[list[float], dict]:
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    by_step = {r["step"]: r["train_loss"] for r in rows if "train_loss" in r}
    summary = json.loads((run / "summary.json").read_text())
    return [by_step[s] for s in sorted(by_step)], summary["final_eval"]


@pytest.mark.slow
def test_sigkill_then_resume_equals_uninterrupted(tmp_path: Path, corpus_file: Path,
                                                  wordpiece_dir: Path) -> None:
    cache = tmp_path / "cache"
    env = {**os.environ, "LMFORGE_PROGRESS": "0"}
    full = tmp_path / "full"
    subprocess.run(_cmd(full, corpus_file, wordpiece_dir, cache), check=True, env=env,
                   capture_output=True, timeout=300)

    killed = tmp_path / "killed"
    proc = subprocess.Popen(_cmd(killed, corpus_file, wordpiece_dir, cache), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    ckpts = killed / "checkpoints"
    while time.time() < deadline:
        done = [p for p in ckpts.glob("step-*")] if ckpts.exists() else []
        if any(int(p.name[5:]) >= 12 for p in done):
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "summary.json").exists(), "the run finished before it was killed"

    subprocess.run(_cmd(killed, corpus_file, wordpiece_dir, cache, resume=True), check=True,
                   env=env, capture_output=True, timeout=300)
    full_losses, full_eval = _final(full)
    resumed_losses, resumed_eval = _final(killed)
    assert len(full_losses) == 60
    # Steps logged by both runs (the killed one may have logged a few past its checkpoint,
    # which the resumed run logs again) carry the same loss.
    assert resumed_losses[-1] == pytest.approx(full_losses[-1], rel=1e-5)
    assert resumed_eval["eval_loss"] == pytest.approx(full_eval["eval_loss"], rel=1e-5)
