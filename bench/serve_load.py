"""Load test of `lmforge serve` against a plain `transformers.pipeline` FastAPI server.

Targets (each a separate server process on a free loopback port, started and stopped here):

- lmforge serve, backend=torch precision=fp32
- lmforge serve, backend=onnx on EXPORT/onnx and on EXPORT/onnx-int8
  (make them with `lmforge export --output-dir EXPORT RUN quantize=int8`)
- lmforge serve with workers=2 (one process per core, threads=1 each) on the best backend
- peer: a minimal FastAPI app around `pipeline("text-classification", model=RUN/model)`,
  one request per forward pass, a sync endpoint (FastAPI runs it in its thread pool): what a
  user writes first.

Each target is driven by 1, 8, 32, 100 and 300 closed-loop clients (`serve_client.py`: raw
asyncio HTTP/1.1 keep-alive connections; a 503 is retried after its Retry-After) sending
SST-2 dev sentences, one per request, for at most --requests requests or --seconds seconds
per cell (after --warmup seconds of the same load, untimed). With --retry at-once the
clients send again as soon as a 503 arrives (clients that do not back off; issue 27), and
--concurrency 32 100 300 1000 adds the flood levels. A cell records req/s of 200 answers,
p50 / p99 / max latency, errors split by status, and for lmforge the mean batch size and
event-loop lag from /metrics. With --rounds R every level and target is visited R times in
turn, --seconds / R at a time (each slice after its own --warmup), and a cell merges its
slices (200s over their summed time, percentiles over all their latencies; each slice's
req/s is kept): a drift of the machine's speed during the run then lands on every cell
alike instead of on whichever level ran at the time.

With --pin (where `taskset` exists) the matrix runs again with the load generator on core 0
and the server on core 1. --accuracy sends the 872 dev sentences through every target once.
--soak S runs the best lmforge target at 32 clients for S seconds, sampling its resident
memory. --faults runs bench/serve_faults.py. --all does all of it (about 40 minutes on 2
cores): the one command behind every serving table of BENCHMARKS.md.

Results: bench/results/serve_load.{json,md} (matrix, pinned matrix, accuracy),
serve_soak.{json,md}, serve_faults.{json,md}.

Usage:
    .venv/bin/python bench/serve_load.py --run runs/sst2 --export exports/sst2 --all
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import machine_info  # noqa: E402
from serve_client import encode, run, run_clients, run_httpx  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "sst2"
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
       "TOKENIZERS_PARALLELISM": "false"}

PEER_APP = '''
import sys
import torch
from fastapi import FastAPI
from pydantic import BaseModel
from transformers import pipeline
import uvicorn

model_dir, port, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
if threads:
    torch.set_num_threads(threads)
clf = pipeline("text-classification", model=model_dir, device=-1)
app = FastAPI()

class Body(BaseModel):
    text: str

@app.get("/health")
def health():
    return {"status": "ok"}

@app.post("/classify")
def classify(body: Body):
    return clf(body.text)[0]

uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")
'''


def stop(proc: subprocess.Popen[str]) -> int:
    """SIGTERM a server process, wait up to 90 s for its drain, kill it after that."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
    return proc.returncode


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def dev_set() -> tuple[list[str], list[str]]:
    """SST-2 dev sentences and their gold labels."""
    path = DATA / "dev.tsv"
    if not path.is_file():
        sys.exit(f"skipped: {path} not found (the shared datasets are not beside this repo)")
    lines = path.read_text(encoding="utf-8").splitlines()
    header = lines[0].split("\t")
    rows = [line.split("\t") for line in lines[1:] if line.strip()]
    return ([r[header.index("sentence")] for r in rows],
            [r[header.index("label")] for r in rows])


