"""The dashboard service: reads the result topics, measures each service's consumer lag, and serves
a live page (aiohttp) on `dashboard_host:dashboard_port` (loopback by default).

Read-only: a consumer without a group (it commits nothing, creates no topic) assigned to
`settlements`, `dead-letters`, `fraud.signals`, `clearing.statements` and `registry.institutions`,
and an admin client reading the services' committed offsets. It starts from recent offsets, not
from the beginning: per partition, the first record published in the last
`dashboard_lookback_seconds` (Kafka `offsets_for_times`, by record timestamp) but never more than
`dashboard_lookback_records` before the end, and records older than the window are skipped; the
institution registry, compacted and small, is read whole. A topic that appears later (a service
started after the dashboard) is picked up within seconds.

Routes: `/` the page, `/events` server-sent events (a full snapshot of every figure on connect and
then once a second: a new or reconnected page is right at once), `/snapshot.json` the same once,
`/static/…` the page's script and the charting library (plotly.js from the `plotly` wheel: nothing
is fetched from the network at run time), `/period.json?period=today|month` the ledger's figures
for the period (gongji.dashboard.period; 503 naming the reason without a ledger), `/login` and
`/logout`. Every route but `/login` needs a
credential (gongji.dashboard.access); TLS when the settings name a certificate and key. `/healthz`
and `/metrics` are not on this port: they are on the metrics port (gongji.common.observe), as for
every service. Persons appear only as keyed pseudonyms (gongji.common.pseudonym).

A record it cannot read or fold (undecodable, or anything its figures raise on) is counted
(`gongji_dashboard_undecodable_total` by topic), logged by topic, partition and offset, and skipped:
never a dead letter (README, "When handling fails"), and never a reason to stop reading.
"""

from __future__ import annotations

import asyncio
import importlib.resources
import logging
import ssl
import time
import uuid
from dataclasses import dataclass

import orjson
from aiohttp import web
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from prometheus_client import Counter, Gauge

from gongji.common import kafka, poison
from gongji.common.avro import DecodeError, SchemaCatalog
from gongji.settings import Settings
from gongji.common.observe import Metrics, PortInUse, bind_error, is_loopback, serve
from gongji.common.pseudonym import Pseudonym
from gongji.contract.topics import service_topics
from gongji.contract.wire import RECORD_OUTPUTS, header
from gongji.dashboard.access import Access, AccessError
from gongji.dashboard.domain import Board
from gongji.dashboard.period import LedgerReader

log = logging.getLogger("gongji.dashboard")
SERVICE = "dashboard"
TICK = 1.0  # seconds between snapshots pushed to pages
LAG_EVERY = 2.0
TOPICS_EVERY = 5.0  # seconds between looks for topics that appeared since
STATIC = {"app.js": "application/javascript", "app.css": "text/css"}


def service_groups(settings: Settings) -> dict[str, str]:
    """{service: consumer group} of every `<service>_group` setting: settlement and clearing, and
    those other services add (fraud_group, ledger_group) without a change here."""
    return {name.removesuffix("_group"): settings.kafka_group(name.removesuffix("_group"))
            for name in type(settings).model_fields if name.endswith("_group") and getattr(settings, name)}


