"""lmforge: a transformer language model from theory to practice.

The Python API mirrors the CLI: ``lmforge.finetune(...)``, ``lmforge.pretrain(...)``,
``lmforge.evaluate(...)`` ... take the same configs and return a :class:`RunResult`;
``lmforge.load(run_dir)`` gives a predictor for any fine-tuned run or ONNX export.
"""

from __future__ import annotations

from lmforge.api import (
    RunResult,
    attack,
    continual_learning,
    evaluate,
    explain,
    export,
    finetune,
    load,
    pipeline,
    pretrain,
    prompt,
    run,
    train_tokenizer,
    tune,
)
from lmforge.errors import ConfigError, DataError, LmforgeError, NonFiniteLossError
from lmforge.version import __version__

__all__ = [
    "ConfigError",
    "DataError",
    "LmforgeError",
    "NonFiniteLossError",
    "RunResult",
    "__version__",
    "attack",
    "continual_learning",
    "evaluate",
    "explain",
    "export",
    "finetune",
    "load",
    "pipeline",
    "pretrain",
    "prompt",
    "run",
    "train_tokenizer",
    "tune",
]