def targets(args: argparse.Namespace, work: Path) -> list[dict[str, Any]]:
    threads = args.threads
    serve = [sys.executable, "-m", "lmforge", "serve", "log_level=warning",
             f"max_batch_size={args.max_batch_size}", f"max_wait_ms={args.max_wait_ms}",
             f"max_queue={args.max_queue}"]
    if args.latency_budget_ms is not None:
        serve.append(f"latency_budget_ms={args.latency_budget_ms}")
    serve += args.serve_option
    out = [{"name": "lmforge torch fp32", "cmd": serve + [args.run, "precision=fp32",
                                                          f"threads={threads}"]}]
    best = out[0]
    if args.export:
        for sub, name in (("onnx", "lmforge onnx fp32"), ("onnx-int8", "lmforge onnx int8")):
            folder = Path(args.export) / sub
            if (folder / "model.onnx").is_file():
                out.append({"name": name, "cmd": serve + [str(folder), "backend=onnx",
                                                          f"threads={threads}"]})
                best = out[-1]
            else:
                print(f"note: {folder} has no model.onnx; {name} skipped", file=sys.stderr)
    workers = [c for c in best["cmd"] if not c.startswith("threads=")]
    out.append({"name": f"{best['name']} workers=2", "cmd": workers + ["workers=2",
                                                                         "threads=1"]})
    peer = work / "peer_server.py"
    peer.write_text(PEER_APP)
    model_dir = Path(args.run) / "model" if (Path(args.run) / "model").is_dir() else args.run
    out.append({"name": "peer: pipeline per request", "peer": True,
                "cmd": [sys.executable, str(peer), str(model_dir), "{port}", str(threads)]})
    for target in out:
        target.setdefault("peer", False)
    if args.only:
        out = [t for t in out if any(t["name"] == o[1:] if o.startswith("=") else o in t["name"]
                                     for o in args.only)]
    return out


@contextlib.contextmanager
def server(target: dict[str, Any], core: int | None, timeout: float
           ) -> Iterator[tuple[int, subprocess.Popen[str]]]:
    """Start a target on a free port (pinned to ``core``), wait until it answers, stop it."""
    port = free_port()
    cmd = [c.replace("{port}", str(port)) for c in target["cmd"]]
    if not target["peer"]:
        cmd.append(f"port={port}")
    if core is not None:
        cmd = ["taskset", "-c", str(core)] + cmd
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    try:
        deadline = time.monotonic() + timeout
        path = "/health" if target["peer"] else "/ready"
        while get(port, path)[0] != 200:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode}: "
                                   f"{proc.communicate()[0][-1500:]}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"not ready after {timeout} s")
            time.sleep(0.5)
        yield port, proc
    finally:
        stop(proc)


def get(port: int, path: str) -> tuple[int, str]:
    """A GET on loopback: (status, body), status 0 when nothing answers."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close"
                         "\r\n\r\n".encode())
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
    except OSError:
        return 0, ""
    head, _, body = data.partition(b"\r\n\r\n")
    try:
        return int(head.split(b" ", 2)[1]), body.decode("utf-8", "replace")
    except (IndexError, ValueError):
        return 0, ""


def scrape(port: int) -> dict[str, float]:
    """Sums and counts of lmforge's batch-size and loop-lag histograms, refusals."""
    _, text = get(port, "/metrics")
    out: dict[str, float] = {}
    for name in ("lmforge_batch_size_sum", "lmforge_batch_size_count",
                 "lmforge_event_loop_lag_seconds_sum", "lmforge_event_loop_lag_seconds_count"):
        match = re.search(rf"^{name} (\S+)$", text, re.M)
        out[name] = float(match.group(1)) if match else 0.0
    out["rejected"] = sum(float(v) for v in re.findall(r"^lmforge_rejected_total\{.*\} (\S+)$",
                                                       text, re.M))
    return out


def drive_cell(port: int, target: dict[str, Any], texts: list[str], concurrency: int,
               args: argparse.Namespace, seconds: float) -> dict[str, Any]:
    """One timed slice of ``seconds`` at ``concurrency`` (after ``--warmup`` seconds of the
    same load), with every 200's latency kept for :func:`merge_slices`."""
    # With workers=2 each scrape reaches one of two processes: their metrics do not add up.
    single = not target["peer"] and "workers" not in target["name"]
    before = scrape(port) if single else {}
    cap = 0.0 if args.retry == "at-once" else 2.0  # longest Retry-After honoured
    if args.client == "httpx":
        bodies = [{"text": t} for t in texts]
        if args.warmup:
            run(run_httpx(port, "/classify", bodies, concurrency, 10**9, args.warmup, cap))
            before = scrape(port) if single else {}
        row = run(run_httpx(port, "/classify", bodies, concurrency, args.requests,
                            seconds, cap, keep_latencies=True))
    else:
        requests = [encode("/classify", {"text": t}) for t in texts]
        run(run_clients(port, requests[:8], min(concurrency, 8), 8, 30))  # warm the pool
        if args.warmup:  # the same load, untimed: queues and throughput estimates settle
            run(run_clients(port, requests, concurrency, 10**9, args.warmup,
                            retry_after_cap=cap))
            before = scrape(port) if single else {}
        row = run(run_clients(port, requests, concurrency, args.requests, seconds,
                              retry_after_cap=cap, keep_latencies=True))
    row["retry"] = args.retry
    if single:
        after = scrape(port)
        batches = after["lmforge_batch_size_count"] - before["lmforge_batch_size_count"]
        inputs = after["lmforge_batch_size_sum"] - before["lmforge_batch_size_sum"]
        ticks = (after["lmforge_event_loop_lag_seconds_count"]
                 - before["lmforge_event_loop_lag_seconds_count"])
        lag = (after["lmforge_event_loop_lag_seconds_sum"]
               - before["lmforge_event_loop_lag_seconds_sum"])
        # One worker's view (with workers=2 each process has its own /metrics).
        row["mean_batch"] = round(inputs / batches, 1) if batches else None
        row["loop_lag_ms"] = round(1000 * lag / ticks, 1) if ticks else None
    return row


