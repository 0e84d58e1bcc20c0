"""CPU seconds a `lmforge serve` process spends per 503 it answers under overload.

The server runs in this process (uvicorn in a thread) with its model held on an event, so
the queue stays full and every further request is refused; a load generator in a child
process (``serve_client.py``: raw asyncio HTTP/1.1, keep-alive) retries each 503 at once.
This process's CPU time (user + system, from ``getrusage``) over the run, divided by the
503s answered, is the cost of one refusal, request parsing in uvicorn included.

Variants (each a fresh app on the same loaded model):

- ``before``: refusals come from the queue bound inside the route, after routing, body
  parsing and validation (the path of every 503 before issue 27): the load shedder is
  disabled (``max_in_flight`` huge, no latency budget);
- ``after``: the :class:`~lmforge.serving.shedding.LoadShedder` refuses before the body is
  read (``max_in_flight`` reached), ``refusals_per_s=None`` (no pacing) so the refusals
  come as fast as the clients send them, as before;
- ``after, paced``: the default ``refusals_per_s`` on: the cost per refusal and, more to
  the point, how many refusals per second retry-at-once clients can make the server
  answer.

Usage:
    .venv/bin/python bench/serve_reject_cost.py --run runs/sst2-minilm
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import machine_info  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CLIENT = '''
import json, sys
sys.path.insert(0, sys.argv[1])
from serve_client import encode, run, run_clients
port, clients, seconds = int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
request = encode("/classify", {"text": "a gripping, beautifully shot film"})
print(json.dumps(run(run_clients(port, [request], clients, 10**9, seconds,
                                 retry_after_cap=0.0))))
'''


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def held_predictor(predictor: Any) -> tuple[Any, threading.Event]:
    """A copy of ``predictor`` whose forward passes wait on the returned event."""
    import dataclasses

    gate = threading.Event()
    held = dataclasses.replace(predictor)
    run = predictor.predict_batch

    def predict_batch(payloads: list[Any]) -> list[Any]:
        gate.wait(600)
        return run(payloads)

    held.predict_batch = predict_batch  # type: ignore[method-assign]
    return held, gate


def measure(predictor: Any, options: dict[str, Any], clients: int, seconds: float
            ) -> dict[str, Any]:
    """Serve with ``options``, fill the queue, flood it; CPU per 503."""
    import socket

    import uvicorn

    from lmforge.serving import ServeJob, create_app
    from lmforge.serving.protocol import IdleTimeoutProtocol

    held, release = held_predictor(predictor)
    job = ServeJob(max_batch_size=1, max_wait_ms=0, max_queue=4, **options)
    app = create_app(held, job, api_keys=[])
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = int(sock.getsockname()[1])
    server = uvicorn.Server(uvicorn.Config(app, log_level="error", http=IdleTimeoutProtocol,
                                           timeout_keep_alive=60))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started or app.state.status.status != "ready":
        time.sleep(0.05)
    # Fill the batcher: one held batch and a full queue; everything after is refused.
    fillers = [socket.create_connection(("127.0.0.1", port)) for _ in range(5)]
    body = b'{"text": "fill"}'
    for conn in fillers:
        conn.sendall(b"POST /classify HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                     b"\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
    while app.state.batcher.depth < 4:
        time.sleep(0.01)
    child = subprocess.Popen([sys.executable, "-c", CLIENT, str(ROOT / "bench"), str(port),
                              str(clients), str(seconds)], stdout=subprocess.PIPE, text=True)
    time.sleep(1.0)  # connections made; the generator's ramp-up is not measured
    cpu0, wall0, refused0 = cpu_seconds(), time.perf_counter(), _refused(app)
    out, _ = child.communicate()
    cpu, wall, refused = cpu_seconds() - cpu0, time.perf_counter() - wall0, \
        _refused(app) - refused0
    release.set()
    server.should_exit = True
    thread.join(60)
    for conn in fillers:
        conn.close()
    tally = json.loads(out)
    return {"options": options, "clients": clients, "seconds": round(wall, 2),
            "refusals": int(refused), "refusals_per_s": round(refused / wall, 1),
            "server_cpu_s": round(cpu, 3), "server_cores_busy": round(cpu / wall, 2),
            "cpu_us_per_refusal": round(1e6 * cpu / refused, 1) if refused else None,
            "client_503s": tally["errors_by_status"].get("503", 0)}


def _refused(app: Any) -> float:
    text = app.state.metrics.render()[0].decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("lmforge_rejected_total{"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", required=True, help="fine-tuned classifier run directory")
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    parser.add_argument("--name", default="serve_reject_cost")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    from lmforge.predictor import load_predictor

    torch.set_num_threads(1)
    predictor = load_predictor(args.run, "torch", "fp32", 1)
    variants = {
        "before": {"max_in_flight": 10**6, "latency_budget_ms": None,
                   "refusals_per_s": None},
        "after": {"max_in_flight": 5, "refusals_per_s": None},
        "after, paced": {"max_in_flight": 5},
    }
    load0 = os.getloadavg()
    rows = {name: measure(predictor, options, args.clients, args.seconds)
            for name, options in variants.items()}
    data = {"machine": machine_info(), "run": args.run, "clients": args.clients,
            "seconds": args.seconds, "load_before": [round(x, 2) for x in load0],
            "load_after": [round(x, 2) for x in os.getloadavg()], "variants": rows}
    md = [f"# CPU per refusal ({args.clients} clients retrying at once, {args.seconds:g} s)",
          "", "| variant | refusals/s | server cores busy | CPU µs per refusal |",
          "|---|---:|---:|---:|"]
    md += [f"| {name} | {r['refusals_per_s']} | {r['server_cores_busy']} | "
           f"{r['cpu_us_per_refusal']} |" for name, r in rows.items()]
    md += ["", f"Load average before / after: {data['load_before']} / {data['load_after']}"]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{args.name}.json").write_text(json.dumps(data, indent=2) + "\n")
    (out / f"{args.name}.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
