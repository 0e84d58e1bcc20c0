"""Mixed-precision choice.

bf16 autocast only pays off where the hardware has bf16 matrix units (CUDA Ampere+, or CPUs
with AVX512-BF16 / AMX). On a CPU without them (AVX2 only) PyTorch emulates bf16 matrix
products and a training step becomes tens of times slower, so ``auto`` picks fp32 there.
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from lmforge.errors import ConfigError

log = logging.getLogger(__name__)


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
            raise ConfigError("train.precision=bf16 but this GPU has no bf16; use fp16 or fp32")
        return requested
    if requested == "fp16":
        raise ConfigError("train.precision=fp16 needs a GPU; on a CPU use bf16 or fp32")
    if requested == "auto":
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
    accelerator = Accelerator(cpu=device.type == "cpu",
                              mixed_precision=accelerate_mixed_precision(resolved))
    return accelerator, resolved
