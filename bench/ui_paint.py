"""`lmforge ui`: first paint of the Runs page with 200 runs, and what watching a training costs.

1. First paint. 200 run folders are written under a fresh root, shaped like `lmforge
   finetune`'s (resolved ``config.yaml``, ``summary.json``, ``lineage.json`` with a parent,
   ``metrics.jsonl`` of 500 logged steps). `python -m lmforge ui ROOT` serves them; Chromium
   (Playwright, the Debian browser) opens the page in a fresh context 5 times. Measured per
   load, from navigation start: first contentful paint, and the moment the table holds all
   200 rows (the page sets ``body[data-ready]`` after drawing it). The issue's goal: under 2 s.
2. Idle cost. The same tiny fine-tuning (a 4-layer BERT of width 256, ``log_every=1``) runs
   alone and with the UI serving and a Chromium page watching it (the Train tab polls the
   run's log and curve every second), alternately, ``PAIRS`` times each. Measured: the median
   step time of each run (differences of the logged ``time``), and the UI server's CPU time
   over the watched run. The issue's goal: step time within 3 %.

Results: bench/results/ui_paint.json. Usage:
    .venv/bin/python bench/ui_paint.py [--pairs 2] [--train-steps 120]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import torch
import yaml
from transformers import BertConfig, BertModel

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import machine_info  # noqa: E402

from lmforge.config import to_dict  # noqa: E402
from lmforge.finetuning.settings import FinetuneJob  # noqa: E402
from lmforge.ui import jobs  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.browser import browser_path  # noqa: E402
from tests.finetuning.conftest import word_tokenizer  # noqa: E402

RUNS, STEPS, LOADS, PAIRS, TRAIN_STEPS = 200, 500, 5, 2, 120
WORDS = ["good", "great", "bad", "awful", "the", "film", "was", "a", "story", "very", "and",
         "really", "long", "short", "plot", "actors"]


def write_runs(root: Path, count: int) -> None:
    """``count`` finished fine-tuning run folders (files only, as lmforge writes them)."""
    rng = random.Random(0)
    for i in range(count):
        run = root / f"finetune-{i:03d}"
        run.mkdir(parents=True)
        job = FinetuneJob()
        job.train.lr = rng.choice([1e-5, 3e-5, 5e-5, 1e-4])
        job.output_dir = str(run)
        (run / "config.yaml").write_text(yaml.safe_dump(to_dict(job), sort_keys=False))
        with open(run / "metrics.jsonl", "w") as fh:
            for step in range(1, STEPS + 1):
                fh.write(json.dumps({"step": step, "train_loss": 2 / step ** 0.5 + rng.random()
                                     / 10, "lr": job.train.lr, "time": 1.7e9 + step}) + "\n")
        accuracy = round(0.7 + rng.random() / 5, 4)
        (run / "summary.json").write_text(json.dumps({
            "command": "finetune", "run_dir": str(run), "task": "classification",
            "validation_metrics": {"accuracy": accuracy, "f1_macro": accuracy - 0.02}}))
        parent = f"finetune-{i - 1:03d}" if i else "pretrain-0"
        (run / "lineage.json").write_text(json.dumps({
            "run_id": run.name, "command": "finetune", "config_hash": "ab" * 32,
            "parents": [{"key": "model.pretrained", "path": str(root / parent),
                         "command": "finetune"}],
            "started": f"2026-01-{1 + i % 28:02d}T{i % 24:02d}:00:00", "seconds": 60.0}))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_ui(root: Path, *options: str) -> tuple[subprocess.Popen[bytes], str]:
    """``python -m lmforge ui ROOT port=... OPTIONS``, waited for until it answers."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "lmforge", "ui", "--root", str(root),
                             f"port={port}", *options], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            urllib.request.urlopen(url + "/api/info", timeout=5).read()
            return proc, url
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("lmforge ui did not start") from None
            time.sleep(0.2)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def browser_cpu_seconds() -> float:
    """CPU seconds of every Chromium process running now (the watching page's cost)."""
    total = 0.0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if b"chrom" in (proc / "cmdline").read_bytes().split(b"\0")[0]:
                total += cpu_seconds(int(proc.name))
        except (OSError, ValueError):
            continue
    return total


def paint(browser: Any, url: str) -> dict[str, float]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.goto(url)
    page.wait_for_selector("body[data-ready='1']")
    got = page.evaluate("""() => ({
        fcp: performance.getEntriesByName('first-contentful-paint')[0].startTime,
        rows: document.querySelectorAll('#runs tbody tr').length,
        ready: Number(document.body.dataset.readyAt || 0)})""")
    context.close()
    return got


def train_inputs(folder: Path) -> tuple[Path, Path]:
    """A 4-layer BERT of width 256 and a 512-row classification csv."""
    tok = word_tokenizer(sorted(WORDS))
    encoder = folder / "encoder"
    tok.save_pretrained(encoder)
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(tok), hidden_size=256, num_hidden_layers=4,
                         num_attention_heads=4, intermediate_size=1024)).save_pretrained(encoder)
    rng = random.Random(0)
    rows = ["text,label"] + [f"{' '.join(rng.choices(WORDS, k=24))},{rng.choice('ab')}"
                             for _ in range(512)]
    data = folder / "data"
    data.mkdir()
    (data / "train.csv").write_text("\n".join(rows) + "\n")
    return encoder, data


