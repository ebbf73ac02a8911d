"""A service asked to stop stops within its grace period, whatever it was waiting on."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from gongji.common.process import until_stopped

pytestmark = pytest.mark.unit


async def test_a_service_that_stops_when_asked_returns_its_result():
    started = asyncio.Event()

    async def main(stop: asyncio.Event) -> str:
        started.set()
        await stop.wait()
        return "committed"

    run = asyncio.ensure_future(until_stopped(main, grace=30))
    await started.wait()
    os.kill(os.getpid(), signal.SIGTERM)  # the handler until_stopped installed sets `stop`
    assert await asyncio.wait_for(run, 5) == "committed"


async def test_a_service_deaf_to_stop_is_cancelled_after_the_grace_period():
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def main(stop: asyncio.Event) -> str:
        started.set()
        try:
            await asyncio.Event().wait()  # a start-up step that never looks at `stop`
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return "never"

    stop = asyncio.Event()
    run = asyncio.ensure_future(until_stopped(main, grace=0.05, stop=stop))
    await started.wait()
    stop.set()
    assert await asyncio.wait_for(run, 5) is None
    assert cancelled.is_set()


async def test_a_service_that_ends_on_its_own_is_not_waited_for():
    async def main(stop: asyncio.Event) -> int:
        return 7

    assert await asyncio.wait_for(until_stopped(main, grace=30), 5) == 7


async def test_signal_handlers_are_removed_afterwards():
    async def main(stop: asyncio.Event) -> None:
        return None

    await until_stopped(main, grace=1)
    assert not asyncio.get_running_loop().remove_signal_handler(signal.SIGTERM)
