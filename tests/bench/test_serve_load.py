"""`bench/serve_load.py --rounds`: a cell merged from its slices is the cell a single pass of
the same requests would have measured (goodput over the summed time, percentiles over all
latencies), not an average of the slices' own numbers."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))  # serve_load imports its sibling modules by name
_spec = importlib.util.spec_from_file_location("serve_load", ROOT / "bench" / "serve_load.py")
serve_load = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(serve_load)  # type: ignore[union-attr]


def _slice(latencies: list[float], seconds: float, batch: float, errors: dict) -> dict:
    return {"concurrency": 300, "ok": len(latencies), "seconds": seconds,
            "req_per_s": round(len(latencies) / seconds, 1), "latencies": sorted(latencies),
            "errors_by_status": errors, "errors": sum(errors.values()),
            "mean_batch": batch, "loop_lag_ms": None, "retry": "at-once"}


def test_slices_merge_into_one_cell() -> None:
    fast = _slice([0.1] * 90, 10.0, 32.0, {"503": 5})
    slow = _slice([0.2] * 9 + [3.0], 30.0, 8.0, {"503": 7, "conn": 1})
    cell = serve_load.merge_slices([fast, slow])
    assert cell["ok"] == 100 and cell["seconds"] == 40.0
    assert cell["req_per_s"] == 2.5  # 100 answers in 40 s, not the slices' mean (4.65)
    assert cell["slice_req_per_s"] == [9.0, 0.3]  # their spread is kept
    assert cell["p50_ms"] == 100.0 and cell["max_ms"] == 3000.0
    assert cell["p99_ms"] == 3000.0  # the one slow answer is the 100th of 100
    assert cell["errors_by_status"] == {"503": 12, "conn": 1} and cell["errors"] == 13
    assert cell["mean_batch"] == 29.6  # weighted by answers: (90 * 32 + 10 * 8) / 100
    assert cell["loop_lag_ms"] is None and "latencies" not in cell
    assert cell["slices"] == 2 and cell["concurrency"] == 300
