"""Chat SFT of SmolLM2-135M-Instruct under FSDP2 (2 CPU processes, gloo) against 1 process.

Same data, same global batch (2 processes x ``--batch`` / 2 rows vs 1 x ``--batch``), fp32,
one thread per process. Records the held-out reply loss of both runs (the report of the
main process), the largest difference between their saved weights and the wall times (on
a shared machine: compare them within one run of this script only).

    python bench/fsdp_sft.py --out bench/results/fsdp_sft.json

The chat rows are the toy "say X Y" -> "X Y" set of ``tests/engine/test_fsdp.py`` (every row
trains the same number of tokens, so the two runs' losses are the same quantity).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import machine_info  # noqa: E402

WORDS = ["red", "green", "blue", "cat", "dog", "fish"]
LAUNCH = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes=2",
          "--num_machines=1", "--machine_rank=0", "--mixed_precision=no", "--dynamo_backend=no",
          "--use_fsdp", "--fsdp_version=2", "--fsdp_auto_wrap_policy=TRANSFORMER_BASED_WRAP"]


def write_rows(folder: Path, seed: int = 0) -> None:
    """48 training and 8 dev conversations."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for name, rows in (("train", 48), ("dev", 8)):
        lines = []
        for _ in range(rows):
            words = " ".join(rng.choices(WORDS, k=2))
            lines.append(json.dumps({"messages": [
                {"role": "user", "content": f"say {words}"},
                {"role": "assistant", "content": words}]}))
        (folder / f"{name}.jsonl").write_text("\n".join(lines) + "\n")


def finetune(launcher: list[str], run: Path, data: Path, batch: int, steps: int,
             model: str) -> float:
    """Run ``lmforge finetune``; return its wall time in seconds."""
    cmd = [*launcher, "-m", "lmforge", "finetune", f"--output-dir={run}", "task.name=sft",
           f"data.path={data}", f"model.pretrained={model}", "model.dropout=0.0",
           f"train.max_steps={steps}", f"train.batch_size={batch}", "train.lr=1e-4",
           "train.warmup_ratio=0", "train.group_by_length=false", f"train.eval_every={steps}",
           "train.eval_max_batches=1", "train.num_threads=1", "train.precision=fp32",
           "task.max_new_tokens=2", "data.max_length=64", "track.backends=jsonl",
           "track.progress=false"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "LMFORGE_PROGRESS": "0"}
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-3000:])
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench/results/fsdp_sft.json")
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--batch", type=int, default=4, help="global batch (rows per step)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_rows(root / "data")
        one, two = root / "one", root / "fsdp"
        seconds_one = finetune([sys.executable], one, root / "data", args.batch, args.steps,
                               args.model)
        seconds_two = finetune(LAUNCH, two, root / "data", args.batch // 2, args.steps,
                               args.model)
        summaries = [json.loads((run / "summary.json").read_text()) for run in (one, two)]
        weights = [load_file(str(run / "model" / "model.safetensors")) for run in (one, two)]
        shards = sorted(p.name for p in (two / "checkpoints" / f"step-{args.steps:08d}" /
                                         "optimizer_0").glob("*.distcp"))
    max_diff = max(float((weights[0][k] - weights[1][k]).abs().max()) for k in weights[0])
    result = {
        "machine": machine_info(),
        "command": " ".join(sys.argv),
        "model": args.model, "steps": args.steps, "global_batch": args.batch,
        "one_process": {"processes": summaries[0]["processes"],
                        "loss_before": summaries[0]["validation_before_metrics"]["loss"],
                        "loss_after": summaries[0]["validation_metrics"]["loss"],
                        "wall_seconds": round(seconds_one, 1)},
        "fsdp_two_processes": {"processes": summaries[1]["processes"],
                               "loss_before": summaries[1]["validation_before_metrics"]["loss"],
                               "loss_after": summaries[1]["validation_metrics"]["loss"],
                               "wall_seconds": round(seconds_two, 1),
                               "optimizer_shards": shards},
        "same_weight_names": sorted(weights[0]) == sorted(weights[1]),
        "max_abs_weight_diff": max_diff,
        "note": "wall times on a shared 2-core machine, inflated by other jobs",
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "machine"}, indent=2))


if __name__ == "__main__":
    main()
