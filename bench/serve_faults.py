"""Fault cases against a real `lmforge serve` process on loopback, each with its result.

1. slow clients: 20 connections send a request body one byte every 0.5 s while 8 normal
   clients run; the slow ones must get 408 within body_timeout_s and the normal ones keep
   their throughput and latency (compared with the same 8 clients alone);
2. malformed and truncated requests: each case's status, and whether the body is JSON;
   bodies cut off mid-way (the client closes) must leave the server serving;
3. 10,000 idle keep-alive connections opened at once, then closed: a request still
   answered while they are open, the server's memory and file descriptors after;
4. clients that leave: 40 requests abandoned while a queue is waiting, counted by
   /metrics as dropped, never computed;
5. SIGTERM under full load (64 clients): requests admitted before the signal finish,
   new ones get 503, the process exits 0 within drain_timeout_s.

Results: bench/results/serve_faults.{json,md}. Usage:
    .venv/bin/python bench/serve_faults.py --run runs/sst2
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import machine_info  # noqa: E402
from serve_client import HOST, encode, read_response, run, run_clients  # noqa: E402
from serve_load import ENV, dev_set, free_port, get, stop, write  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def start(args: argparse.Namespace, *options: str) -> tuple[int, subprocess.Popen[str]]:
    port = free_port()
    cmd = [sys.executable, "-m", "lmforge", "serve", args.run, f"port={port}",
           "log_level=warning", "precision=fp32", f"threads={args.threads}",
           "body_timeout_s=5", *options]
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    deadline = time.monotonic() + 300
    while get(port, "/ready")[0] != 200:
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"server did not start: {proc.communicate()[0][-1500:]}")
        time.sleep(0.5)
    return port, proc


def metric(port: int, name: str) -> float:
    text = get(port, "/metrics")[1]
    return sum(float(v) for v in re.findall(rf"^{re.escape(name)}(?:{{.*}})? (\S+)$", text,
                                            re.M))


def fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd")) if os.path.isdir(f"/proc/{pid}/fd") else -1


def rss_mib(pid: int) -> float:
    import psutil

    return round(psutil.Process(pid).memory_info().rss / 2**20, 1)


async def slow_client(port: int, period: float, length: int = 40) -> dict[str, Any]:
    reader, writer = await asyncio.open_connection(HOST, port)
    t0 = time.perf_counter()
    writer.write(f"POST /classify HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json"
                 f"\r\nContent-Length: {length}\r\n\r\n".encode())
    body = b'{"text": "' + b"a" * (length - 12) + b'"}'
    reply = asyncio.ensure_future(read_response(reader))
    for byte in body:
        if reply.done():
            break
        try:
            writer.write(bytes([byte]))
            await writer.drain()
        except OSError:
            break
        await asyncio.wait([reply], timeout=period)
    try:
        status, _, data = await asyncio.wait_for(reply, 30)
    except (asyncio.TimeoutError, asyncio.IncompleteReadError, OSError):
        status, data = 0, b""
    writer.close()
    return {"status": status, "seconds": round(time.perf_counter() - t0, 2),
            "json": data.startswith(b"{")}


def case_slow(port: int, requests: list[bytes]) -> dict[str, Any]:
    alone = run(run_clients(port, requests, 8, 10**9, 12))

    async def both() -> tuple[list[dict[str, Any]], dict[str, Any]]:
        slow = asyncio.gather(*(slow_client(port, 0.5) for _ in range(20)))
        normal = await run_clients(port, requests, 8, 10**9, 12)
        return await slow, normal

    slow, normal = run(both())
    return {"slow_clients": 20, "slow_statuses": sorted({s["status"] for s in slow}),
            "slow_all_json": all(s["json"] for s in slow),
            "slow_max_seconds": max(s["seconds"] for s in slow),
            "normal_alone_req_per_s": alone["req_per_s"], "normal_alone_p99_ms": alone["p99_ms"],
            "normal_with_slow_req_per_s": normal["req_per_s"],
            "normal_with_slow_p99_ms": normal["p99_ms"], "normal_errors": normal["errors"]}


async def raw_exchange(port: int, data: bytes, close_early: bool = False
                       ) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection(HOST, port)
    writer.write(data)
    await writer.drain()
    if close_early:
        writer.close()
        return 0, b""
    try:
        status, _, body = await asyncio.wait_for(read_response(reader), 30)
    except (asyncio.TimeoutError, asyncio.IncompleteReadError, OSError):
        status, body = 0, b""
    writer.close()
    return status, body


def post(body: bytes, content_type: str = "application/json", length: int | None = None
         ) -> bytes:
    return (f"POST /classify HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body) if length is None else length}\r\n\r\n"
            ).encode() + body


def case_malformed(port: int) -> dict[str, Any]:
    cases = {
        "truncated JSON": post(b'{"text": "a good fi'),
        "not JSON": post(b"hello"),
        "empty body": post(b""),
        "invalid UTF-8": post(b'{"text": "\xff\xfe"}'),
        "JSON array": post(b'["a", "b"]'),
        "wrong type": post(b'{"text": 5}'),
        "unknown field": post(b'{"txt": "a"}'),
        "nested 100000 deep": post(b"[" * 100000 + b"]" * 100000),
        "huge number": post(b'{"text": "a", "top_k": 1e400}'),
        "text/plain body": post(b'{"text": "a"}', "text/plain"),
        "oversize Content-Length": post(b'{"text": "a"}', length=10**9),
    }
    results: dict[str, Any] = {}
    for name, data in cases.items():
        status, body = run(raw_exchange(port, data))
        try:
            detail = json.loads(body)["detail"]
            one_line = isinstance(detail, str) and "\n" not in detail
        except (ValueError, KeyError, TypeError):
            one_line = False
        results[name] = {"status": status, "json_one_line_detail": one_line}
    # Bodies cut short: the client closes before sending what Content-Length promised.
    for _ in range(20):
        run(raw_exchange(port, post(b'{"text": "a', length=100), close_early=True))
    results["20 bodies cut short, then a normal request"] = {
        "status": run(raw_exchange(port, post(b'{"text": "fine"}')))[0]}
    return results


def case_idle(port: int, pid: int, count: int) -> dict[str, Any]:
    before_fds, before_rss = fds(pid), rss_mib(pid)

    async def scenario() -> dict[str, Any]:
        conns = []
        t0 = time.perf_counter()
        for start in range(0, count, 500):
            batch = await asyncio.gather(*(asyncio.open_connection(HOST, port)
                                           for _ in range(start, min(count, start + 500))),
                                         return_exceptions=True)
            conns += [c for c in batch if not isinstance(c, BaseException)]
        opened = time.perf_counter() - t0
        await asyncio.sleep(1)
        t1 = time.perf_counter()
        status, _ = await raw_exchange(port, post(b'{"text": "still there?"}'))
        answer_ms = 1000 * (time.perf_counter() - t1)
        held_fds, held_rss = fds(pid), rss_mib(pid)
        for _, writer in conns:
            writer.close()
        await asyncio.sleep(3)
        return {"opened": len(conns), "open_seconds": round(opened, 1),
                "request_while_open_status": status,
                "request_while_open_ms": round(answer_ms, 1), "server_fds_while_open": held_fds,
                "server_rss_mib_while_open": held_rss}

    result = run(scenario())
    return {"connections": count, "server_fds_before": before_fds,
            "server_rss_mib_before": before_rss, **result,
            "server_fds_after_close": fds(pid), "server_rss_mib_after_close": rss_mib(pid)}


def case_leave(port: int, requests: list[bytes]) -> dict[str, Any]:
    dropped0 = metric(port, "lmforge_dropped_total")
    computed0 = metric(port, "lmforge_batch_size_sum")

    async def scenario() -> dict[str, Any]:
        load = asyncio.ensure_future(run_clients(port, requests, 64, 10**9, 8))
        await asyncio.sleep(3)  # a queue has formed
        await asyncio.gather(*(raw_exchange(port, post(b'{"text": "never mind"}'),
                                            close_early=True) for _ in range(40)))
        return await load

    row = run(scenario())
    answered = row["ok"] + sum(v for k, v in row["errors_by_status"].items() if k != "conn")
    computed = metric(port, "lmforge_batch_size_sum") - computed0
    return {"abandoned": 40, "dropped_cancelled": metric(port, "lmforge_dropped_total")
            - dropped0, "inputs_computed": computed, "requests_answered": answered,
            "computed_for_gone_clients": computed - answered}


def case_sigterm(args: argparse.Namespace, requests: list[bytes]) -> dict[str, Any]:
    port, proc = start(args, "drain_timeout_s=20")
    outcomes: list[tuple[float, float, str]] = []  # (sent, answered, status)

    async def client(stop_at: float) -> None:
        reader = writer = None
        i = 0
        while time.perf_counter() < stop_at:
            sent = time.perf_counter()
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection(HOST, port)
                writer.write(requests[i % len(requests)])
                i += 1
                status, headers, _ = await read_response(reader)  # type: ignore[arg-type]
                outcomes.append((sent, time.perf_counter(), str(status)))
                if headers.get(b"connection", b"").lower() == b"close":
                    writer.close()
                    writer = None
            except (OSError, asyncio.IncompleteReadError):
                outcomes.append((sent, time.perf_counter(), "conn"))
                if writer is not None:
                    writer.close()
                writer = None
                await asyncio.sleep(0.05)

    async def scenario() -> tuple[float, float]:
        stop_at = time.perf_counter() + 14
        clients = asyncio.gather(*(client(stop_at) for _ in range(64)))
        await asyncio.sleep(6)
        signalled = time.perf_counter()
        proc.send_signal(signal.SIGTERM)
        exit_wait = asyncio.get_running_loop().run_in_executor(None, proc.wait, 60)
        await clients
        await exit_wait
        return signalled, exited_at[0]

    exited_at = [float("nan")]
    watcher = threading.Thread(target=lambda: (proc.wait(), exited_at.__setitem__(
        0, time.perf_counter())), daemon=True)
    watcher.start()
    signalled, exit_time = run(scenario())
    output = proc.stdout.read() if proc.stdout else ""
    exited = exit_time - signalled
    before = [o for o in outcomes if o[0] < signalled]
    after = [o for o in outcomes if o[0] >= signalled]
    count = lambda rows, s: sum(1 for o in rows if o[2] == s)  # noqa: E731
    return {"clients": 64, "drain_timeout_s": 20, "exit_code": proc.returncode,
            "exit_seconds_after_sigterm": round(exited, 1) if proc.returncode is not None
            else None,
            "sent_before_sigterm": len(before),
            "sent_before_sigterm_200": count(before, "200"),
            "sent_before_sigterm_not_200": len(before) - count(before, "200"),
            "sent_after_sigterm_200": count(after, "200"),
            "sent_after_sigterm_503": count(after, "503"),
            "sent_after_sigterm_conn_refused_or_closed": count(after, "conn"),
            "summary_printed": "done:" in output}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", required=True, help="fine-tuned classifier run directory")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--idle", type=int, default=10000, help="idle connections")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = parser.parse_args()
    texts, _ = dev_set()
    requests = [encode("/classify", {"text": t}) for t in texts]
    results: dict[str, Any] = {}
    port, proc = start(args)
    try:
        for name, fn in (("slow clients", lambda: case_slow(port, requests)),
                         ("malformed requests", lambda: case_malformed(port)),
                         ("idle connections", lambda: case_idle(port, proc.pid, args.idle)),
                         ("clients that leave", lambda: case_leave(port, requests))):
            results[name] = fn()
            print(name, json.dumps(results[name]), flush=True)
    finally:
        stop(proc)
    results["SIGTERM under load"] = case_sigterm(args, requests)
    print("SIGTERM under load", json.dumps(results["SIGTERM under load"]), flush=True)
    md = ["# lmforge serve under faults (bench/serve_faults.py)", ""]
    for name, result in results.items():
        md += [f"## {name}", "", "| measure | value |", "|---|---|"]
        md += [f"| {k} | {v} |" for k, v in result.items()]
        md.append("")
    write(Path(args.out), "serve_faults", {"machine": machine_info(),
                                           "command": " ".join(["python"] + sys.argv),
                                           "results": results}, md)


if __name__ == "__main__":
    main()
