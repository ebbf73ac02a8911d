"""The ledger service (`gongji run ledger`): reads `settlements` in its own consumer group and books
each settlement, reversal and account credit as a balanced journal entry in PostgreSQL.

Exactly-once effect without transactions across Kafka and PostgreSQL: a batch is booked in one
database transaction, and only then are its offsets committed. A crash in between redelivers the
batch, whose entries are already there under their setl_id / credit_id primary keys and are left
alone. Results the ledger cannot book go to `dead-letters` with the reason: undecodable, not
balancing, or refused by PostgreSQL as data (a NUL byte in a text, an amount past numeric(16,2)):
the batch is split until the one result is found (gongji.common.poison), so the partition moves on.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter

from aiokafka.structs import ConsumerRecord
from prometheus_client import Counter as PrometheusCounter

from gongji.common import kafka, poison
from gongji.common.avro import DecodeError, SchemaCatalog
from gongji.settings import Settings
from gongji.common.observe import Metrics
from gongji.common.topic_admin import ensure_service_topics
from gongji.contract.topics import service_topics
from gongji.contract.wire import RECORD_OUTPUTS, header
from gongji.ledger.domain import Unbookable, entry_for
from gongji.ledger.store import LedgerStore

log = logging.getLogger("gongji.ledger")
SERVICE = "ledger"
BOOKED = {kind.encode(): kind for kind in ("settlement", "reversal", "credit")}  # TYPE_HEADER values that move money


class LedgerService:
    def __init__(self, settings: Settings, catalog: SchemaCatalog, store: LedgerStore):
        self.settings = settings
        self.catalog = catalog
        self.store = store
        self.booked = Counter()
        self.metrics = Metrics(SERVICE)
        self.posted = PrometheusCounter("gongji_ledger_posted_fen", "Debits and credits (fen) of the entries booked, "
                                        "new or found booked", ["side"], registry=self.metrics.registry)

    async def run(self, stop: asyncio.Event) -> None:
        topics = self.settings.topics
        await ensure_service_topics(self.settings, service_topics(topics, "ledger"))
        await kafka.consume_batches(self.settings, self.settings.ledger_group, [topics.settlements], self.metrics,
                                    self.process, stop, probe=self.store.ping, catalog=self.catalog)

    async def process(self, messages: list[ConsumerRecord], producer) -> None:
        entries, dead = [], []
        decode = self.catalog.decode_unscaled
        for message in messages:
            label = header(message.headers)
            if label is not None and label not in BOOKED:
                continue  # rejections: nothing moved, nothing to book
            try:
                # Amounts stay the wire's unscaled integers (fen): entry_for reads them as they are.
                name, result, _ = decode(message.value)
                # The header saves decoding rejections; without one (another writer), the record says.
                kind = BOOKED[label] if label is not None else RECORD_OUTPUTS.get(name)
                if kind not in BOOKED.values():
                    continue
                entries.append((entry_for(kind, result), (message.topic, message.partition, message.offset)))
            except (DecodeError, Unbookable) as error:
                dead.append((message, f"not a result the ledger can book: {poison.describe(error)}"))
        if entries:
            booked = await self.store.book(entries)  # raises: an outage, or a result PostgreSQL refuses
            self.booked["new"] += booked.entries
            self.booked["seen"] += len(entries)
            self.metrics.outputs.labels("booked").inc(booked.entries)
            self.metrics.outputs.labels("already booked").inc(len(entries) - booked.entries)
            self.posted.labels("debit").inc(sum(entry.debits for entry, _ in entries))
            self.posted.labels("credit").inc(sum(entry.credits for entry, _ in entries))
        self.metrics.dead_letters.inc(len(dead))
        for message, reason in dead:
            log.warning("ledger: %s (%s[%d]@%d)", reason, message.topic, message.partition, message.offset)
        await kafka.send_dead_letters(producer, self.settings, self.catalog, dead, SERVICE)
        self.metrics.consumed.inc(len(messages))