def merge_slices(slices: list[dict[str, Any]]) -> dict[str, Any]:
    """One cell from its ``--rounds`` slices: 200s per second over their summed time, latency
    percentiles over all their 200s, errors summed; mean batch and loop lag weighted by the
    slices' 200s; each slice's req/s kept (``slice_req_per_s``) to show the spread."""
    latencies = sorted(x for s in slices for x in s["latencies"])
    seconds = sum(s["seconds"] for s in slices)

    def pct(q: float) -> float | None:
        return round(1000 * latencies[min(len(latencies) - 1, int(q * len(latencies)))], 1) \
            if latencies else None

    by_status: dict[str, int] = {}
    for s in slices:
        for code, n in s["errors_by_status"].items():
            by_status[code] = by_status.get(code, 0) + n
    row = {k: v for k, v in slices[0].items() if k not in ("latencies", "slice_req_per_s")}
    row.update({"ok": len(latencies), "seconds": round(seconds, 2),
                "req_per_s": round(len(latencies) / seconds, 1) if seconds else 0.0,
                "p50_ms": pct(0.50), "p99_ms": pct(0.99), "max_ms": pct(1.0),
                "errors": sum(by_status.values()), "errors_by_status": by_status,
                "slices": len(slices), "slice_req_per_s": [s["req_per_s"] for s in slices]})
    for key in ("mean_batch", "loop_lag_ms"):
        weighted = [(s[key], s["ok"]) for s in slices if s.get(key) is not None and s["ok"]]
        total = sum(w for _, w in weighted)
        row[key] = round(sum(v * w for v, w in weighted) / total, 1) if total else None
    return row


def accuracy(port: int, target: dict[str, Any], texts: list[str], gold: list[str]
             ) -> dict[str, Any]:
    requests = [encode("/classify", {"text": t}) for t in texts]
    row = run(run_clients(port, requests, 8, len(texts), 600, keep=True))
    right = 0
    for index, body in row.pop("answers").items():
        answer = json.loads(body)
        label = answer["label"] if target["peer"] else answer["results"][0]["label"]
        right += label == gold[index]
    return {"target": target["name"], "answered": row["ok"], "errors": row["errors"],
            "accuracy": round(100 * right / len(texts), 2)}


