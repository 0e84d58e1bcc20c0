"""Two-process DDP fine-tuning on CPU (gloo) through torchrun, without --output-dir."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.engine.test_ddp import TORCHRUN
from tests.test_api import sentiment_task


@pytest.mark.slow
def test_two_process_finetune_agrees_on_one_run_dir(tmp_path: Path) -> None:
    encoder, data = sentiment_task(tmp_path, train=64, dev=16)
    work = tmp_path / "work"
    work.mkdir()
    # No --output-dir: the default name has a timestamp, which process 0 picks for both.
    cmd = [*TORCHRUN, "-m", "lmforge", "finetune", f"data.path={data}",
           f"model.pretrained={encoder}", "train.max_steps=6", "train.batch_size=8",
           "train.eval_every=3", "train.num_threads=1", "train.precision=fp32",
           "track.backends=jsonl", "track.progress=false"]
    env = {**os.environ, "LMFORGE_PROGRESS": "0", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = list((work / "runs").iterdir())
    assert len(runs) == 1 and runs[0].name.startswith("finetune-")
    summary = json.loads((runs[0] / "summary.json").read_text())
    assert summary["processes"] == 2 and summary["steps"] == 6
    assert (runs[0] / "model" / "model.safetensors").is_file()
    assert (runs[0] / "checkpoints" / "step-00000006").is_dir()
