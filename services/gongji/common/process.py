"""What every long-running service process does: stop cleanly on a signal within a bounded time,
and (for the settling ones) tune the garbage collector.

SIGINT or SIGTERM asks a service to stop, and `until_stopped` gives it a bounded time to do so.

A service asked to stop finishes and commits the batch in flight. But a stop can come while it
cannot look: starting up (checking Redis, creating topics, joining its group) or waiting on a server
that does not answer. An orchestrator kills a process that outlives its grace period (Kubernetes:
30 s), so the process cancels its own work first, at `grace` seconds: nothing is lost by that,
since offsets are committed only after a batch's effects are durable and its results published,
and a batch cancelled half-way is consumed again and answered from what Redis recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from collections.abc import Awaitable, Callable
from typing import TypeVar

log = logging.getLogger("gongji.process")
T = TypeVar("T")


async def until_stopped(main: Callable[[asyncio.Event], Awaitable[T]], *, grace: float, name: str = "service",
                        stop: asyncio.Event | None = None) -> T | None:
    """Run `main(stop)` until it returns; SIGINT or SIGTERM set `stop` (or the caller's `stop` is
    set). If `main` has not returned `grace` seconds after `stop` was set, it is cancelled and None
    returned."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    task = asyncio.ensure_future(main(stop))
    asked = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, asked}, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            return task.result()
        try:
            return await asyncio.wait_for(asyncio.shield(task), grace)
        except asyncio.TimeoutError:
            log.warning("%s: still busy %.0f s after it was asked to stop; cancelling what it was doing "
                        "(what was not committed is consumed again)", name, grace)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            return None
    finally:
        asked.cancel()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


def tune_gc() -> None:
    """A consuming service allocates many short-lived objects: collecting every 700 allocations cost
    a quarter of settlement's time, and a full collection over what start-up built (imports, the
    policy, the schemas) paused the ledger for tens of milliseconds. Freeze what start-up built and
    collect the young far less often."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)
