"""Numbers derived from raw results (ratios, savings, unit changes), computed, not typed.

BENCHMARKS.md quotes only numbers found in a raw file (bench/check_numbers.py checks its
tables). A ratio such as "2.0x the peer's best cell" is not itself in serve_load.json; this
script computes such numbers from the raw files and writes them, each with its formula, to
bench/results/derived.json. Re-run it after re-running a benchmark it reads.

Usage: .venv/bin/python bench/derived.py   (seconds; no model is run)
"""

from __future__ import annotations

import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def serving(raw: dict) -> dict:
    """lmforge vs the peer: at each concurrency, and each target's best cell vs the peer's."""
    rows = raw["rows"]
    peer = {r["concurrency"]: r for r in rows if r["target"].startswith("peer")}
    peer_best = max(peer.values(), key=lambda r: r["req_per_s"])
    out: dict = {"peer_best_cell": {"concurrency": peer_best["concurrency"],
                                    "req_per_s": peer_best["req_per_s"]},
                 "formula": "req_per_s(target) / req_per_s(peer); best = highest req/s",
                 "targets": {}}
    for target in sorted({r["target"] for r in rows} - {peer_best["target"]}):
        mine = {r["concurrency"]: r for r in rows if r["target"] == target}
        best = max(mine.values(), key=lambda r: r["req_per_s"])
        out["targets"][target] = {
            "vs_peer_same_clients": {str(c): mine[c]["req_per_s"] / peer[c]["req_per_s"]
                                     for c in sorted(mine) if c in peer},
            "best_cell": {"concurrency": best["concurrency"], "req_per_s": best["req_per_s"]},
            "best_vs_peer_best": best["req_per_s"] / peer_best["req_per_s"],
            "p50_ratio_peer_over_target_at_32": peer[32]["p50_ms"] / mine[32]["p50_ms"]
            if 32 in mine and 32 in peer else None,
        }
    return out


def peft(raw: dict) -> dict:
    """Per method: training-time saving vs full fine-tuning, model/ size in MiB, size ratio."""
    runs = raw["runs"]
    full = runs["full"]
    out: dict = {"formula": {"train_time_saving": "1 - train_seconds / full train_seconds",
                             "model_dir_mib": "model_dir_bytes / 2**20",
                             "full_size_ratio": "full model_dir_bytes / model_dir_bytes"},
                 "methods": {}}
    for name, run in runs.items():
        out["methods"][name] = {
            "train_time_saving": 1 - run["train_seconds"] / full["train_seconds"],
            "model_dir_mib": run["model_dir_bytes"] / 2**20,
            "full_size_ratio": full["model_dir_bytes"] / run["model_dir_bytes"],
        }
    return out


def main() -> None:
    """Write bench/results/derived.json from the raw files it reads."""
    sources = {"serve_load": "serve_load.json", "peft_sst2": "peft_sst2.json"}
    makers = {"serve_load": serving, "peft_sst2": peft}
    result: dict = {"command": "python bench/derived.py", "sources": sources}
    for key, name in sources.items():
        result[key] = makers[key](json.loads((RESULTS / name).read_text()))
    (RESULTS / "derived.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
