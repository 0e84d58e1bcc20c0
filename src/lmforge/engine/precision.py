"""Mixed-precision choice, and the accelerate state of one run.

bf16 autocast only pays off where the hardware has bf16 matrix units (CUDA Ampere+, or CPUs
with AVX512-BF16 / AMX). On a CPU without them (AVX2 only) PyTorch emulates bf16 matrix
products and a training step becomes tens of times slower, so ``auto`` picks fp32 there.

``LMFORGE_AUTO_PRECISION=bf16|fp32`` makes ``auto`` resolve to that precision on a CPU
whatever the hardware has. It is read here only, and exists so that the test suite can run
the bf16 path on every machine (``scripts/test.sh`` runs the tiny-model tests once with it).

accelerate keeps its settings in a process-wide ``AcceleratorState`` that refuses a second
``Accelerator`` with another ``mixed_precision``. Every run builds its accelerator with
:func:`make_accelerator`, which starts from a fresh state (as ``transformers``'
``TrainingArguments`` does), so a notebook, a hyperparameter search or a continual-learning
stream can train again and again in one process, in any order of precisions.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import torch

from lmforge.engine.sharding import enable_cpu_fsdp, forget_cpu_fsdp, refuse_fsdp1_on_cpu
from lmforge.errors import ConfigError

log = logging.getLogger(__name__)

AUTO_PRECISION_ENV = "LMFORGE_AUTO_PRECISION"


def cpu_supports_bf16() -> bool:
    """True when oneDNN has native bf16 kernels on this CPU (AVX512-BF16 or AMX)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # pragma: no cover - older or unusual builds
        return False


def resolve_precision(requested: str, device: torch.device) -> str:
    """Turn ``auto|bf16|fp16|fp32`` into what will actually run on ``device``.

    Args:
        requested: The ``train.precision`` setting.
        device: The training device.

    Returns:
        ``bf16``, ``fp16`` or ``fp32``.

    Raises:
        ConfigError: fp16 on a CPU, or bf16 on a GPU without bf16 support.
    """
    if device.type == "cuda":
        bf16_ok = torch.cuda.is_bf16_supported()
        if requested == "auto":
            return "bf16" if bf16_ok else "fp16"
        if requested == "bf16" and not bf16_ok:
            raise ConfigError("precision=bf16 but this GPU has no bf16; use fp16 or fp32")
        return requested
    if requested == "fp16":
        raise ConfigError("precision=fp16 needs a GPU; on a CPU use bf16 or fp32")
    if requested == "auto":
        forced = os.environ.get(AUTO_PRECISION_ENV, "").strip().lower()
        if forced:
            if forced not in ("bf16", "fp32"):
                raise ConfigError(f"{AUTO_PRECISION_ENV}={forced!r} is not valid; use bf16 or "
                                  "fp32 (or unset it)")
            return forced
        return "bf16" if cpu_supports_bf16() else "fp32"
    if requested == "bf16" and not cpu_supports_bf16():
        log.warning("this CPU has no native bf16 (no AVX512-BF16/AMX): bf16 autocast will be "
                    "emulated and much slower than fp32; use train.precision=auto or fp32")
    return requested


def accelerate_mixed_precision(precision: str) -> str:
    """Map a resolved precision to ``accelerate``'s ``mixed_precision`` names."""
    return {"fp32": "no", "bf16": "bf16", "fp16": "fp16"}[precision]


def make_accelerator(precision: str) -> tuple[Any, str]:
    """An ``accelerate.Accelerator`` for this process with the precision that will really run.

    Args:
        precision: The ``train.precision`` setting (``auto|bf16|fp16|fp32``).

    Returns:
        (accelerator, resolved precision); accelerate applies autocast and, for fp16, the
        gradient scaler.
    """
    from accelerate import Accelerator

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = resolve_precision(precision, device)
    reset_accelerate_state()
    if device.type == "cpu":
        refuse_fsdp1_on_cpu()  # accelerate's FSDP plugin would fail inside Accelerator()
    accelerator = Accelerator(cpu=device.type == "cpu",
                              mixed_precision=accelerate_mixed_precision(resolved))
    enable_cpu_fsdp(accelerator)  # `--use_fsdp` on gloo processes (why: engine/sharding.py)
    return accelerator, resolved


def reset_accelerate_state() -> None:
    """Forget the precision and plugins of an earlier run (the process group stays).

    ``AcceleratorState`` and ``GradientState`` hold one run's settings; ``PartialState``
    (device, process group, rank) is the same for every run of the process and is kept.
    """
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(reset_partial_state=False)
    GradientState._reset_state()
    forget_cpu_fsdp()
