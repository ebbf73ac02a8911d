"""The clearing service: reads `settlements`, keeps cross-region positions in Redis, and at period
close publishes one statement per pair of regions to `clearing.statements`.

Exactly-once effect without transactions: each position remembers the settlement ids it has
counted (`apply.lua`, one hash tag per position), so a redelivered or resent result adds nothing,
and a batch split to find a result that fails (gongji.common.poison) counts each result once.
"""

from __future__ import annotations

import asyncio
import importlib.resources
import logging
from collections import Counter
from datetime import datetime, timezone

from aiokafka.structs import ConsumerRecord

from gongji.clearing.domain import FIELDS, Contribution, contribution, empty, statement
from gongji.common import kafka, poison
from gongji.common.avro import DecodeError, SchemaCatalog
from gongji.settings import Settings
from gongji.common.observe import Metrics
from gongji.common.redis import LuaScript, run_pipeline
from gongji.common.topic_admin import ensure_service_topics
from gongji.contract.topics import service_topics

log = logging.getLogger("gongji.clearing")
SERVICE = "clearing"
RESULTS = {b"settlement", b"reversal"}  # gongji-type headers this service counts


class ClearingStore:
    """Positions on Redis: `<prefix>:{clr:<month>:<treatment>><insured>}:flow|seen`, and per month the
    set of pairs with a position, `<prefix>:clr:pairs:<month>`."""

    def __init__(self, client, prefix: str, timeout: float = 10.0):
        self.client = client
        self.prefix = prefix
        self.timeout = timeout
        self._apply = LuaScript(
            importlib.resources.files("gongji.clearing").joinpath("lua", "apply.lua").read_text("utf-8"))

    def _key(self, ym: str, treatment: str, insured: str, suffix: str) -> str:
        return f"{self.prefix}:{{clr:{ym}:{treatment}>{insured}}}:{suffix}"

    async def apply(self, items: list[Contribution]) -> int:
        """Count each item once; returns how many were new."""
        def build(pipe):
            for item in items:  # the month's index first: a position is never missed at close
                pipe.sadd(f"{self.prefix}:clr:pairs:{item.ym}", f"{item.treatment}>{item.insured}")
            for item in items:
                args = [item.setl_id]
                for name, value in item.amounts.items():
                    if value:
                        args += [name, str(value)]
                self._apply.queue(pipe, [self._key(item.ym, item.treatment, item.insured, "seen"),
                                         self._key(item.ym, item.treatment, item.insured, "flow")], args)
        replies = await run_pipeline(self.client, build, (self._apply,), self.timeout)
        return sum(reply == b"ok" for reply in replies[len(items):])

    async def months(self) -> list[str]:
        """The months with a position, in order (a scan: for closing and summing up, not the hot path)."""
        prefix = f"{self.prefix}:clr:pairs:"
        return sorted([key.decode()[len(prefix):] async for key in self.client.scan_iter(match=prefix + "*")])

    async def positions(self, ym: str) -> dict[tuple[str, str], dict[str, int]]:
        pairs = sorted(member.decode() for member in await self.client.smembers(f"{self.prefix}:clr:pairs:{ym}"))
        def build(pipe):
            for pair in pairs:
                pipe.hgetall(self._key(ym, *pair.split(">"), "flow"))
        replies = await run_pipeline(self.client, build, timeout=self.timeout)
        positions = {}
        for pair, raw in zip(pairs, replies):
            position = empty()
            position.update({field.decode(): int(value) for field, value in raw.items() if field.decode() in FIELDS})
            positions[tuple(pair.split(">"))] = position
        return positions


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
            if dict(message.headers or ()).get("gongji-type") not in RESULTS:
                continue  # rejections and credit results: nothing to clear
            try:
                _, result = self.catalog.decode(message.value)
                item = contribution(result)
            except (DecodeError, KeyError, ValueError) as error:
                dead.append((message, f"not a settlement result clearing can read: {poison.describe(error)}"))
                continue
            if item is not None:
                items.append(item)
        if items:
            new = await self.store.apply(items)
            self.counted["new"] += new
            self.counted["seen"] += len(items)
            self.metrics.outputs.labels("counted").inc(new)
            self.metrics.outputs.labels("already counted").inc(len(items) - new)
        self.metrics.dead_letters.inc(len(dead))
        await kafka.send_dead_letters(producer, self.settings, self.catalog, dead, SERVICE)
        self.metrics.consumed.inc(len(messages))


async def close_month(settings: Settings, catalog: SchemaCatalog, client, ym: str) -> list[dict]:
    """Cut the month: one statement per pair of regions, published to clearing.statements. Closing
    again publishes the month as it stands then, under the same statement ids."""
    positions = await ClearingStore(client, settings.key_prefix).positions(ym)
    pairs = sorted({tuple(sorted(pair)) for pair in positions})
    closed_at = datetime.now(timezone.utc).isoformat()
    statements = [statement(ym, a, b, positions.get((a, b), empty()), positions.get((b, a), empty()), closed_at)
                  for a, b in pairs]
    producer = kafka.producer(settings)
    await producer.start()
    try:
        records = [(f"{s['region_a']}-{s['region_b']}".encode(), catalog.encode("ClearingStatement", s),
                    [("gongji-type", b"clearing-statement"), ("gongji-id", s["statement_id"].encode())])
                   for s in statements]
        await asyncio.gather(*await kafka.publish(producer, settings.topics.clearing_statements, records))
    finally:
        await producer.stop()
    return statements
