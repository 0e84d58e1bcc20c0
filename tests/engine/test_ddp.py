"""Two-process DDP pretraining on CPU (gloo) through torchrun: both ranks end identical."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import TINY_TRAIN

# --standalone: torchrun starts its own rendezvous on a free port of localhost (no port picked
# here and then raced for by another process).
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]


@pytest.mark.slow
def test_two_process_ddp_ranks_agree(tmp_path: Path, corpus_file: Path,
                                     wordpiece_dir: Path) -> None:
    run = tmp_path / "ddp"
    cmd = [*TORCHRUN, "-m", "lmforge",
           "pretrain", f"--output-dir={run}", *TINY_TRAIN, f"data.path={corpus_file}",
           f"model.tokenizer={wordpiece_dir}", f"data.cache_dir={tmp_path / 'cache'}",
           "train.max_steps=8", "train.num_threads=1"]
    env = {**os.environ, "LMFORGE_PROGRESS": "0", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["processes"] == 2
    checksums = summary["rank_checksums"]
    assert len(checksums) == 2 and checksums[0] == checksums[1]
    assert summary["final_eval"]["eval_loss"] < summary["initial_eval"]["eval_loss"]
