"""Whether the servers a process needs are there, and waiting for them when they are not: what an
operator reads when Kafka, Redis or PostgreSQL is away (README, "When a server is away").

A service starting before its servers (a container beside them, a machine after a reboot) says once
which server does not answer, at which address, and which setting names it; then it tries again
with exponential backoff and jitter (tenacity, `backoff`), summing up now and then ("still waiting,
N tries in S s") instead of logging a traceback a second; and says when the server answers.

Reachable means a TCP connection is accepted: a server that answers and then refuses us (a wrong
password, an untrusted certificate) is not away, and waiting would not change it; that is each
client's to report, in one line naming the setting (gongji.common.kafka_failures, the stores).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, wait_exponential, wait_random_exponential

from gongji.common.observe import redacted

log = logging.getLogger("gongji.reachable")


@dataclass(frozen=True)
class Server:
    """One server a process needs: what it is, where (as configured, passwords masked), the
    setting that says so, and the (host, port) pairs it may be reached at (any one will do)."""

    kind: str  # Kafka, Redis, PostgreSQL
    address: str
    setting: str
    endpoints: tuple[tuple[str, int], ...]

    def named(self) -> str:
        return f"{self.kind} at {self.address}"


def kafka(bootstrap_servers: str) -> Server:
    endpoints = []
    for server in bootstrap_servers.split(","):
        host, _, port = server.strip().rpartition(":")
        endpoints.append((host.strip("[]") or "localhost", int(port or 9092)))
    return Server("Kafka", bootstrap_servers, "GONGJI_KAFKA_BOOTSTRAP_SERVERS", tuple(endpoints))


def redis(url: str) -> Server:
    parts = urlsplit(url)
    return Server("Redis", redacted(url), "GONGJI_REDIS_URL", ((parts.hostname or "localhost", parts.port or 6379),))


def postgresql(url: str) -> Server:
    """`url` a postgresql:// URL or a libpq key=value string; several hosts (host=a,b) are tried."""
    from psycopg.conninfo import conninfo_to_dict

    given = conninfo_to_dict(url)
    hosts = str(given.get("hostaddr") or given.get("host") or "localhost").split(",")
    ports = str(given.get("port") or "5432").split(",")
    ports = ports * len(hosts) if len(ports) == 1 else ports
    return Server("PostgreSQL", redacted(url), "GONGJI_DATABASE_URL",
                  tuple((host, int(port or 5432)) for host, port in zip(hosts, ports) if not host.startswith("/")))


def backoff(initial: float, maximum: float):
    """tenacity's wait: exponential from `initial` up to `maximum`, with "equal jitter": the n-th
    wait is drawn between half and all of min(maximum, initial × 2ⁿ⁻¹). Never longer than `maximum`,
    never shorter than initial / 2, and never the same for two processes that failed together (a
    server coming back is not met by every client in the same instant), at the cap too."""
    return wait_exponential(multiplier=initial / 2, max=maximum / 2) + wait_random_exponential(
        multiplier=initial / 2, max=maximum / 2)


def delay(wait, attempt: int) -> float:
    """What tenacity's `wait` gives after `attempt` failed tries (for a loop that is not tenacity's own)."""
    state = RetryCallState(retry_object=None, fn=None, args=(), kwargs={})
    state.attempt_number = attempt
    return wait(state)


class Unreachable(ConnectionError):
    def __init__(self, down: dict[Server, str]):
        super().__init__("; ".join(f"{server.named()}: {why}" for server, why in down.items()))
        self.down = down


async def answers(server: Server, timeout: float) -> str | None:
    """None when one of the server's endpoints accepts a TCP connection; else why not."""
    why = "no address"
    for host, port in server.endpoints:
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        except asyncio.TimeoutError:
            why = f"no answer from {host}:{port} in {timeout:g} s"
            continue
        except OSError as error:
            why = os.strerror(error.errno) if error.errno else str(error)
            continue
        writer.close()
        return None
    return why


def unreachable_line(service: str, server: Server, why: str) -> str:
    """The one line an operator acts on."""
    return f"{service}: {server.named()} does not answer ({why}); is it running, and is {server.setting} right?"


