"""Give freed tensor memory back to the operating system (glibc's malloc on Linux).

PyTorch's CPU tensors come from ``malloc``. glibc serves a large request with ``mmap`` and
unmaps it on ``free`` -- until a large block is freed: then it raises its mmap threshold to that
size (up to 32 MiB on 64-bit), and later blocks of that size come from the heap, where freed
memory stays part of the process. A training step allocates and frees hundreds of MiB of
activations and gradients of shapes that change from step to step (dynamic padding, the
number of masked tokens), so the heap fragments and the resident memory grows step after step
without any live tensor behind it.

Fixing the threshold stops that, at a price: every block above it is then mapped and unmapped
on each use, and the page faults cost more than the arithmetic on a small model. Measured on
2 CPU cores (AVX512-BF16, quiet machine), 40 bf16 steps of BERT-mini MLM: 16.9 s and 1,776 MiB
peak resident memory with glibc's default, 37.3 s and 1,085 MiB with a 128 KiB threshold,
25.6 s and 1,336 MiB with 4 MiB; MiniLM-L6 fine-tuning steps took 2.2x as long at 128 KiB.
So the default leaves the allocator alone, and ``LMFORGE_MALLOC=release`` opts in to the
128 KiB threshold where memory is the constraint and time is not. For MLM pretraining the
growth came from one tensor family whose size changed every step, the sparse head's (M, V)
logits; :mod:`lmforge.pretraining.objectives` pads M to a multiple of 64, which
brought 40-80 such steps to 1,111-1,159 MiB (2,036 MiB without, 80 steps) at the default
allocator's speed. Other platforms and
allocators (macOS, musl, jemalloc / tcmalloc preloaded) are left as they are.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number (malloc.h)
THRESHOLD_BYTES = 128 * 1024

_applied: bool | None = None


def _glibc() -> ctypes.CDLL | None:
    """The C library when it is glibc (it has ``gnu_get_libc_version``), else ``None``."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    return libc if hasattr(libc, "gnu_get_libc_version") and hasattr(libc, "mallopt") else None


def release_freed_memory() -> bool:
    """With ``LMFORGE_MALLOC=release``, fix glibc's mmap threshold once per process so that
    freed activations leave the process (slower; see the module docstring).

    Returns:
        True when the threshold is fixed (now or by an earlier call); False when the
        allocator is left alone (the default, not glibc, or mallopt refused).
    """
    global _applied
    if _applied is not None:
        return _applied
    libc = _glibc() if os.environ.get("LMFORGE_MALLOC", "").lower() == "release" else None
    _applied = bool(libc is not None and libc.mallopt(M_MMAP_THRESHOLD, THRESHOLD_BYTES))
    return _applied
