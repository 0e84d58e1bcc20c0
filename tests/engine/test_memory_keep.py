"""``LMFORGE_MALLOC=keep``: freed large blocks are reused, not faulted in again (opt-in)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from lmforge.engine import memory

# Load memory.py by path (like tests/engine/test_memory.py): the test is about the allocator
# setting, not about what importing the package leaves in glibc's heap.
CODE = """
import ctypes, importlib.util, resource, sys
spec = importlib.util.spec_from_file_location("memory", sys.argv[1])
memory = importlib.util.module_from_spec(spec); spec.loader.exec_module(memory)
kept = memory.keep_freed_memory()
print(kept, memory.keep_freed_memory())
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
size = 64 << 20  # above glibc's largest mmap threshold (32 MiB): mapped afresh by default
block = libc.malloc(size); ctypes.memset(block, 1, size); libc.free(block)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(8):  # one training step's largest activation, allocated again each step
    block = libc.malloc(size); ctypes.memset(block, 1, size); libc.free(block)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _run(env_value: str | None) -> tuple[list[str], int]:
    env = {k: v for k, v in os.environ.items() if k != "LMFORGE_MALLOC"}
    if env_value is not None:
        env["LMFORGE_MALLOC"] = env_value
    out = subprocess.run([sys.executable, "-c", CODE, memory.__file__], env=env,
                         capture_output=True, text=True, check=True).stdout.split()
    return out[:2], int(out[2])


@pytest.mark.skipif(memory._glibc() is None, reason="glibc only")
def test_keep_reuses_freed_large_blocks_without_page_faults() -> None:
    default_flags, default_faults = _run(None)
    kept_flags, kept_faults = _run("keep")
    assert default_flags == ["False", "False"]  # off unless asked
    assert kept_flags == ["True", "True"]  # the second call is the cached answer
    pages = 8 * (64 << 20) // 4096  # 131,072 pages of 4 KiB written in the loop
    assert default_faults >= pages // 2  # each block mapped and faulted in afresh
    assert kept_faults <= pages // 100  # the same pages reused
    assert _run("release")[0] == ["False", "False"]  # the other setting is not this one
