"""The clearing service: reads `settlements` and counts each cross-region result into its position
(gongji.clearing.store); at period close, one statement per pair of regions to `clearing.statements`.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from datetime import datetime, timezone

from aiokafka.structs import ConsumerRecord

from gongji.clearing.domain import contribution, empty, statement
from gongji.clearing.store import ClearingStore
from gongji.common import kafka, poison
from gongji.common.avro import DecodeError, SchemaCatalog
from gongji.settings import Settings
from gongji.common.observe import Metrics
from gongji.common.topic_admin import ensure_service_topics
from gongji.contract import wire
from gongji.contract.topics import service_topics

log = logging.getLogger("gongji.clearing")
SERVICE = "clearing"
RESULTS = {b"settlement", b"reversal"}  # TYPE_HEADER values this service counts


class ClearingService:
    def __init__(self, settings: Settings, catalog: SchemaCatalog, client):
        self.settings = settings
        self.catalog = catalog
        self.store = ClearingStore(client, settings.key_prefix)
        self.probe = poison.redis_probe(client, settings.key_prefix)
        self.counted = Counter()
        self.metrics = Metrics(SERVICE)

    async def run(self, stop: asyncio.Event) -> None:
        topics = self.settings.topics
        await ensure_service_topics(self.settings, service_topics(topics, "clearing"))
        await kafka.consume_batches(self.settings, self.settings.clearing_group, [topics.settlements], self.metrics,
                                    self.process, stop, probe=self.probe, catalog=self.catalog)

    async def process(self, messages: list[ConsumerRecord], producer) -> None:
        items, dead = [], []
        for message in messages:
            if wire.header(message.headers) not in RESULTS:
                continue  # rejections and credit results: nothing to clear
            try:
                _, result = self.catalog.decode(message.value)
                item = contribution(result)
            except (DecodeError, KeyError, ValueError) as error:
                dead.append((message, f"not a settlement result clearing can read: {poison.describe(error)}"))
                continue
            if item is not None:
                items.append((message, item))
        if items:
            open_from = await self.store.first_open_year()
            dead += [(message, f"a result of {item.ym}, a month clearing's window has closed (first open year "
                               f"{open_from}, GONGJI_CLEARING_WINDOW_YEARS): not counted, since it cannot be told "
                               "from a redelivery; count it by hand if it is new")
                     for message, item in items if int(item.ym[:4]) < open_from]
            items = [item for _, item in items if int(item.ym[:4]) >= open_from]
        if items:
            new = await self.store.apply(items)
            self.counted["new"] += new
            self.counted["seen"] += len(items)
            self.metrics.outputs.labels("counted").inc(new)
            self.metrics.outputs.labels("already counted").inc(len(items) - new)
            first_open = max(item.year for item in items) - self.settings.clearing_window_years
            if first_open > open_from:
                forgotten = await self.store.close(first_open)
                log.info("clearing: years before %d closed, the ids of %d months forgotten", first_open,
                         len(forgotten))
        self.metrics.dead_letters.inc(len(dead))
        await kafka.send_dead_letters(producer, self.settings, self.catalog, dead, SERVICE)
        self.metrics.consumed.inc(len(messages))


async def month_statements(settings: Settings, client, ym: str) -> list[dict]:
    """The month's statements as they stand, one per pair of regions; nothing published."""
    positions = await ClearingStore(client, settings.key_prefix).positions(ym)
    pairs = sorted({tuple(sorted(pair)) for pair in positions})
    closed_at = datetime.now(timezone.utc).isoformat()
    return [statement(ym, a, b, positions.get((a, b), empty()), positions.get((b, a), empty()), closed_at)
            for a, b in pairs]


async def close_month(settings: Settings, catalog: SchemaCatalog, client, ym: str) -> list[dict]:
    """Cut the month: one statement per pair of regions, published to clearing.statements. Closing
    again publishes the month as it stands then, under the same statement ids."""
    statements = await month_statements(settings, client, ym)
    producer = kafka.producer(settings)
    await producer.start()
    try:
        records = [(f"{s['region_a']}-{s['region_b']}".encode(), catalog.encode("ClearingStatement", s),
                    wire.headers(wire.CLEARING_STATEMENT, s["statement_id"]))
                   for s in statements]
        await asyncio.gather(*await kafka.publish(producer, settings.topics.clearing_statements, records))
    finally:
        await producer.stop()
    return statements