class Dashboard:
    """One dashboard: `await start()`, then its page is at `url` until `await stop()`."""

    def __init__(self, settings: Settings, catalog: SchemaCatalog | None = None,
                 region_names: dict[str, str] | None = None):
        self.settings = settings
        self.catalog = catalog or SchemaCatalog()
        self.started_at = time.time()
        self.instance = uuid.uuid4().hex[:8]
        self.access = Access.from_settings(settings)  # AccessError: refused before anything starts
        try:
            self.pseudonym = Pseudonym(settings.pseudonym_key_value())
        except ValueError as error:
            raise AccessError(str(error)) from None
        self.board = Board(since=self.started_at - settings.dashboard_lookback_seconds, region_names=region_names,
                           pseudonym=self.pseudonym)
        self.ledger = LedgerReader.from_settings(settings)  # None: no ledger, the live view only
        self.metrics = Metrics(SERVICE)
        self.pages = Gauge("gongji_dashboard_pages", "Pages connected to /events", registry=self.metrics.registry)
        self.undecodable = Counter("gongji_dashboard_undecodable", "Records the dashboard could not read or fold",
                                   ["topic"], registry=self.metrics.registry)
        self.group_lag = Gauge("gongji_dashboard_group_lag", "Messages a service's consumer group is behind",
                               ["service"], registry=self.metrics.registry)
        self.latest = self._encode()
        self._fresh = asyncio.Event()
        self._closing = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        self._runner: web.AppRunner | None = None
        self._metrics_server = None
        self.port: int | None = None

    @property
    def url(self) -> str:
        scheme = "https" if self.settings.dashboard_tls_certfile else "http"
        return f"{scheme}://{self.settings.dashboard_host}:{self.port}/"

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> str:
        """Serve the page and start reading; returns the page's address."""
        tls = tls_context(self.settings)  # AccessError before anything listens
        self._runner = web.AppRunner(self.app(), access_log=None, shutdown_timeout=2.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.settings.dashboard_host, self.settings.dashboard_port, ssl_context=tls)
        try:
            await site.start()
        except OSError as error:
            if bind_error(error):
                raise PortInUse("dashboard", self.settings.dashboard_host, self.settings.dashboard_port,
                                "GONGJI_DASHBOARD_PORT", error) from None
            raise
        self.port = self._runner.addresses[0][1]  # the real one when dashboard_port is 0
        if not is_loopback(self.settings.dashboard_host) and not self.settings.dashboard_tls_certfile:
            log.warning("dashboard: on %s without TLS: credentials and figures cross the network in clear unless "
                        "a proxy in front encrypts them", self.settings.dashboard_host)
        if not self.pseudonym.stable:
            log.warning("dashboard: no GONGJI_PSEUDONYM_KEY: persons' pseudonyms change when it restarts")
        if self.settings.metrics_port:
            self._metrics_server = serve(self.metrics, self.settings.metrics_host, self.settings.metrics_port,
                                         self.settings.stall_seconds, self.settings.metrics_token_value())
        self._tasks = [asyncio.create_task(self._guard(loop)) for loop in (self._read, self._measure_lag,
                                                                          self._broadcast)]
        return self.url

    async def stop(self) -> None:
        self._closing.set()
        self._fresh.set()  # pages waiting for the next snapshot end their stream
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()
        if self._metrics_server is not None:
            self._metrics_server.shutdown()
        if self.ledger is not None:
            await self.ledger.close()

    async def _guard(self, loop) -> None:
        """Run one loop; an outage (the broker away) is logged and the loop started again after a
        capped backoff. While the reader keeps failing, /healthz counts it as failing."""
        backoff = poison.Backoff(self.settings.retry_initial_seconds, self.settings.retry_max_seconds)
        while not self._closing.is_set():
            try:
                await loop()
                return
            except asyncio.CancelledError:
                raise
            except Exception as error:  # the broker away, or a bug of ours: never the end of the loop
                if loop == self._read:
                    self.metrics.batch_failed()
                delay = backoff.next()
                log.warning("dashboard: %s: %s; starting it again in %.1f s", loop.__name__.strip("_"),
                            poison.describe(error), delay, exc_info=not isinstance(error, KafkaError))
            await asyncio.sleep(delay)

    # ------------------------------------------------------------------ reading the topics
    def _wanted(self) -> dict[str, bool]:
        """Topics read, and whether each is read whole (True) or from the lookback."""
        topics = self.settings.topics
        return {name: name == topics.institutions for name in service_topics(topics, "dashboard")}

    async def _read(self) -> None:
        consumer = kafka.consumer(self.settings, None)
        try:
            await consumer.start()
            assigned: set[TopicPartition] = set()
            next_look = 0.0
            while not self._closing.is_set():
                self.metrics.polled()
                if time.monotonic() >= next_look:
                    next_look = time.monotonic() + TOPICS_EVERY
                    assigned = await self._assign_new(consumer, assigned)
                if not assigned:
                    await asyncio.sleep(0.5)
                    continue
                batches = await consumer.getmany(timeout_ms=200, max_records=5000)
                self.metrics.batch_done()
                for messages in batches.values():
                    for message in messages:
                        self._fold_or_skip(message)
                    self.metrics.consumed.inc(len(messages))
        finally:
            await consumer.stop()

    async def _assign_new(self, consumer, assigned: set[TopicPartition]) -> set[TopicPartition]:
        await consumer._client.force_metadata_update()  # topics created since; no topic is created
        wanted = self._wanted()
        new = [TopicPartition(topic, p) for topic in wanted for p in sorted(consumer.partitions_for_topic(topic) or ())
               if TopicPartition(topic, p) not in assigned]
        if not new:
            return assigned
        everything = assigned | set(new)
        positions = {tp: await consumer.position(tp) for tp in assigned}
        consumer.assign(sorted(everything, key=lambda tp: (tp.topic, tp.partition)))
        for tp, offset in positions.items():  # assign() forgets positions; read on where we were
            consumer.seek(tp, offset)
        whole = [tp for tp in new if wanted[tp.topic]]
        recent = [tp for tp in new if not wanted[tp.topic]]
        if whole:
            await consumer.seek_to_beginning(*whole)
        if recent:
            await self._seek_recent(consumer, recent)
        return everything

    async def _seek_recent(self, consumer, partitions: list[TopicPartition]) -> None:
        """The first record of the lookback window, but no more than dashboard_lookback_records
        before the partition's end. Tansu's ListOffsets by time is approximate (it answers offset 0
        for most times, and offset 0 with timestamp -1 past its last record), so the bound by count
        keeps the read short and `_fold` drops records older than the window."""
        since_ms = int(self.board.since * 1000)
        found = await consumer.offsets_for_times({tp: since_ms for tp in partitions})
        ends = await consumer.end_offsets(partitions)
        for tp in partitions:
            hit = found.get(tp)
            start = hit.offset if hit is not None and hit.timestamp >= 0 else ends[tp]
            consumer.seek(tp, max(start, ends[tp] - self.settings.dashboard_lookback_records, 0))

    def _fold_or_skip(self, message) -> None:
        """Fold one record; one that raises anything is counted and skipped (a figure it had half
        changed stays so: the dashboard is a view, the services' dead letters are the record)."""
        try:
            self._fold(message)
        except Exception as error:
            self.undecodable.labels(message.topic).inc()
            log.warning("dashboard: skipped %s[%d]@%d: %s", message.topic, message.partition, message.offset,
                        poison.describe(error))

    def _fold(self, message) -> None:
        topics = self.settings.topics
        try:
            name, data = self.catalog.decode(message.value)
        except DecodeError:
            if message.value is not None:  # a registry tombstone is no news
                self.undecodable.labels(message.topic).inc()
            return
        at = message.timestamp / 1000 if message.timestamp and message.timestamp > 0 else time.time()
        if at < self.board.since and message.topic != topics.institutions:
            return  # before the lookback window (see _seek_recent)
        if message.topic == topics.settlements:
            label = header(message.headers)
            kind = label.decode() if label else RECORD_OUTPUTS.get(name)
            if kind:
                self.board.result(kind, data, at)
        elif name == "DeadLetter":
            self.board.dead_letter(data)
            self.metrics.dead_letters.inc()
        elif name == "FraudSignal":
            self.board.fraud_signal(data)
        elif name == "ClearingStatement":
            self.board.clearing_statement(data)
        elif name == "Institution":
            self.board.institution(data)

    # ------------------------------------------------------------------ consumer lag
    async def _measure_lag(self) -> None:
        admin = kafka.admin(self.settings)
        ends = kafka.PartitionEnds(self.settings)
        try:
            await admin.start()
            await ends.start()
            while not self._closing.is_set():
                figures = await measure_lag(admin, ends, service_groups(self.settings),
                                            [getattr(self.settings.topics, n) for n in type(self.settings.topics).model_fields])
                for service, row in figures.items():
                    self.group_lag.labels(service).set(row["lag"] or 0)
                self.board.set_lag(figures, time.time())
                await asyncio.sleep(LAG_EVERY)
        finally:
            await ends.stop()
            await admin.close()

    # ------------------------------------------------------------------ the page
    def _encode(self) -> bytes:
        snapshot = self.board.snapshot(time.time())
        snapshot.update(instance=self.instance, started_at=self.started_at,
                        lookback_seconds=self.settings.dashboard_lookback_seconds)
        return orjson.dumps(snapshot)

    async def _broadcast(self) -> None:
        while not self._closing.is_set():
            self.latest = self._encode()
            fresh, self._fresh = self._fresh, asyncio.Event()
            fresh.set()
            await asyncio.sleep(TICK)

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self.access.middleware] if self.access else [])
        app.on_response_prepare.append(Access.on_prepare)
        if self.access:
            app.router.add_route("*", "/login", self.access.login)
            app.router.add_post("/logout", self.access.logout)
        app.router.add_get("/", self._page)
        app.router.add_get("/events", self._events)
        app.router.add_get("/snapshot.json", self._snapshot)
        app.router.add_get("/period.json", self._period)
        app.router.add_get("/static/plotly.min.js", self._plotly)
        app.router.add_get("/static/{name}", self._static)
        app.on_shutdown.append(self._on_shutdown)
        return app

    async def _on_shutdown(self, _app) -> None:
        self._closing.set()
        self._fresh.set()

    async def _page(self, _request) -> web.Response:
        return web.Response(body=_resource("index.html"), content_type="text/html", charset="utf-8")

    async def _static(self, request) -> web.Response:
        name = request.match_info["name"]
        if name not in STATIC:
            raise web.HTTPNotFound()
        return web.Response(body=_resource(name), content_type=STATIC[name], charset="utf-8")

    async def _plotly(self, _request) -> web.Response:
        return web.Response(body=plotly_js(), content_type="application/javascript", charset="utf-8",
                            headers={"Cache-Control": "public, max-age=86400"})

    async def _snapshot(self, _request) -> web.Response:
        return web.Response(body=self._encode(), content_type="application/json")

    async def _period(self, request) -> web.Response:
        if self.ledger is None:
            status, body = 503, {"error": "no ledger configured (GONGJI_DATABASE_URL)"}
        else:
            status, body = await self.ledger.answer(request.query.get("period", ""), self.board.region)
        return web.Response(status=status, body=orjson.dumps(body), content_type="application/json",
                            headers={"Cache-Control": "no-store"})

    async def _events(self, request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                               "X-Accel-Buffering": "no"})
        await response.prepare(request)
        self.pages.inc()
        try:
            await response.write(b"retry: 1000\n\n")  # EventSource reconnects after a second
            latest = self._encode()  # at once, so a new page is right before the next tick
            while not self._closing.is_set():
                fresh = self._fresh
                await response.write(b"event: snapshot\ndata: " + latest + b"\n\n")
                await fresh.wait()
                latest = self.latest
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self.pages.dec()
        return response



