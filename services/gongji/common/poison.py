"""What every consumer does when handling a batch fails: an outage is waited out, a poison message
is found and set aside (README, "Operations: when handling fails").

- **Outage**: a server is away. Told by the exception (a connection refused, a timeout: `TRANSIENT`)
  and by a probe that asks each server the service needs to answer (Redis, PostgreSQL, Kafka
  metadata). The batch is tried again after an exponential, capped backoff; `/healthz` turns 503
  once it has lasted `stall_seconds`. Nothing is dead-lettered during an outage.
- **Poison**: handling fails while every server answers, whatever the exception class. The batch is
  split in two and each half handled in order, left then right, down to the one message that fails
  alone; that one goes to `dead-letters` with the exception and the service, and the partition
  moves on. A transient exception while the probe passes is first retried (the server may just
  have come back), `retry_transient_attempts` times per batch, before it is treated as poison; an
  exception a service declares never to follow a message (`outages`) is always an outage.

Handlers are idempotent (Redis records, ON CONFLICT, remembered ids), so handling part of a batch
again is harmless, and each part publishes what it produced before the next one starts: readers
see the results in the order of the inputs, as if the messages had come one at a time (a part that
failed after publishing some of its results publishes them again, identical, under the same ids).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from aiokafka.errors import KafkaError

log = logging.getLogger("gongji.poison")
T = TypeVar("T")
REASON_LIMIT = 2000  # characters of an exception kept in a dead letter's reason


def _transient_classes() -> tuple[type[BaseException], ...]:
    import psycopg
    from redis import exceptions as redis_errors

    return (ConnectionError, TimeoutError, asyncio.TimeoutError, redis_errors.ConnectionError,
            redis_errors.TimeoutError, redis_errors.BusyLoadingError, redis_errors.ReadOnlyError,
            redis_errors.TryAgainError, redis_errors.ClusterDownError, psycopg.OperationalError,
            psycopg.errors.AdminShutdown, psycopg.errors.CannotConnectNow)


TRANSIENT = _transient_classes()


def transient(error: BaseException) -> bool:
    """Whether `error` says a server is away or slow rather than anything about the message."""
    if isinstance(error, KafkaError):
        return bool(getattr(error, "retriable", False)) or type(error).__name__ in (
            "KafkaConnectionError", "KafkaTimeoutError", "RequestTimedOutError", "NodeNotReadyError")
    return isinstance(error, TRANSIENT)


class Outage(Exception):
    """Handling failed because a server is away: try the whole batch again later."""

    def __init__(self, cause: BaseException, down: str | None):
        super().__init__(f"{type(cause).__name__}: {cause}" + (f" (not answering: {down})" if down else ""))
        self.cause = cause
        self.down = down


def describe(error: BaseException) -> str:
    """The exception as a dead letter's reason names it: class and message, printable, bounded."""
    text = f"{type(error).__name__}: {error}"
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")  # lone surrogates and the like
    return text if len(text) <= REASON_LIMIT else text[:REASON_LIMIT] + "…"


class Backoff:
    """Exponential, capped and jittered (gongji.common.reachable.backoff, tenacity's waits): the
    n-th wait between half and all of min(maximum, initial × 2ⁿ⁻¹); `reset` after a success."""

    def __init__(self, initial: float, maximum: float):
        from gongji.common.reachable import backoff

        self.initial = initial
        self.maximum = maximum
        self.failures = 0
        self._wait = backoff(initial, maximum)

    def next(self) -> float:
        from gongji.common.reachable import delay

        self.failures += 1
        return delay(self._wait, min(self.failures, 64))

    def reset(self) -> None:
        self.failures = 0


@dataclass
class Policy(Generic[T]):
    """The poison-message policy of one service. `probe()` raises unless every server the service
    needs answers; `dead(item, reason)` publishes an item's dead letter (and raises on an outage)."""

    service: str
    probe: Callable[[], Awaitable[None]]
    dead: Callable[[T, str], Awaitable[None]]
    retry_transient_attempts: int = 3
    probe_timeout: float = 5.0
    backoff: Backoff = field(default_factory=lambda: Backoff(0.5, 30.0))
    # Exceptions that are never a message's fault (e.g. settlement's StoreContention: another
    # process writing the same persons during a rebalance): always an outage, never dead-lettered.
    outages: tuple[type[BaseException], ...] = ()
    describe_item: Callable[[T], str] = repr

    async def servers_down(self) -> str | None:
        """None when every server answers the probe; otherwise what the probe met."""
        try:
            await asyncio.wait_for(self.probe(), self.probe_timeout)
            return None
        except asyncio.CancelledError:
            raise
        except Exception as error:  # the probe's own failure is the answer
            return describe(error)

    async def handle(self, items: Sequence[T], handle: Callable[[Sequence[T]], Awaitable[object]]) -> None:
        """Handle `items` (in order) with `handle`; a message that fails while the servers answer is
        isolated and dead-lettered. Raises Outage when a server is away (nothing dead-lettered by
        the failing attempt; parts handled before it stay handled)."""
        budget = [self.retry_transient_attempts]
        self.backoff.reset()
        await self._part(list(items), handle, budget)

    async def _part(self, items: list[T], handle, budget: list[int]) -> None:
        while True:
            try:
                await handle(items)
                return
            except asyncio.CancelledError:
                raise
            except Exception as error:
                failure = error
            if isinstance(failure, Outage):
                raise failure
            down = await self.servers_down()
            if down is not None or isinstance(failure, self.outages):
                raise Outage(failure, down) from failure
            if transient(failure) and budget[0] > 0:
                budget[0] -= 1
                delay = self.backoff.next()
                log.warning("%s: %s while the servers answer; trying %d message(s) again in %.1f s",
                            self.service, describe(failure), len(items), delay)
                await asyncio.sleep(delay)
                continue
            break
        if len(items) == 1:
            (item,) = items
            reason = f"refused by {self.service}: {describe(failure)}"
            log.error("%s: dead-lettering %s: %s", self.service, self.describe_item(item), describe(failure),
                      exc_info=failure)
            await self.dead(item, reason)
            return
        log.warning("%s: a batch of %d failed (%s) while the servers answer; splitting it to find the message",
                    self.service, len(items), describe(failure))
        middle = len(items) // 2
        await self._part(items[:middle], handle, budget)
        await self._part(items[middle:], handle, budget)



def redis_probe(client, prefix: str) -> Callable[[], Awaitable[None]]:
    """A probe that Redis answers a write (PING alone passes on a read-only replica or a server out
    of memory, which refuse every batch)."""
    async def probe() -> None:
        await client.set(f"{prefix}:probe", b"1", px=60_000)
    return probe
