"""Pipeline caching: the main-job pipeline run three times through the CLI.

1. fresh (every stage runs); 2. nothing changed (every stage should be reused, in seconds);
3. one fine-tuning key changed (``stages.finetune.train.lr``): finetune and the stages that
read its model rerun, nothing else. Each run is a separate ``lmforge pipeline`` process, timed
end to end (Python start-up included). No external peer: this measures lmforge's own cache.
The three runs import lmforge from a snapshot of the committed tree (``git archive HEAD``), so
that editing the working tree meanwhile (which changes the code version in the cache key, as
it should) does not touch the measurement.

Usage: .venv/bin/python bench/pipeline_cache.py [--set KEY=VALUE ...]
  (--set adds overrides to all three runs, e.g. a smaller training sample on a busy machine)
Writes bench/results/pipeline_cache.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def run(out: Path, extra: list[str], snapshot: Path) -> dict:
    """One `lmforge pipeline` process; returns wall seconds and the stages it ran / reused."""
    command = [str(ROOT / ".venv" / "bin" / "lmforge"), "pipeline", "-c",
               "configs/pipelines/main.yaml", "--output-dir", str(out), *extra]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "PYTHONPATH": str(snapshot / "src")}
    cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    if done.returncode != 0:
        raise SystemExit(f"pipeline failed:\n{done.stderr[-3000:]}")
    summary = json.loads((out / "summary.json").read_text())
    return {"command": " ".join(command[1:]), "wall_seconds": round(seconds, 1),
            "cpu_seconds": round(cpu, 1),
            "ran": summary["ran"], "cached": summary["cached"],
            "stage_seconds": {s["stage"]: s.get("seconds") for s in summary["stages"]}}


def main() -> None:
    """Three runs, then the results files."""
    from bench.machine import machine_info

    parser = argparse.ArgumentParser()
    parser.add_argument("--set", nargs="*", default=[], help="overrides for every run")
    parser.add_argument("--append-cached", metavar="WORK",
                        help="run the last configuration once more on WORK (a finished run of "
                             "this script) and append the row, with CPU seconds")
    args = parser.parse_args()
    results_dir = ROOT / "bench" / "results"
    if args.append_cached:
        work = Path(args.append_cached)
        results = json.loads((results_dir / "pipeline_cache.json").read_text())
        row = run(work / "main-job", [*args.set, "stages.finetune.train.lr=5e-5"],
                  work / "snapshot")
        row["run"] = "4. nothing changed since 3"
        results["runs"].append(row)
        results["append_command"] = " ".join(sys.argv)
        results["machine_append"] = machine_info()
        write(results, results_dir)
        return
    work = Path(tempfile.mkdtemp(prefix="lmforge-pipe-"))
    out, snapshot = work / "main-job", work / "snapshot"
    snapshot.mkdir()
    archive = subprocess.run(["git", "archive", "HEAD"], cwd=ROOT, check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(snapshot)], input=archive, check=True)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, check=True,
                            capture_output=True, text=True).stdout.strip()
    results = {"command": " ".join(sys.argv), "commit": commit, "machine_before": machine_info(),
               "runs": []}
    for label, extra in (("1. fresh", []), ("2. nothing changed", []),
                         ("3. stages.finetune.train.lr=5e-5", ["stages.finetune.train.lr=5e-5"])):
        row = run(out, [*args.set, *extra], snapshot)
        row["run"] = label
        results["runs"].append(row)
        print(row, flush=True)
    results["machine"] = machine_info()
    write(results, results_dir)


def write(results: dict, results_dir: Path) -> None:
    """pipeline_cache.json and its markdown table."""
    (results_dir / "pipeline_cache.json").write_text(json.dumps(results, indent=2))
    lines = ["| run | wall s | CPU s | stages run | stages reused |", "|---|---:|---:|---|---|"]
    for row in results["runs"]:
        lines.append(f"| {row['run']} | {row['wall_seconds']} | {row.get('cpu_seconds', '—')} "
                     f"| {', '.join(row['ran']) or '—'} | {', '.join(row['cached']) or '—'} |")
    (results_dir / "pipeline_cache.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
