"""The five-experience English stream (task-incremental) with every continual strategy.

SST-2 -> AG News -> TREC -> SST-5 -> the tweets of the main job, MiniLM-L6, from
`configs/stream5-continual.yaml`. Each row is ONE command (recorded in the results file):

    lmforge continual -c configs/stream5-continual.yaml strategy.name=... [overrides]

run in its own process; the script waits for each with os.wait4 to read the process's own
peak RSS. Rows may run side by side (--parallel N, each with train.num_threads=1) so the
whole table fits on a shared machine; the machine's load is recorded.

Usage: .venv/bin/python bench/continual_stream.py [--rows naive,joint,...] [--parallel 4]
Writes bench/results/continual_stream.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
       "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "LMFORGE_PROGRESS": "0"}
CONFIG = "configs/stream5-continual.yaml"
ROWS: dict[str, list[str]] = {
    "naive": ["strategy.name=naive"],
    "joint": ["strategy.name=joint"],
    "replay 1%": ["strategy.name=replay", "strategy.buffer_size=1%"],
    "replay 10%": ["strategy.name=replay", "strategy.buffer_size=10%"],
    "ewc": ["strategy.name=ewc", "strategy.fisher_batches=8"],
    # The penalty at lambda 1e5 stayed ~0.02 against a task loss ~0.6 (mini-batch Fisher
    # entries are small); a stronger pull:
    "ewc lambda 1e7": ["strategy.name=ewc", "strategy.fisher_batches=8",
                       "strategy.ewc_lambda=1e7"],
    "lwf": ["strategy.name=lwf"],
    "agem": ["strategy.name=agem", "strategy.buffer_size=10%"],
    # Adapters train few weights from zero: a larger step, as bench/peft_sst2.py uses.
    "lora per experience": ["strategy.name=lora", "train.lr=1e-3"],
}


def command(name: str, out: Path, config: str, extra: list[str]) -> list[str]:
    """The one command line of a row."""
    return [".venv/bin/lmforge", "continual", "-c", config, *ROWS[name], *extra,
            "track.progress=false", f"--output-dir={out}"]


def main() -> None:
    from machine import machine_info

    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", default=",".join(ROWS))
    parser.add_argument("--parallel", type=int, default=1)
    parser.add_argument("--config", default=CONFIG)
    parser.add_argument("--extra", default="", help="overrides added to every row")
    parser.add_argument("--runs", default="runs/bench-continual")
    parser.add_argument("--name", default="continual_stream")
    parser.add_argument("--merge", action="store_true",
                        help="keep the rows of an earlier results file")
    args = parser.parse_args()
    names = [r.strip() for r in args.rows.split(",") if r.strip()]
    extra = shlex.split(args.extra) + (["train.num_threads=1"] if args.parallel > 1 else [])
    info = machine_info()
    runs = ROOT / args.runs
    pending = list(names)
    active: dict[int, tuple[str, subprocess.Popen, float, Path]] = {}
    previous = ROOT / "bench" / "results" / f"{args.name}.json"
    # Rows measured by an earlier invocation are kept (a table may be filled in parts).
    results: dict[str, dict] = json.loads(previous.read_text())["rows"] \
        if previous.is_file() and args.merge else {}
    order = [r for r in ROWS if r in results or r in names]
    while pending or active:
        while pending and len(active) < args.parallel:
            name = pending.pop(0)
            out = runs / name.replace(" ", "-").replace("%", "pct")
            cmd = command(name, out, args.config, extra)
            out.parent.mkdir(parents=True, exist_ok=True)
            log = open(out.with_suffix(".log"), "w")  # noqa: SIM115 - closed with the process
            proc = subprocess.Popen(cmd, cwd=ROOT, env=ENV, stdout=log, stderr=log)
            active[proc.pid] = (name, proc, time.perf_counter(), out)
            print(f"started {name}: {shlex.join(cmd)}", flush=True)
        pid, status, usage = os.wait4(-1, 0)
        if pid not in active:
            continue
        name, proc, t0, out = active.pop(pid)
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - t0
        row: dict = {"command": shlex.join(command(name, out, args.config, extra)),
                     "exit_code": proc.returncode, "wall_seconds": round(wall, 1),
                     "peak_rss_mib": round(usage.ru_maxrss / 1024, 1)}
        summary_file = out / "summary.json"
        if proc.returncode == 0 and summary_file.is_file():
            s = json.loads(summary_file.read_text())
            keep = ("accuracy_matrix", "initial_accuracy", "average_accuracy", "bwt", "fwt",
                    "forgetting", "acc_triangle", "train_seconds", "stored_parameters",
                    "saved_model_bytes", "buffer_examples", "experiences", "train_examples",
                    "eval_examples", "precision", "agem_projected_steps", "agem_steps")
            row.update({k: s[k] for k in keep if k in s})
        results[name] = row
        print(f"finished {name}: exit {proc.returncode}, {wall:.0f} s, "
              f"ACC {row.get('average_accuracy')}", flush=True)
        write(args.name, info, results, order, args)
    print("load average at the end:", os.getloadavg())


def _fmt(value: object, digits: int = 3, sign: bool = False) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"
    return str(value)


def write(name: str, info: dict, results: dict, order: list[str], args: argparse.Namespace) -> None:
    """The raw JSON and the markdown table rendered from it."""
    info = {**info, "load_avg_1m_at_end": round(os.getloadavg()[0], 2)}
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    data = {"benchmark": name, "config": args.config, "parallel": args.parallel,
            "command": shlex.join([sys.executable, *sys.argv]), "machine": info,
            "rows": results}
    (out / f"{name}.json").write_text(json.dumps(data, indent=2))
    lines = ["| strategy | avg. accuracy | BWT | FWT | forgetting | wall time (s) | "
             "peak RSS (MiB) | parameters stored |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for row_name in order:
        r = results.get(row_name)
        if r is None:
            continue
        lines.append(f"| {row_name} | {_fmt(r.get('average_accuracy'))} | "
                     f"{_fmt(r.get('bwt'), sign=True)} | {_fmt(r.get('fwt'), sign=True)} | "
                     f"{_fmt(r.get('forgetting'))} | {r['wall_seconds']:.0f} | "
                     f"{r['peak_rss_mib']:.0f} | {r.get('stored_parameters', 'n/a'):,} |"
                     if "average_accuracy" in r else
                     f"| {row_name} | failed (exit {r['exit_code']}) | | | | | | |")
    (out / f"{name}.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
