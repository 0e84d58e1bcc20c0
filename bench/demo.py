"""The README's main job (``bash scripts/demo.sh``), run once and timed, its numbers recorded.

Runs ``scripts/demo.sh`` with a fresh run directory (``OUT``), times the whole script (wall
seconds, first-time install excluded when ``.venv`` is already set up), then reads what the run
wrote: ``summary.json`` (training examples, steps, best step, early stop, train seconds,
precision, dev and test headline metrics) and ``eval-test/summary.json`` (per-class support of
the held-out test split). The majority-class baseline is the accuracy of always answering the
test split's most frequent class. Everything goes to ``bench/results/NAME.json`` with the
machine (``bench/machine.py``); the README quotes the main job's numbers from that file.

If collecting fails after the run, ``--collect-only`` re-reads the same run directory (the wall
time is kept in ``OUT/demo_wall.json`` as soon as the script ends), so the demo is not re-run.

Usage: .venv/bin/python bench/demo.py [--out runs/bench-demo] [--name demo] [--collect-only]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def run_demo(out: Path) -> dict:
    """Run scripts/demo.sh into ``out``; the wall time and exit status, saved in ``out``."""
    env = {**os.environ, "OUT": str(out)}
    load = round(os.getloadavg()[0], 2)
    start = time.perf_counter()
    proc = subprocess.run(["bash", "scripts/demo.sh"], cwd=ROOT, env=env, check=False,
                          capture_output=True, text=True)
    wall = time.perf_counter() - start
    sys.stdout.write(proc.stdout)
    sys.stderr.write(proc.stderr[-4000:])
    record = {"wall_seconds": wall, "returncode": proc.returncode,
              "load_avg_1m_at_start": load, "load_avg_1m_at_end": round(os.getloadavg()[0], 2),
              "stdout_tail": proc.stdout[-3000:]}
    out.mkdir(parents=True, exist_ok=True)
    (out / "demo_wall.json").write_text(json.dumps(record, indent=2), encoding="utf-8")
    if proc.returncode:
        raise SystemExit(f"scripts/demo.sh failed (exit {proc.returncode})")
    return record


def collect(out: Path, timing: dict) -> dict:
    """The results file's content from the run directory and the timing record."""
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    test = json.loads((out / "eval-test" / "summary.json").read_text(encoding="utf-8"))
    metrics = test["metrics"]
    support = {name: row["support"] for name, row in metrics["per_class"].items()}
    majority = max(support, key=support.get)
    keep = ("train_examples", "steps", "best_step", "stopped_early", "train_seconds",
            "precision", "examples_per_second", "parameters")
    return {
        "main_job": {k: summary.get(k) for k in keep},
        "validation_metrics": summary.get("validation_metrics"),
        "test_metrics": summary.get("test_metrics"),
        "test_split": {"examples": metrics["num_examples"], "support": support,
                       "majority_class": majority,
                       "majority_class_accuracy": support[majority] / metrics["num_examples"]},
        "script_wall_seconds": timing["wall_seconds"],
        "load_avg_1m_at_end": timing.get("load_avg_1m_at_end"),
        "stdout_tail": timing.get("stdout_tail"),
    }


def main() -> None:
    """Run (or re-collect) the demo and write bench/results/NAME.json."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/bench-demo")
    parser.add_argument("--name", default="demo")
    parser.add_argument("--collect-only", action="store_true",
                        help="re-read OUT (and its demo_wall.json) without running the demo")
    args = parser.parse_args()

    from bench.machine import machine_info

    out = (ROOT / args.out).resolve()
    machine = machine_info()
    if args.collect_only:
        timing = json.loads((out / "demo_wall.json").read_text(encoding="utf-8"))
    else:
        timing = run_demo(out)
    machine["load_avg_1m_at_start"] = timing.get("load_avg_1m_at_start",
                                                 machine.get("load_avg_1m_at_start"))
    results = {"command": "python bench/demo.py " + " ".join(sys.argv[1:]),
               "demo_command": "bash scripts/demo.sh", "run_dir": args.out,
               "machine": machine, **collect(out, timing)}
    path = ROOT / "bench" / "results" / f"{args.name}.json"
    path.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(json.dumps({k: v for k, v in results.items() if k != "stdout_tail"}, indent=2))


if __name__ == "__main__":
    main()
