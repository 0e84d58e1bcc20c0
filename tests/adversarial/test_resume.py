"""A FreeLB fine-tuning killed with SIGKILL and resumed ends like an uninterrupted one; PGD
(whose inner steps run under DDP's no_sync) trains in two processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.engine.test_ddp import TORCHRUN
from tests.test_api import sentiment_task

ENV = {**os.environ, "LMFORGE_PROGRESS": "0", "OMP_NUM_THREADS": "1"}


def _data(root: Path) -> tuple[Path, Path]:
    encoder, data = sentiment_task(root, train=96, dev=16)
    return data, encoder


def _cmd(run: Path, data: Path, encoder: Path, resume: bool = False) -> list[str]:
    cmd = [sys.executable, "-m", "lmforge", "finetune", f"--output-dir={run}",
           f"data.path={data}", f"model.pretrained={encoder}", "train.max_steps=24",
           "train.batch_size=8", "train.save_every=3", "train.eval_every=12",
           "train.keep_last=3", "train.log_every=1", "train.lr=2e-3", "train.num_threads=1",
           "train.precision=fp32", "train.adversarial=freelb", "adv.steps=2",
           "adv.init_mag=0.5", "track.backends=jsonl", "track.progress=false"]
    return [*cmd, "--resume"] if resume else cmd


def _final(run: Path) -> tuple[float, float]:
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    losses = {r["step"]: r["train_loss"] for r in rows if "train_loss" in r}
    summary = json.loads((run / "summary.json").read_text())
    return losses[24], summary["validation_metrics"]["accuracy"]


@pytest.mark.slow
def test_killed_freelb_run_resumes_to_the_same_result(tmp_path: Path) -> None:
    data, encoder = _data(tmp_path)
    full = tmp_path / "full"
    subprocess.run(_cmd(full, data, encoder), check=True, env=ENV, capture_output=True,
                   timeout=600)
    killed = tmp_path / "killed"
    proc = subprocess.Popen(_cmd(killed, data, encoder), env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline:
        ckpts = killed / "checkpoints"
        if ckpts.exists() and any(int(p.name[5:]) >= 9 for p in ckpts.glob("step-*")):
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "summary.json").exists(), "the run finished before it was killed"
    subprocess.run(_cmd(killed, data, encoder, resume=True), check=True, env=ENV,
                   capture_output=True, timeout=600)
    full_loss, full_acc = _final(full)
    resumed_loss, resumed_acc = _final(killed)
    assert resumed_loss == pytest.approx(full_loss, rel=1e-5)
    assert resumed_acc == full_acc


@pytest.mark.slow
def test_pgd_trains_under_two_process_ddp(tmp_path: Path) -> None:
    data, encoder = _data(tmp_path)
    run = tmp_path / "run"
    cmd = [*TORCHRUN, "-m", "lmforge", "finetune", f"--output-dir={run}", f"data.path={data}",
           f"model.pretrained={encoder}", "train.max_steps=4", "train.batch_size=8",
           "train.grad_accum=2", "train.num_threads=1", "train.precision=fp32",
           "train.adversarial=pgd", "adv.steps=2", "track.backends=jsonl",
           "track.progress=false"]
    proc = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["processes"] == 2 and summary["steps"] == 4
    # grad_accum=2 micro-batches per step, each with K=2 extra passes.
    assert summary["adversarial"]["extra_forward_per_step"] == 4.0
    # Only rank 0 writes the lineage, and no rank leaves a temporary behind.
    assert json.loads((run / "lineage.json").read_text())["command"] == "finetune"
    assert not list(run.glob("*.tmp"))
