"""A worker gives freed upload buffers back to the system (glibc's mmap threshold stays put)."""

from __future__ import annotations

import subprocess
import sys

import pytest

# a 24 MiB buffer freed (glibc raises its threshold to 24 MiB), then 16 MiB buffers filled and
# freed: how much the process grew, in MiB
PROGRAM = """
import os, sys
from cargohold.api.server import tune_allocator
if sys.argv[1] == "fixed":
    tune_allocator()
def rss():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmRSS:")) / 1024
before = rss()
block = b"x" * (24 << 20)
del block
for _ in range(4):
    parts = [b"y" * (16 << 20), b"z" * (16 << 20)]
    del parts
print(rss() - before)
"""


def _growth(mode: str) -> float:
    done = subprocess.run([sys.executable, "-c", PROGRAM, mode], capture_output=True, text=True, check=True)
    return float(done.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_freed_large_buffers_leave_the_process() -> None:
    assert _growth("fixed") < 8


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_glibc_keeps_them_left_to_itself() -> None:
    """What the setting is for: without it, this libc keeps the freed buffers' pages."""
    assert _growth("default") >= 16
