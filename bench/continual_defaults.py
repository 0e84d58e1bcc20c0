"""Every continual strategy at its defaults on a two-experience stream (issue 23, item B).

SST-2 -> AG News, task-incremental, 2,000 training rows per experience, 1 epoch, MiniLM-L6,
the default train settings (those of ``lmforge finetune``: lr 5e-5, a full fine-tuning rate),
`configs/sst2-agnews-continual.yaml`. Each row names only its strategy (replay and A-GEM also
their memory, which has no default); rows marked "old default" set back what the defaults
were before issue 23, for comparison. Each row is ONE command, recorded in the results file:

    lmforge continual -c configs/sst2-agnews-continual.yaml strategy.name=... [options]

run in its own process, one at a time; the script waits for each with os.wait4 to read the
process's own peak RSS, and records the machine's load (this machine is shared).

Usage: .venv/bin/python bench/continual_defaults.py [--rows naive,ewc,...] [--merge]
Writes bench/results/continual_defaults.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
       "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "LMFORGE_PROGRESS": "0"}
CONFIG = "configs/sst2-agnews-continual.yaml"
ROWS: dict[str, list[str]] = {
    "naive": ["strategy.name=naive"],
    "joint": ["strategy.name=joint"],
    "replay 10%": ["strategy.name=replay", "strategy.buffer_size=10%"],
    "ewc": ["strategy.name=ewc"],
    "lwf": ["strategy.name=lwf"],
    "agem 10%": ["strategy.name=agem", "strategy.buffer_size=10%"],
    "lora": ["strategy.name=lora"],
    # Targets of EWC's calibrated lambda (the default is 3 nats):
    "ewc auto penalty 1": ["strategy.name=ewc", "strategy.ewc_auto_penalty=1"],
    "ewc auto penalty 3": ["strategy.name=ewc", "strategy.ewc_auto_penalty=3"],
    "ewc auto penalty 10": ["strategy.name=ewc", "strategy.ewc_auto_penalty=10"],
    # What the defaults were before issue 23:
    "replay 10% batch (old default)": ["strategy.name=replay", "strategy.buffer_size=10%",
                                       "strategy.replay_mode=batch"],
    "ewc lambda 1e5 (old default)": ["strategy.name=ewc", "strategy.ewc_lambda=1e5"],
    "lora at train.lr (old default)": ["strategy.name=lora", "strategy.lora_lr=0"],
}
KEEP = ("accuracy_matrix", "initial_accuracy", "average_accuracy", "bwt", "fwt", "forgetting",
        "train_seconds", "wall_seconds", "stored_parameters", "buffer_examples", "replay_mode",
        "experiences", "train_examples", "eval_examples", "precision", "ewc_lambda",
        "ewc_penalty_share", "agem_projected_steps", "agem_steps")


def command(name: str, out: Path, config: str) -> list[str]:
    """The one command line of a row."""
    return [".venv/bin/lmforge", "continual", "-c", config, *ROWS[name],
            "track.progress=false", f"--output-dir={out}"]


def run_row(name: str, out: Path, config: str) -> dict:
    """Run one row's command; its results, times and peak RSS."""
    cmd = command(name, out, config)
    shutil.rmtree(out, ignore_errors=True)  # a fresh run: continual refuses a used folder
    out.parent.mkdir(parents=True, exist_ok=True)
    load0 = os.getloadavg()[0]
    with open(out.with_suffix(".log"), "w") as log:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=ROOT, env=ENV, stdout=log, stderr=log)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
    row: dict = {"command": shlex.join(cmd), "exit_code": os.waitstatus_to_exitcode(status),
                 "process_wall_seconds": round(wall, 1),
                 "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
                 "load_avg_1m": [round(load0, 2), round(os.getloadavg()[0], 2)]}
    summary = out / "summary.json"
    if row["exit_code"] == 0 and summary.is_file():
        s = json.loads(summary.read_text())
        row.update({k: s[k] for k in KEEP if k in s})
        train = yaml.safe_load((out / "config.yaml").read_text())["train"]
        row["train"] = {k: train[k] for k in ("lr", "epochs", "batch_size", "adam_beta2",
                                              "adam_eps", "group_by_length", "precision")}
        with open(out.with_suffix(".log")) as log:
            row["warnings"] = [x.strip() for x in log if "WARNING" in x]
    return row


def _fmt(value: object, sign: bool = False) -> str:
    if value is None:
        return "n/a"
    return f"{value:+.3f}" if sign else f"{value:.3f}"


def table(results: dict, order: list[str]) -> str:
    """The markdown table of the rows (accuracies after each experience, ACC, BWT)."""
    lines = ["| strategy | SST-2 after SST-2 | SST-2 at the end | AG News at the end | "
             "avg. accuracy | BWT | train time (s) |", "|---|---:|---:|---:|---:|---:|---:|"]
    for name in order:
        r = results[name]
        if "accuracy_matrix" not in r:
            lines.append(f"| {name} | failed (exit {r['exit_code']}) | | | | | |")
            continue
        m = r["accuracy_matrix"]
        after = m[0][0] if len(m) > 1 else None
        lines.append(f"| {name} | {_fmt(after)} | {_fmt(m[-1][0])} | {_fmt(m[-1][1])} | "
                     f"{_fmt(r['average_accuracy'])} | {_fmt(r.get('bwt'), sign=True)} | "
                     f"{r['train_seconds']:.0f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    from machine import machine_info

    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", default=",".join(ROWS))
    parser.add_argument("--config", default=CONFIG)
    parser.add_argument("--runs", default="runs/bench-continual-defaults")
    parser.add_argument("--name", default="continual_defaults")
    parser.add_argument("--merge", action="store_true",
                        help="keep the rows of an earlier results file")
    args = parser.parse_args()
    names = [r.strip() for r in args.rows.split(",") if r.strip()]
    unknown = [n for n in names if n not in ROWS]
    if unknown:
        sys.exit(f"unknown rows {unknown}; choose from {list(ROWS)}")
    out_dir = ROOT / "bench" / "results"
    previous = out_dir / f"{args.name}.json"
    results: dict[str, dict] = json.loads(previous.read_text())["rows"] \
        if previous.is_file() and args.merge else {}
    info = machine_info()
    for name in names:
        slug = name.replace(" ", "-").replace("%", "pct").replace("(", "").replace(")", "")
        out = ROOT / args.runs / slug
        print(f"started {name}: {shlex.join(command(name, out, args.config))}", flush=True)
        results[name] = run_row(name, out, args.config)
        r = results[name]
        print(f"finished {name}: exit {r['exit_code']}, {r['process_wall_seconds']:.0f} s, "
              f"R {r.get('accuracy_matrix')}", flush=True)
        order = [n for n in ROWS if n in results]
        data = {"benchmark": args.name, "config": args.config,
                "command": shlex.join([sys.executable, *sys.argv]),
                "machine": {**info, "load_avg_1m_at_end": round(os.getloadavg()[0], 2)},
                "rows": {n: results[n] for n in order}}
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / f"{args.name}.json").write_text(json.dumps(data, indent=2))
        (out_dir / f"{args.name}.md").write_text(table(results, order))


if __name__ == "__main__":
    main()
