"""Run a command in this process and record its peak resident memory.

Usage: python bench/_maxrss.py REPORT.json python -m lmforge ... | python script.py ...
The command's summary.json (lmforge) or stdout JSON line (peer) is stored with maxrss_mib
(and, where CUDA ran, the device's peak allocated / reserved memory).
"""

from __future__ import annotations

import json
import resource
import runpy
import sys
from pathlib import Path


def main() -> None:
    report, cmd = sys.argv[1], sys.argv[2:]
    if cmd[:2] == [sys.executable, "-m"] or cmd[1:2] == ["-m"]:
        module, argv = cmd[2], cmd[3:]
        sys.argv = [module, *argv]
        from lmforge.cli import main as cli_main

        if module != "lmforge":
            sys.exit(f"unsupported module {module}")
        code = cli_main(argv)
        out_dir = next((a.split("=", 1)[1] for a in argv if a.startswith(("--output-dir=",
                                                                           "output_dir="))), None)
        summary = {}
        if out_dir and (Path(out_dir) / "summary.json").is_file():
            summary = json.loads((Path(out_dir) / "summary.json").read_text())
        if code:
            sys.exit(code)
    else:
        script, argv = cmd[1], cmd[2:]
        sys.argv = [script, *argv]
        runpy.run_path(script, run_name="__main__")
        summary = json.loads(Path(argv[2], "bench_summary.json").read_text())
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    measured = {"summary": summary, "maxrss_mib": peak_kib / 1024}
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():  # GPU runs: the device's peak too
        measured["cuda_max_allocated_mib"] = torch.cuda.max_memory_allocated() / 2**20
        measured["cuda_max_reserved_mib"] = torch.cuda.max_memory_reserved() / 2**20
    Path(report).write_text(json.dumps(measured))


if __name__ == "__main__":
    main()