async def wait_until_reachable(service: str, servers: list[Server], *, initial: float = 0.5, maximum: float = 30.0,
                               timeout: float = 5.0, checks: dict[str, Callable[[], Awaitable[None]]] | None = None
                               ) -> None:
    """Return once every server in `servers` answers; meanwhile one line per server that does not,
    tries again with `backoff`, a summary after 4, 8, 16, … tries, and a line when it answers.
    `checks` by server kind: run once as soon as a server of that kind answers, the others perhaps
    still away, so a refusal that waiting would not change (a wrong password) stops us at once."""
    started, said, checked = time.monotonic(), set(), set()

    def tell(state: RetryCallState) -> None:
        down = state.outcome.exception().down
        for server, why in down.items():
            if server not in said:
                said.add(server)
                log.warning("%s; waiting for it, trying again with backoff up to %g s", unreachable_line(
                    service, server, why), maximum)
        tries = state.attempt_number
        if tries >= 4 and tries & (tries - 1) == 0:
            log.warning("%s: still waiting for %s (%d tries in %.0f s; last: %s)", service,
                        ", ".join(server.named() for server in down), tries, time.monotonic() - started,
                        "; ".join(down.values()))

    retrying = AsyncRetrying(wait=backoff(initial, maximum), retry=retry_if_exception_type(Unreachable),
                             before_sleep=tell, reraise=True)
    tries = 0
    async for attempt in retrying:
        with attempt:
            tries += 1
            found = await asyncio.gather(*(answers(server, timeout) for server in servers))
            down = {server: why for server, why in zip(servers, found) if why is not None}
            for server in servers:
                if server not in down and server not in checked and server.kind in (checks or {}):
                    await checks[server.kind]()
                    checked.add(server)
            if down:
                raise Unreachable(down)
    if said:
        log.warning("%s: %s answer%s now, after %d tries in %.0f s", service,
                    ", ".join(server.named() for server in said), "s" if len(said) == 1 else "",
                    tries, time.monotonic() - started)


def needed(settings, service: str) -> list[Server]:
    """The servers `service` waits for before it starts. Not Kafka for the ledger: it checks its
    database's credentials and TLS first and stops at once on a refusal (test_ledger_tls), which a
    wait for an absent broker would hide; an absent broker then stops it in one line (kafka_failures)."""
    servers = [kafka(settings.kafka_bootstrap_servers)] if settings.kafka_bootstrap_servers and service != "ledger" else []
    if service in ("settlement", "clearing") and settings.redis_url:
        servers.append(redis(settings.redis_url))
    if service == "ledger" and settings.database_url:
        servers.append(postgresql(settings.database_url))
    return servers


def outage_line(error: BaseException, settings) -> str | None:
    """A one-shot command's failure to reach PostgreSQL or Redis as one line naming the server, its
    address and the setting (Kafka's: gongji.common.kafka_failures); None for any other failure."""
    import psycopg
    from redis import exceptions

    if settings is None:
        return None
    if isinstance(error, psycopg.OperationalError) and settings.database_url:
        server = postgresql(settings.database_url)
    elif isinstance(error, (exceptions.ConnectionError, exceptions.TimeoutError)) and settings.redis_url:
        server = redis(settings.redis_url)
    else:
        return None
    said = (str(error).strip().splitlines() or [type(error).__name__])[0]
    return f"{server.named()}: {said}; is it running, and is {server.setting} right?"


class OutageLog:
    """What one loop says while its batches fail for want of a server: the first failure in full,
    naming the servers that do not answer with their settings (else the error), then a summary
    after 4, 8, 16, … failures in a row, and a line when a batch goes through again."""

    def __init__(self, service: str, servers: list[Server], maximum: float, timeout: float = 5.0):
        self.service, self.servers, self.maximum, self.timeout = service, servers, maximum, timeout
        self.failures, self.since = 0, 0.0

    async def failed(self, what: str, delay: float) -> None:
        self.failures += 1
        if self.failures == 1:
            self.since = time.monotonic()
            found = await asyncio.gather(*(answers(server, self.timeout) for server in self.servers))
            down = [unreachable_line(self.service, server, why).removeprefix(f"{self.service}: ")
                    for server, why in zip(self.servers, found) if why is not None]
            log.warning("%s: %s; trying again with backoff up to %g s (next in %.1f s)", self.service,
                        "; ".join(down) or what, self.maximum, delay)
        elif self.failures & (self.failures - 1) == 0:
            log.warning("%s: still failing (%d tries in %.0f s; last: %s)", self.service, self.failures,
                        time.monotonic() - self.since, what)

    def done(self) -> None:
        if self.failures:
            log.warning("%s: working again after %d failed tries in %.0f s", self.service, self.failures,
                        time.monotonic() - self.since)
        self.failures = 0