def matrix(args: argparse.Namespace, work: Path, texts: list[str], gold: list[str],
           pinned: bool) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Every target at every concurrency, interleaved: all servers are up at once (idle ones
    cost nothing) and each concurrency level visits every target in turn, so a change in
    the machine's load over time hits all targets alike."""
    rows, acc = [], []
    original = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    if pinned:
        os.sched_setaffinity(0, {0})  # the load generator on core 0, the servers on core 1
    chosen = [t for t in targets(args, work)
              if not (pinned and "workers=2" in t["name"])]  # 2 workers on 1 core: nothing new
    try:
        with contextlib.ExitStack() as stack:
            up = []
            for target in chosen:
                try:
                    port, _ = stack.enter_context(server(target, 1 if pinned else None,
                                                         args.startup_timeout))
                    up.append((target, port))
                except (RuntimeError, TimeoutError) as err:
                    rows.append({"target": target["name"], "pinned": pinned,
                                 "failed": str(err)})
                    print(f"{target['name']}: {err}", file=sys.stderr)
            if args.accuracy and not pinned:
                for target, port in up:
                    acc.append(accuracy(port, target, texts, gold))
                    print(f"accuracy {target['name']}: {acc[-1]}", flush=True)
            # --rounds R: every level and target visited R times in turn, R slices of
            # seconds / R each, so a drift of the machine's speed over the run (other
            # tenants) is spread over all cells instead of landing on whichever ran then.
            slices: dict[tuple[str, int], list[dict[str, Any]]] = {}
            for round_ in range(args.rounds):
                for concurrency in args.concurrency:
                    for target, port in up:
                        part = drive_cell(port, target, texts, concurrency, args,
                                          args.seconds / args.rounds)
                        slices.setdefault((target["name"], concurrency), []).append(part)
                        print(f"{target['name']:<34} {'pinned ' if pinned else ''}"
                              f"round {round_ + 1}/{args.rounds} c={concurrency:<3} "
                              f"{part['req_per_s']:7.1f} req/s  p50 {part['p50_ms'] or 0:7.0f}"
                              f" ms  p99 {part['p99_ms'] or 0:7.0f} ms  errors "
                              f"{part['errors_by_status']}  batch {part.get('mean_batch')}",
                              flush=True)
            for (name, _), parts in slices.items():
                rows.append({"target": name, "pinned": pinned, **merge_slices(parts)})
    finally:
        if original is not None:
            os.sched_setaffinity(0, original)
    order = {t["name"]: i for i, t in enumerate(chosen)}
    rows.sort(key=lambda r: (order.get(r["target"], -1), r.get("concurrency", 0)))
    return rows, acc


def soak(args: argparse.Namespace, work: Path, texts: list[str]) -> dict[str, Any]:
    """The best lmforge target at 32 clients for --soak seconds, sampling its RSS."""
    import psutil

    target = [t for t in targets(args, work) if not t["peer"] and "workers" not in t["name"]][-1]
    requests = [encode("/classify", {"text": t}) for t in texts]
    samples: list[tuple[float, float]] = []
    with server(target, None, args.startup_timeout) as (port, proc):
        process = psutil.Process(proc.pid)

        async def sample(stop: asyncio.Event) -> None:
            start = time.perf_counter()
            while not stop.is_set():
                samples.append((round(time.perf_counter() - start, 1),
                                round(process.memory_info().rss / 2**20, 1)))
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), 10)

        async def both() -> dict[str, Any]:
            stop = asyncio.Event()
            sampler = asyncio.create_task(sample(stop))
            row = await run_clients(port, requests, 32, 10**9, args.soak)
            stop.set()
            await sampler
            return row

        row = run(both())
    warm = [rss for t, rss in samples if t >= min(60.0, args.soak / 4)] or [samples[-1][1]]
    return {"target": target["name"], "seconds": args.soak, "clients": 32, **row,
            "rss_mib_first": samples[0][1], "rss_mib_after_warmup": warm[0],
            "rss_mib_max": max(r for _, r in samples), "rss_mib_end": samples[-1][1],
            "rss_growth_after_warmup_mib": round(samples[-1][1] - warm[0], 1),
            "rss_samples": samples}


def table(rows: list[dict[str, Any]]) -> list[str]:
    lines = ["| target | clients | req/s | p50 ms | p99 ms | max ms | 200s | errors by status "
             "| mean batch | loop lag ms |", "|---|---:|---:|---:|---:|---:|---:|---|---:|---:|"]
    for r in rows:
        if "failed" in r:
            lines.append(f"| {r['target']} | - | failed: {r['failed'][:80]} | | | | | | | |")
            continue
        errors = ", ".join(f"{k}: {v}" for k, v in r["errors_by_status"].items()) or "0"
        lines.append(f"| {r['target']} | {r['concurrency']} | {r['req_per_s']:.1f} | "
                     f"{r['p50_ms'] or 0:.0f} | {r['p99_ms'] or 0:.0f} | {r['max_ms'] or 0:.0f} "
                     f"| {r['ok']} | {errors} | {r.get('mean_batch') or ''} | "
                     f"{r.get('loop_lag_ms') if r.get('loop_lag_ms') is not None else ''} |")
    return lines