def tls_context(settings: Settings) -> ssl.SSLContext | None:
    """The page's TLS (TLS 1.2 at least) when a certificate and key are set; None: plain HTTP."""
    if not settings.dashboard_tls_certfile:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(settings.dashboard_tls_certfile, settings.dashboard_tls_keyfile)
    except (OSError, ssl.SSLError) as error:
        raise AccessError(f"dashboard TLS: {settings.dashboard_tls_certfile}, {settings.dashboard_tls_keyfile}: "
                          f"{error}") from None
    return context


def _resource(name: str) -> bytes:
    return importlib.resources.files("gongji.dashboard").joinpath("static", name).read_bytes()


_PLOTLY: list[bytes] = []


def plotly_js() -> bytes:
    """plotly.min.js as the pinned `plotly` wheel ships it, read once."""
    if not _PLOTLY:
        from plotly.offline import get_plotlyjs

        _PLOTLY.append(get_plotlyjs().encode())
    return _PLOTLY[0]


# ---------------------------------------------------------------------- consumer lag
async def measure_lag(admin: AIOKafkaAdminClient, ends: kafka.PartitionEnds, groups: dict[str, str],
                      topics: list[str]) -> dict[str, dict]:
    """Per service: its group's committed offsets against the partitions' ends, summed. Offsets
    are asked for every Gongji topic by name (Tansu cannot list a group's offsets without them); a
    group with none committed (not running yet) shows lag None."""
    partitions = await ends.partitions(topics)
    committed: dict[str, dict[TopicPartition, int]] = {}
    for service, group in groups.items():
        try:
            committed[service] = await kafka.committed_with(admin, group, partitions)
        except KafkaError as error:
            log.warning("dashboard: offsets of group %s: %s", group, error)
            committed[service] = {}
    needed = sorted({tp for offsets in committed.values() for tp in offsets}, key=lambda tp: (tp.topic, tp.partition))
    end = await ends.ends(needed)
    figures = {}
    for service, offsets in committed.items():
        by_topic: dict[str, int] = {}
        for tp, offset in offsets.items():
            by_topic[tp.topic] = by_topic.get(tp.topic, 0) + max(0, end[tp] - offset)
        figures[service] = {"group": groups[service], "lag": sum(by_topic.values()) if offsets else None,
                            "partitions": len(offsets), "topics": by_topic}
    return figures


# ---------------------------------------------------------------------- entry points
@dataclass
class Running:
    """A dashboard started by `start_dashboard`: its address, and how to stop it."""

    dashboard: Dashboard
    url: str

    async def stop(self) -> None:
        await self.dashboard.stop()


async def start_dashboard(settings: Settings, region_names: dict[str, str] | None = None,
                          catalog: SchemaCatalog | None = None,
                          port: int | None = None) -> Running:
    """Start a dashboard in the running event loop (for `gongji demo`); `await running.stop()` ends it.
    `port` overrides settings.dashboard_port (0: any free port; `running.url` says which)."""
    if port is not None:
        settings = settings.model_copy(update={"dashboard_port": port})
    dashboard = Dashboard(settings, catalog, region_names)
    return Running(dashboard, await dashboard.start())
