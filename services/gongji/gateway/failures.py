"""A request the gateway could not finish (Redis away, a deadline passed, anything unforeseen),
answered in the national shape rather than aiohttp's HTTP 500 with a traceback: infcode -1, what
failed, and that the same msgid may be asked again (the claim is settled at most once, however often
it is asked: gateway.service). The operator is told in one line naming the server, its address and
the setting, then summaries (gongji.common.reachable.OutageLog); /healthz turns 503 once Redis has
failed for GONGJI_STALL_SECONDS, as every service's does, and 200 again when a PING answers."""

from __future__ import annotations

import asyncio
import logging
import traceback

from redis.exceptions import RedisClusterException, RedisError

from gongji.common import reachable
from gongji.common.observe import Metrics
from gongji.common.poison import Backoff, describe
from gongji.gateway import national
from gongji.settings import Settings

log = logging.getLogger("gongji.gateway")
STORE = (RedisError, RedisClusterException)
AGAIN = "try again with the same msgid"


class RedisWatch:
    """While Redis fails: the outage told once, PINGs with backoff until it answers, the failing
    state on the gateway's metrics (its /healthz) meanwhile."""

    def __init__(self, settings: Settings, redis, metrics: Metrics):
        self.settings, self.redis, self.metrics = settings, redis, metrics
        self._task: asyncio.Task | None = None

    def failed(self, error: BaseException) -> None:
        self.metrics.batch_failed()  # the first failure in a row starts the clock /healthz reads
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._until_it_answers(error), name="gateway-redis-watch")

    async def _until_it_answers(self, error: BaseException) -> None:
        settings = self.settings
        said = reachable.OutageLog("gateway", [reachable.redis(settings.redis_url)], settings.retry_max_seconds,
                                   settings.probe_timeout_seconds)
        backoff = Backoff(settings.retry_initial_seconds, settings.retry_max_seconds)
        while True:
            delay = backoff.next()
            await said.failed(f"Redis: {describe(error)}", delay)
            await asyncio.sleep(delay)
            try:
                async with asyncio.timeout(settings.probe_timeout_seconds):
                    await self.redis.ping()
                break
            except (*STORE, TimeoutError) as again:
                error = again
        said.done()
        self.metrics.batch_done()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


def answer(error: BaseException, watch: RedisWatch) -> tuple[dict, int]:
    """The national answer (and HTTP status) to a request that failed with `error`. Nothing personal
    is logged: the request's content stays out of the line."""
    if isinstance(error, STORE):
        watch.failed(error)
        return national.refusal(f"the gateway's store (Redis) is unreachable ({type(error).__name__}); {AGAIN}"), 503
    if isinstance(error, TimeoutError):
        log.warning("gateway: a request did not finish within its deadline")
        return national.refusal(f"the gateway did not finish the request in time; {AGAIN}"), 503
    where = traceback.extract_tb(error.__traceback__)[-1] if error.__traceback__ else None
    log.error("gateway: a request failed: %s%s", type(error).__name__,
              f" at {where.filename}:{where.lineno}" if where else "")
    return national.refusal(f"the gateway failed ({type(error).__name__}); {AGAIN}"), 500