def summarize(rows: list[dict[str, Any]], peer: str = "peer: pipeline per request"
              ) -> dict[str, Any]:
    """The goals' numbers from a matrix: ratios to the peer, overload vs best lower load."""
    cells = {(r["target"], r["concurrency"]): r for r in rows if "failed" not in r}
    out: dict[str, Any] = {"vs_peer": {}, "overload": {}, "goals": {}}
    for (target, concurrency), row in cells.items():
        base = cells.get((peer, concurrency))
        if target != peer and base and base["req_per_s"]:
            out["vs_peer"][f"{target} / peer at {concurrency} clients"] = round(
                row["req_per_s"] / base["req_per_s"], 2)
    for target in {t for t, _ in cells}:
        levels = sorted(c for t, c in cells if t == target)
        best = max(cells[(target, c)]["req_per_s"] for c in levels)
        for high in (c for c in levels if c >= 300 and best):
            # Issue 27's goal: >= 0.9 of the best goodput at any concurrency.
            out["goals"][f"{target} at {high} clients / best at any"] = round(
                cells[(target, high)]["req_per_s"] / best, 2)
        for high in (c for c in levels if c >= 100):
            lower = [cells[(target, c)]["req_per_s"] for c in levels if c < 100]
            if lower and max(lower):
                out["overload"][f"{target} at {high} clients / best below 100"] = round(
                    cells[(target, high)]["req_per_s"] / max(lower), 2)
    return out


def render_matrix(data: dict[str, Any]) -> list[str]:
    """The markdown of a serve_load results file."""
    machine = data["machine"]
    retry = {"at-once": ", clients retry 503s at once"}.get(data.get("retry", "honour"), "")
    md = [f"# lmforge serve vs a pipeline-per-request server ({data['client']} client"
          f"{retry})", "",
          f"{machine['cpu']}, {machine['cores']} cores, load average "
          f"{machine['load_avg_1m_at_start']} at start, "
          f"{machine.get('load_avg_1m_at_end', '?')} at end; threads {data['threads']}, "
          f"max_batch_size {data['max_batch_size']}, max_wait_ms {data['max_wait_ms']}, "
          f"max_queue {data['max_queue']}; command: `{data['command']}`", "",
          "## Server and load generator sharing all cores", "", *table(data["rows"])]
    if data.get("pinned"):
        md += ["", "## Load generator on core 0, servers on core 1 (taskset)", "",
               *table(data["pinned"])]
    if data.get("accuracy"):
        md += ["", "## SST-2 dev accuracy through each server", "",
               "| target | answered | errors | accuracy % |", "|---|---:|---:|---:|"]
        md += [f"| {a['target']} | {a['answered']} | {a['errors']} | {a['accuracy']:.2f} |"
               for a in data["accuracy"]]
    for key, title in (("summary", "shared cores"), ("summary_pinned", "pinned")):
        if data.get(key):
            md += ["", f"## Ratios ({title})", "", "| ratio | value |", "|---|---:|"]
            md += [f"| {k} | {v:.2f} |" for part in ("vs_peer", "overload", "goals")
                   for k, v in sorted(data[key].get(part, {}).items())]
    return md


