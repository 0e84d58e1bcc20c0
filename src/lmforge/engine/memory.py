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

The opposite trade, ``LMFORGE_MALLOC=keep``, serves every block from the heap (no mmap) and
never trims it, so freed pages are reused and not faulted in again. It matters for tensors
above 32 MiB, which glibc always maps afresh whatever its threshold: extractive QA at 384
tokens allocates (B, heads, 384, 384) attention scores of 54 MiB per layer at batch 8, 108 MiB
at 16. One MiniLM-L6 QA step at batch 8, one thread (bench/qa_page_faults.py, 2 cores shared
with other jobs): 705 thousand page faults and 2.05 s of kernel time next to 3.39 s of user
time; with ``keep`` 145 thousand and 0.25 s, with the peak resident memory 2,187 -> 3,410 MiB
(the CLI over 30 Quoref steps at batch 16: 48 -> 7 s of system time, 4.0 -> 5.8 GiB). Opt-in,
because a heap that is never trimmed holds the process's peak until it ends.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_MMAP_MAX = -1, -3, -4  # glibc's mallopt numbers (malloc.h)
THRESHOLD_BYTES = 128 * 1024
NEVER_TRIM = 2**31 - 1  # mallopt takes an int: the largest trim threshold it accepts

_applied: bool | None = None
_kept: bool | None = None


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


def keep_freed_memory() -> bool:
    """With ``LMFORGE_MALLOC=keep``, serve large blocks from glibc's heap and never trim it, so
    the next step reuses freed pages instead of faulting fresh ones in (see the module
    docstring); once per process.

    Returns:
        True when set (now or by an earlier call); False when the allocator is left alone.
    """
    global _kept
    if _kept is not None:
        return _kept
    libc = _glibc() if os.environ.get("LMFORGE_MALLOC", "").lower() == "keep" else None
    _kept = bool(libc is not None and libc.mallopt(M_MMAP_MAX, 0)
                 and libc.mallopt(M_TRIM_THRESHOLD, NEVER_TRIM))
    return _kept
