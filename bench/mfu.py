"""Model FLOPs utilization: training FLOPs of a BERT-style encoder against a measured peak.

MFU = (model FLOPs per second actually achieved) / (the machine's matrix-product peak for the
precision that ran). The peak is *measured* here (best of several GEMM shapes), not read from
a datasheet: on a shared 2-core VM the datasheet number means little.

Model FLOPs (Kaplan et al. 2020; Chowdhery et al. 2022, appendix B) count only the real
(non-padding) tokens and the work the model needs, forward + backward = 3 x forward:

    per token, per layer:  2 * (4 H^2 + 2 H I)      (Q, K, V, O projections; feed-forward)
                         + 2 * 2 * T H               (attention scores and weighted sum)
    task head per token:   2 * H * C (classification: per sequence; token tasks: per token)
    MLM head (sparse):     2 * (H^2 + H V) per *masked* token only

with H the hidden size, I the feed-forward size, T the sequence length, V the vocabulary.

Usage: python bench/mfu.py    (prints the measured fp32 and bf16 peaks of this machine)
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from typing import Any

import torch

SHAPES = ((1024, 384, 1536), (2048, 1536, 384), (2048, 2048, 2048), (4096, 768, 3072))


def matmul_peak(dtype: torch.dtype, repeats: int = 5, seconds: float = 0.5,
                shapes: Iterable[tuple[int, int, int]] = SHAPES) -> float:
    """Best measured FLOP/s of ``A @ B`` in ``dtype`` over ``shapes`` (CPU or CUDA)."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    best = 0.0
    for m, k, n in shapes:
        a = torch.randn(m, k, device=device, dtype=dtype)
        b = torch.randn(k, n, device=device, dtype=dtype)
        flops = 2.0 * m * k * n
        a @ b  # warm-up (oneDNN / cuBLAS picks its kernel)
        for _ in range(repeats):
            calls, start = 0, time.perf_counter()
            while True:
                a @ b
                calls += 1
                if device == "cuda":
                    torch.cuda.synchronize()
                elapsed = time.perf_counter() - start
                if elapsed >= seconds / repeats:
                    break
            best = max(best, flops * calls / elapsed)
    return best


def measured_peaks() -> dict[str, float]:
    """Measured matrix-product peaks (FLOP/s) in fp32 and bf16 on this machine."""
    from lmforge.engine.precision import cpu_supports_bf16

    peaks = {"fp32": matmul_peak(torch.float32)}
    if torch.cuda.is_available() or cpu_supports_bf16():
        peaks["bf16"] = matmul_peak(torch.bfloat16)
    return peaks


def encoder_forward_flops(config: Any, lengths: Iterable[int], *, head: str = "sequence",
                          num_labels: int = 2, masked_tokens: int = 0) -> float:
    """Forward FLOPs of a BERT-style encoder on sequences of the given real lengths.

    Args:
        config: A ``transformers`` config (hidden_size, intermediate_size,
            num_hidden_layers, vocab_size).
        lengths: Real (non-padding) tokens of each sequence.
        head: ``sequence`` (a classifier on [CLS]), ``token`` (a classifier per token) or
            ``mlm`` (sparse MLM head on ``masked_tokens`` tokens).
        num_labels: Classes of the classification head.
        masked_tokens: Masked tokens the MLM head runs on.

    Returns:
        Forward FLOPs (multiply-adds count 2).
    """
    h, i, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    total = 0.0
    sequences = 0
    for t in lengths:
        sequences += 1
        per_token = 2 * (4 * h * h + 2 * h * i) + 2 * 2 * t * h
        total += layers * per_token * t
        if head == "token":
            total += 2 * h * num_labels * t
    if head == "sequence":
        total += sequences * 2 * (h * h + h * num_labels)  # pooler + classifier
    elif head == "mlm":
        total += masked_tokens * 2 * (h * h + h * config.vocab_size)
    return total


def training_flops(forward: float) -> float:
    """Forward + backward: the backward pass costs about twice the forward."""
    return 3.0 * forward


if __name__ == "__main__":
    print(json.dumps({k: round(v / 1e9, 1) for k, v in measured_peaks().items()}, indent=2),
          "GFLOP/s")
