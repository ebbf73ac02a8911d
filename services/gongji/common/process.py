"""What every long-running service process does at start: stop cleanly on a signal, and (for the
settling ones) tune the garbage collector."""

from __future__ import annotations

import asyncio
import gc
import signal


def stop_on_signals(stop: asyncio.Event) -> None:
    """SIGINT and SIGTERM set `stop`: the service finishes and commits its batch in flight."""
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)


def tune_gc() -> None:
    """A settling service allocates many short-lived objects: collecting every 700 allocations cost
    a quarter of settlement time. Freeze what start-up built and collect the young far less often."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)
