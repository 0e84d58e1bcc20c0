"""Load test of `lmforge serve` against a plain `transformers.pipeline` FastAPI server.

Targets (each a separate server process on a free loopback port, started and stopped here):

- lmforge serve, backend=torch precision=fp32
- lmforge serve, backend=torch precision=bf16 (emulated, so slow, on a CPU without bf16)
- lmforge serve, backend=onnx on EXPORT/onnx and on EXPORT/onnx-int8
  (make them with `lmforge export --output-dir EXPORT RUN format=onnx quantize=int8`)
- peer: a minimal FastAPI app around `pipeline("text-classification", model=RUN/model)`,
  one request per forward pass, a sync endpoint (FastAPI runs it in its thread pool): what a
  user writes first.

Each target is driven by 1, 8 and 32 concurrent clients (asyncio + httpx) sending real SST-2
dev sentences, one per request, for at most --requests requests or --max-seconds seconds per
cell. Throughput (req/s) and p50 / p99 latency go to bench/results/serve_load.{json,md}.

Usage:
    .venv/bin/python bench/serve_load.py --run runs/sst2 --export exports/sst2 \
        [--requests 500] [--concurrency 1 8 32] [--threads 2] [--max-seconds 60]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def sentences(limit: int | None = None) -> list[str]:
    """SST-2 dev sentences (the `sentence` column of dev.tsv)."""
    path = DATA / "dev.tsv"
    if not path.is_file():
        sys.exit(f"skipped: {path} not found (the shared datasets are not beside this repo)")
    lines = path.read_text(encoding="utf-8").splitlines()
    column = lines[0].split("\t").index("sentence")
    texts = [line.split("\t")[column] for line in lines[1:] if line.strip()]
    return texts[:limit] if limit else texts


def targets(args: argparse.Namespace, work: Path) -> list[dict[str, Any]]:
    serve = [sys.executable, "-m", "lmforge", "serve", "log_level=warning",
             f"max_batch_size={args.max_batch_size}", f"max_wait_ms={args.max_wait_ms}"]
    if args.threads:
        serve.append(f"threads={args.threads}")
    out = [{"name": "lmforge torch fp32", "cmd": serve + [args.run, "precision=fp32"],
            "ready": "/ready"},
           {"name": "lmforge torch bf16", "cmd": serve + [args.run, "precision=bf16"],
            "ready": "/ready"}]
    if args.export:
        for sub, name in (("onnx", "lmforge onnx fp32"), ("onnx-int8", "lmforge onnx int8")):
            folder = Path(args.export) / sub
            if (folder / "model.onnx").is_file():
                out.append({"name": name, "cmd": serve + [str(folder), "backend=onnx"],
                            "ready": "/ready"})
            else:
                print(f"note: {folder} has no model.onnx; {name} skipped", file=sys.stderr)
    peer = work / "peer_server.py"
    peer.write_text(PEER_APP)
    model_dir = Path(args.run) / "model" if (Path(args.run) / "model").is_dir() else args.run
    out.append({"name": "peer: pipeline per request",
                "cmd": [sys.executable, str(peer), str(model_dir), "{port}",
                        str(args.threads or 0)], "ready": "/health"})
    if args.only:
        out = [t for t in out if any(o in t["name"] for o in args.only)]
    return out


async def wait_ready(url: str, proc: subprocess.Popen[str], timeout: float) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=2) as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode}")
            try:
                if (await client.get(url)).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.25)
    raise TimeoutError(f"{url} not ready after {timeout} s")


async def drive(base: str, texts: list[str], concurrency: int, requests: int,
                max_seconds: float) -> dict[str, Any]:
    """`concurrency` clients share `requests` requests; stops early after `max_seconds`."""
    import httpx

    latencies: list[float] = []
    errors = 0
    next_index = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, timeout=120, limits=limits) as client:
        for text in texts[:min(5, len(texts))]:  # warm the connection pool and the model
            await client.post("/classify", json={"text": text})
        start = time.perf_counter()
        stop_at = start + max_seconds

        async def worker() -> None:
            nonlocal next_index, errors
            while next_index < requests and time.perf_counter() < stop_at:
                text = texts[next_index % len(texts)]
                next_index += 1
                t0 = time.perf_counter()
                try:
                    response = await client.post("/classify", json={"text": text})
                    ok = response.status_code == 200
                except httpx.HTTPError:
                    ok = False
                if ok:
                    latencies.append(time.perf_counter() - t0)
                else:
                    errors += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - start
    latencies.sort()

    def pct(q: float) -> float | None:
        if not latencies:
            return None
        return 1000 * latencies[min(len(latencies) - 1, int(q * len(latencies)))]

    return {"concurrency": concurrency, "requests": len(latencies), "errors": errors,
            "seconds": wall, "req_per_s": len(latencies) / wall if wall else 0.0,
            "p50_ms": pct(0.50), "p99_ms": pct(0.99)}


def run_target(target: dict[str, Any], texts: list[str], args: argparse.Namespace
               ) -> list[dict[str, Any]]:
    port = free_port()
    cmd = [c.replace("{port}", str(port)) for c in target["cmd"]]
    if "lmforge" in cmd:
        cmd.append(f"port={port}")
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    base = f"http://127.0.0.1:{port}"
    rows = []
    try:
        asyncio.run(wait_ready(base + target["ready"], proc, args.startup_timeout))
        for concurrency in args.concurrency:
            row = asyncio.run(drive(base, texts, concurrency, args.requests, args.max_seconds))
            row["target"] = target["name"]
            rows.append(row)
            print(f"{target['name']:<28} c={concurrency:<3} {row['req_per_s']:8.1f} req/s  "
                  f"p50 {row['p50_ms'] or 0:8.1f} ms  p99 {row['p99_ms'] or 0:8.1f} ms  "
                  f"errors {row['errors']}", flush=True)
    except (RuntimeError, TimeoutError) as err:
        rows.append({"target": target["name"], "error": str(err)})
        print(f"{target['name']}: {err}", file=sys.stderr)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            output, _ = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            output, _ = proc.communicate()
        if rows and "error" in rows[-1]:
            print(output[-2000:], file=sys.stderr)
    return rows


def markdown(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    lines = ["# lmforge serve vs a pipeline-per-request server (SST-2 dev sentences)", "",
             ", ".join(f"{k}: {v}" for k, v in meta.items()), "",
             "| target | clients | requests | errors | req/s | p50 ms | p99 ms |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['target']} | - | - | - | failed: {r['error']} | | |")
            continue
        lines.append(f"| {r['target']} | {r['concurrency']} | {r['requests']} | "
                     f"{r['errors']} | {r['req_per_s']:.1f} | {r['p50_ms'] or 0:.1f} | "
                     f"{r['p99_ms'] or 0:.1f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", required=True, help="fine-tuned classifier run directory")
    parser.add_argument("--export", help="lmforge export folder (with onnx/, onnx-int8/)")
    parser.add_argument("--requests", type=int, default=500, help="requests per cell")
    parser.add_argument("--max-seconds", type=float, default=60.0, help="time cap per cell")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--threads", type=int, default=None, help="torch / ORT threads")
    parser.add_argument("--max-batch-size", type=int, default=32)
    parser.add_argument("--max-wait-ms", type=float, default=5.0)
    parser.add_argument("--startup-timeout", type=float, default=300.0)
    parser.add_argument("--only", nargs="*", help="run targets whose name contains these")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = parser.parse_args()
    import torch

    from lmforge.engine.precision import cpu_supports_bf16

    texts = sentences()
    meta = {"cpus": os.cpu_count(), "threads": args.threads or torch.get_num_threads(),
            "native_bf16": cpu_supports_bf16(), "torch": torch.__version__,
            "max_batch_size": args.max_batch_size, "max_wait_ms": args.max_wait_ms,
            "requests_per_cell": args.requests, "max_seconds_per_cell": args.max_seconds}
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="lmforge-serve-bench-") as work:
        for target in targets(args, Path(work)):
            rows.extend(run_target(target, texts, args))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "serve_load.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    table = markdown(rows, meta)
    (out / "serve_load.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
