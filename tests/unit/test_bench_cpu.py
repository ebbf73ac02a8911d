"""The bench's CPU figures count a server's children (issue 12): PostgreSQL does the ledger's writes
in backends, children of the postmaster whose pid the stack records, so a component's CPU is its
process's with its descendants', those still running and those it has reaped."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from gongji.local.bench import _cpu_seconds, _cpu_snapshot

pytestmark = pytest.mark.unit

# Burns about 0.3 s of CPU, says so, then waits for its stdin to close.
BURN = ("import sys, time\nend = time.process_time() + 0.3\nwhile time.process_time() < end: pass\n"
        "print('burnt', flush=True)\nsys.stdin.read()\n")


def test_a_components_cpu_counts_its_children_running_and_reaped():
    me = os.getpid()
    before = _cpu_snapshot({"me": [me]})["me"]
    child = subprocess.Popen([sys.executable, "-c", BURN], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline() == "burnt\n"  # a positive marker: its CPU is spent
        running = _cpu_snapshot({"me": [me]})["me"]
        assert running - before >= 0.25 and running - _cpu_seconds(me) >= 0.25  # the child's, while it runs
    finally:
        child.stdin.close()
        child.wait()
    reaped = _cpu_snapshot({"me": [me]})["me"]
    assert reaped - _cpu_seconds(me) >= 0.25  # and once reaped (this process's cutime), not lost
    assert reaped >= running
