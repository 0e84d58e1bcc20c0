"""``lmforge convert``: a GGUF model as an ordinary, trainable Hugging Face folder."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from lmforge.errors import ConfigError
from lmforge.models.build import BUILTIN_GGUF, gguf_file
from lmforge.models.gguf import MARKER, convert_gguf
from lmforge.models.settings import ConvertJob


def run_convert(job: ConvertJob, resume: bool = False) -> dict[str, Any]:
    """Convert ``job.source`` (once; a finished conversion is reused) and say where it is.

    Args:
        job: The resolved config.
        resume: Unused; a conversion is one step, and a finished one is never redone.

    Returns:
        The folder, the source file, the architecture, the sizes and the time taken.
    """
    if not job.source:
        raise ConfigError("name the model to convert: lmforge convert FILE.gguf (or a builtin: "
                          f"{', '.join(sorted(BUILTIN_GGUF))})")
    source = gguf_file(job.source) if job.source in BUILTIN_GGUF else job.source
    if not source.endswith(".gguf") and not Path(source).expanduser().is_file():
        raise ConfigError(f"{job.source!r} is neither a .gguf file nor a builtin GGUF model "
                          f"({', '.join(sorted(BUILTIN_GGUF))}); check the path")
    started = time.perf_counter()
    folder = Path(convert_gguf(source, job.output))
    info = json.loads((folder / MARKER).read_text())
    weights = sum(p.stat().st_size for p in folder.glob("*.safetensors"))
    return {"command": "convert", "folder": str(folder), "source": info["source"],
            "architecture": info["architecture"], "source_bytes": info["source_bytes"],
            "safetensors_bytes": weights, "seconds": round(time.perf_counter() - started, 2)}
