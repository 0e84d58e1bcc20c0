"""The machine a benchmark ran on, recorded in every results file.

``machine_info()`` goes into each ``bench/results/*.json`` (key ``machine``) and its short form
into the BENCHMARKS.md table, so that a number is never read without the hardware it came from.
"""

from __future__ import annotations

import os
import platform
from typing import Any


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (platform.processor() elsewhere)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict[str, Any]:
    """CPU model, bf16 matrix units (yes/no), cores, load, torch and transformers versions."""
    import torch
    import transformers

    from lmforge.engine.precision import cpu_supports_bf16

    info: dict[str, Any] = {
        "cpu": cpu_model(),
        "cpu_bf16_units": cpu_supports_bf16(),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
    }
    if hasattr(os, "getloadavg"):
        info["load_avg_1m_at_start"] = round(os.getloadavg()[0], 2)
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def machine_line(info: dict[str, Any]) -> str:
    """One line for BENCHMARKS.md: ``AMD EPYC, bf16 units: yes, 2 cores, torch 2.13.0``."""
    line = (f"{info['cpu']}, bf16 units: {'yes' if info['cpu_bf16_units'] else 'no'}, "
            f"{info['cores']} cores, torch {info['torch']}")
    return line + (f", {info['gpu']}" if info.get("gpu") else "")


if __name__ == "__main__":
    import json

    print(json.dumps(machine_info(), indent=2))