def train_argv(name: str, encoder: Path, data: Path, steps: int) -> list[str]:
    return ["finetune", f"--output-dir={name}", f"data.path={data}",
            f"model.pretrained={encoder}", f"train.max_steps={steps}",
            "train.batch_size=32", "train.log_every=1",
            "data.validation_ratio=0.0", "track.progress=false", "track.backends=[jsonl]",
            "track.report=false"]


def step_time(run: Path) -> float:
    """Median seconds between consecutive logged steps (the first 10 steps skipped)."""
    times = [json.loads(line)["time"] for line in (run / "metrics.jsonl").open()
             if '"train_loss"' in line]
    gaps = [b - a for a, b in zip(times[10:], times[11:], strict=False)]
    return statistics.median(gaps)


def wait_done(run: Path) -> None:
    while jobs.job_status(run) == "running":
        time.sleep(0.5)
    if not (run / "summary.json").is_file():
        raise RuntimeError(f"{run} failed: {jobs.read_log(run)[-2000:]}")


def main() -> None:
    from playwright.sync_api import sync_playwright

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=PAIRS, help="trainings alone / watched")
    parser.add_argument("--train-steps", type=int, default=TRAIN_STEPS)
    args = parser.parse_args()
    result: dict[str, Any] = {"runs": RUNS, "steps_per_run": STEPS, "loads": LOADS}
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=browser_path(), args=["--no-sandbox"])
        root = Path(tmp) / "runs"
        write_runs(root, RUNS)
        proc, url = start_ui(root)
        try:
            started = time.perf_counter()
            urllib.request.urlopen(url + "/api/runs").read()
            result["api_runs_seconds_first"] = round(time.perf_counter() - started, 3)
            loads = [paint(browser, url) for _ in range(LOADS)]
        finally:
            proc.terminate()
            proc.wait()
        assert all(load["rows"] == RUNS for load in loads), loads
        result["first_contentful_paint_ms"] = [round(x["fcp"]) for x in loads]
        result["table_ready_ms"] = [round(x["ready"]) for x in loads]
        result["fcp_median_ms"] = round(statistics.median(x["fcp"] for x in loads))
        result["table_ready_median_ms"] = round(statistics.median(x["ready"] for x in loads))
        result["table_ready_max_ms"] = round(max(x["ready"] for x in loads))
        result["under_2_s"] = result["table_ready_max_ms"] < 2000

        train_root = Path(tmp) / "train"
        encoder, data = train_inputs(Path(tmp))
        alone: list[float] = []
        watched: list[float] = []
        ui_cpu: list[float] = []
        page_cpu: list[float] = []
        for pair in range(args.pairs):
            run = train_root / f"alone-{pair}"
            jobs.start_job(run, train_argv(run.name, encoder, data, args.train_steps))
            wait_done(run)
            alone.append(step_time(run))
            # The model and data sit beside the root: the form may name them only when the
            # UI is told so (data_roots).
            proc, url = start_ui(train_root, f"data_roots=[{tmp}]")
            try:
                page = browser.new_page()
                page.goto(url + "/#train")
                page.wait_for_selector("body[data-ready='1']")
                name = f"watched-{pair}"
                request = urllib.request.Request(
                    url + "/api/start", method="POST", data=json.dumps({
                        "command": "finetune", "name": name, "values": dict(
                            a.split("=", 1) for a in train_argv(name, encoder, data,
                                                            args.train_steps)[2:])
                    }).encode(), headers={"Content-Type": "application/json",
                                          "X-Lmforge-UI": "1"})
                urllib.request.urlopen(request).read()
                page.evaluate(f"() => watchRun({json.dumps(name)})")
                cpu0, wall0 = cpu_seconds(proc.pid), time.monotonic()
                page_cpu0 = browser_cpu_seconds()
                wait_done(train_root / name)
                wall = time.monotonic() - wall0
                ui_cpu.append((cpu_seconds(proc.pid) - cpu0) / wall)
                page_cpu.append((browser_cpu_seconds() - page_cpu0) / wall)
                page.close()
            finally:
                proc.terminate()
                proc.wait()
            watched.append(step_time(train_root / name))
        browser.close()
    result.update({
        "train_steps": args.train_steps, "pairs": args.pairs,
        "load_avg_1m_at_end": round(os.getloadavg()[0], 2),
        "step_seconds_alone": [round(s, 5) for s in alone],
        "step_seconds_watched": [round(s, 5) for s in watched],
        "step_seconds_alone_median": round(statistics.median(alone), 5),
        "step_seconds_watched_median": round(statistics.median(watched), 5),
        "ui_server_cpu_fraction": [round(c, 4) for c in ui_cpu],
        "ui_server_cpu_fraction_mean": round(statistics.mean(ui_cpu), 4),
        "browser_cpu_fraction": [round(c, 4) for c in page_cpu],
        "browser_cpu_fraction_mean": round(statistics.mean(page_cpu), 4),
    })
    result["step_time_change"] = round(result["step_seconds_watched_median"]
                                       / result["step_seconds_alone_median"] - 1, 4)
    result["within_3_pct"] = abs(result["step_time_change"]) <= 0.03
    command = "python bench/ui_paint.py" + (
        f" --pairs {args.pairs} --train-steps {args.train_steps}"
        if (args.pairs, args.train_steps) != (PAIRS, TRAIN_STEPS) else "")
    result.update({"command": command,
                   "created": time.strftime("%Y-%m-%d %H:%M"), "machine": machine_info()})
    out = ROOT / "bench" / "results" / "ui_paint.json"
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps({k: v for k, v in result.items() if k != "machine"}, indent=2))


if __name__ == "__main__":
    main()
