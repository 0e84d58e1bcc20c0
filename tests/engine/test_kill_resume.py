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


def _losses(run: Path) -> list[tuple[int, float]]:
    """(step, train loss) of every row in metrics.jsonl, in the order they were logged."""
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["train_loss"]) for r in rows if "train_loss" in r]


def _checkpoint_steps(run: Path) -> list[int]:
    return sorted(int(p.name[5:]) for p in (run / "checkpoints").glob("step-*"))


@pytest.mark.slow
def test_sigkill_then_resume_equals_uninterrupted(tmp_path: Path, corpus_file: Path,
                                                  wordpiece_dir: Path) -> None:
    cache = tmp_path / "cache"
    env = {**os.environ, "LMFORGE_PROGRESS": "0"}
    full = tmp_path / "full"
    subprocess.run(_cmd(full, corpus_file, wordpiece_dir, cache), check=True, env=env,
                   capture_output=True, timeout=600)

    killed = tmp_path / "killed"
    proc = subprocess.Popen(_cmd(killed, corpus_file, wordpiece_dir, cache), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # Kill once a mid-run checkpoint is on disk (checkpoints appear by an atomic rename, so a
    # listed step-* folder is complete). Generous deadline: a loaded 2-core machine is slow.
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and proc.poll() is None:
        if any(step >= 12 for step in _checkpoint_steps(killed)):
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "summary.json").exists(), "the run finished before it was killed"
    at_kill = _checkpoint_steps(killed)
    assert at_kill and 12 <= at_kill[-1] < 60, f"no mid-run checkpoint at kill time: {at_kill}"
    logged_before = len(_losses(killed))

    resumed = subprocess.run(_cmd(killed, corpus_file, wordpiece_dir, cache, resume=True),
                             env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"step-{at_kill[-1]:08d} (step {at_kill[-1]}," in resumed.stderr  # "resumed from"

    full_losses = dict(_losses(full))
    assert sorted(full_losses) == list(range(1, 61))
    rows = _losses(killed)
    # The resumed process logs from the step after the checkpoint: it did not start over.
    assert rows[logged_before][0] == at_kill[-1] + 1
    assert {step for step, _ in rows} == set(full_losses)
    # Every logged step of both processes (the killed one may have logged a few steps past
    # its checkpoint, which the resumed one logs again) carries the uninterrupted run's loss.
    for step, loss in rows:
        assert loss == pytest.approx(full_losses[step], rel=1e-5), f"step {step}"
    full_eval = json.loads((full / "summary.json").read_text())["final_eval"]
    resumed_eval = json.loads((killed / "summary.json").read_text())["final_eval"]
    assert resumed_eval["eval_loss"] == pytest.approx(full_eval["eval_loss"], rel=1e-5)


def test_resume_without_a_checkpoint_says_it_starts_over(tmp_path: Path, corpus_file: Path,
                                                         wordpiece_dir: Path) -> None:
    """A run stopped before its first checkpoint: --resume warns and trains from step 0.

    A warning rather than an error: schedulers requeue a preempted job with the same command
    line, and the only way to continue such a run is to start it again.
    """
    run = tmp_path / "early"
    run.mkdir()  # the run directory exists (the killed run made it), its checkpoints do not
    cmd = [*_cmd(run, corpus_file, wordpiece_dir, tmp_path / "cache", resume=True)]
    cmd = [c for c in cmd if not c.startswith("train.max_steps=")] + ["train.max_steps=3"]
    env = {**os.environ, "LMFORGE_PROGRESS": "0"}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "--resume: no checkpoint in" in done.stderr and "starting from step 0" in done.stderr
    assert json.loads((run / "summary.json").read_text())["steps"] == 3
    assert [step for step, _ in _losses(run)] == [1, 2, 3]