def write(out: Path, name: str, data: dict[str, Any], md: list[str]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(data, indent=2) + "\n")
    (out / f"{name}.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", required=True, help="fine-tuned classifier run directory")
    parser.add_argument("--export", help="lmforge export folder (with onnx/, onnx-int8/)")
    parser.add_argument("--requests", type=int, default=3000, help="requests per cell (cap)")
    parser.add_argument("--seconds", type=float, default=15.0, help="time per cell (cap)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32, 100, 300])
    parser.add_argument("--threads", type=int, default=1, help="torch / ORT threads per "
                        "server process (both lmforge and the peer)")
    parser.add_argument("--max-batch-size", type=int, default=32)
    parser.add_argument("--max-wait-ms", type=float, default=5.0)
    parser.add_argument("--max-queue", type=int, default=128)
    parser.add_argument("--latency-budget-ms", type=float, help="lmforge's latency_budget_ms "
                        "(default: the server's)")
    parser.add_argument("--client", choices=["raw", "httpx"], default="raw")
    parser.add_argument("--retry", choices=["honour", "at-once"], default="honour",
                        help="after a 503: wait its Retry-After (at most 2 s), or send again "
                             "at once (clients that do not back off)")
    parser.add_argument("--warmup", type=float, default=0.0, help="seconds of untimed load "
                        "at each cell's concurrency before it is measured")
    parser.add_argument("--pin", action="store_true", help="also run the matrix pinned")
    parser.add_argument("--accuracy", action="store_true", help="dev accuracy per target")
    parser.add_argument("--soak", type=float, default=0.0, help="soak seconds (0: none)")
    parser.add_argument("--faults", action="store_true", help="run bench/serve_faults.py")
    parser.add_argument("--all", action="store_true", help="--pin --accuracy --soak 600 "
                        "--faults")
    parser.add_argument("--skip-matrix", action="store_true")
    parser.add_argument("--rerender", action="store_true", help="recompute the ratios and "
                        "the markdown of an existing results file, run nothing")
    parser.add_argument("--startup-timeout", type=float, default=300.0)
    parser.add_argument("--serve-option", action="append", default=[], metavar="KEY=VALUE",
                        help="another `lmforge serve` option for the lmforge targets "
                             "(repeatable), e.g. refusals_per_s=100")
    parser.add_argument("--rounds", type=int, default=1, help="visit every level and target "
                        "this many times in turn, seconds / rounds each (spreads drift)")
    parser.add_argument("--only", nargs="*", help="run targets whose name contains these "
                        "(a leading = asks for the exact name)")
    parser.add_argument("--name", default="serve_load", help="results file name")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = parser.parse_args()
    if args.all:
        args.pin, args.accuracy, args.faults = True, True, True
        args.soak = args.soak or 600.0
    if args.rerender:
        path = Path(args.out) / f"{args.name}.json"
        data = json.loads(path.read_text())
        for row in data["rows"] + (data.get("pinned") or []):
            if "workers" in row["target"]:  # see drive_cell: not one process's metrics
                row["mean_batch"] = row["loop_lag_ms"] = None
        data["summary"] = summarize(data["rows"])
        data["summary_pinned"] = summarize(data["pinned"]) if data.get("pinned") else None
        write(Path(args.out), args.name, data, render_matrix(data))
        return
    if args.pin and not (shutil.which("taskset") and (os.cpu_count() or 1) >= 2):
        print("note: no taskset or a single core; --pin skipped", file=sys.stderr)
        args.pin = False
    texts, gold = dev_set()
    out = Path(args.out)
    meta = {"machine": machine_info(), "command": " ".join(["python"] + sys.argv),
            "threads": args.threads, "max_batch_size": args.max_batch_size,
            "max_wait_ms": args.max_wait_ms, "max_queue": args.max_queue,
            "client": args.client, "requests_per_cell": args.requests,
            "seconds_per_cell": args.seconds, "rounds": args.rounds, "retry": args.retry,
            "latency_budget_ms": args.latency_budget_ms, "serve_options": args.serve_option,
            "warmup_s": args.warmup}
    with tempfile.TemporaryDirectory(prefix="lmforge-serve-bench-") as tmp:
        work = Path(tmp)
        if not args.skip_matrix:
            rows, acc = matrix(args, work, texts, gold, pinned=False)
            pinned = matrix(args, work, texts, gold, pinned=True)[0] if args.pin else []
            meta["machine"]["load_avg_1m_at_end"] = round(os.getloadavg()[0], 2)
            data = {**meta, "rows": rows, "pinned": pinned, "accuracy": acc,
                    "summary": summarize(rows),
                    "summary_pinned": summarize(pinned) if pinned else None}
            write(out, args.name, data, render_matrix(data))
        if args.soak:
            result = soak(args, work, texts)
            md = [f"# Soak: {result['target']}, 32 clients, {args.soak:.0f} s", "",
                  "| req/s | 200s | errors | p50 ms | p99 ms | RSS MiB after warm-up | "
                  "RSS MiB max | RSS MiB end | growth MiB |",
                  "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
                  f"| {result['req_per_s']:.1f} | {result['ok']} | {result['errors']} | "
                  f"{result['p50_ms']:.0f} | {result['p99_ms']:.0f} | "
                  f"{result['rss_mib_after_warmup']:.1f} | {result['rss_mib_max']:.1f} | "
                  f"{result['rss_mib_end']:.1f} | {result['rss_growth_after_warmup_mib']:.1f} |"]
            write(out, "serve_soak", {**meta, "soak": result}, md)
    if args.faults:
        subprocess.run([sys.executable, str(ROOT / "bench" / "serve_faults.py"), "--run",
                        args.run, "--out", args.out], env=ENV, check=True)


if __name__ == "__main__":
    main()
