"""The schemas topic: how a reader finds a writer's schema without a registry server.

A compacted topic keyed by the schema's fingerprint (hex), whose value is the schema's JSON. Every
service publishes its current schemas there when it starts. A reader that meets a fingerprint its
catalog does not know (a producer deployed with a newer schema) reads the topic once, registers
what it finds, and decodes again; Avro schema resolution does the rest.
"""

from __future__ import annotations

import logging
import time

from aiokafka import AIOKafkaProducer, TopicPartition

from gongji.common import kafka
from gongji.common.avro import SchemaCatalog, SchemaError
from gongji.settings import Settings

log = logging.getLogger("gongji.schemas")


class SchemaDirectory:
    def __init__(self, settings: Settings, catalog: SchemaCatalog, min_interval: float = 1.0):
        self.settings = settings
        self.catalog = catalog
        # A fingerprint already looked for is looked for again only after `min_interval`; junk with
        # random fingerprints costs at most one read of the topic per second.
        self.min_interval = min_interval
        self._looked_for: dict[bytes, float] = {}
        self._last_read = float("-inf")

    async def publish(self, producer: AIOKafkaProducer) -> None:
        """Publish the catalog's current schemas (compaction keeps one copy of each)."""
        for fingerprint, schema_json in self.catalog.current_schemas():
            await producer.send(self.settings.topics.schemas, schema_json.encode(), key=fingerprint.hex().encode())
        await producer.flush()

    async def learn(self, fingerprint: bytes) -> bool:
        """Look for the schema with `fingerprint` on the topic, registering every schema not known
        yet; True when the catalog knows `fingerprint` afterwards."""
        now = time.monotonic()
        if now - self._looked_for.get(fingerprint, float("-inf")) < self.min_interval \
                or now - self._last_read < self.min_interval / 10:
            return fingerprint in self.catalog.known_fingerprints()
        self._looked_for[fingerprint] = self._last_read = now
        topic = self.settings.topics.schemas
        consumer = kafka.consumer(self.settings, None)
        await consumer.start()
        learned = 0
        try:
            partitions = consumer.partitions_for_topic(topic) or set()
            consumer.assign([TopicPartition(topic, partition) for partition in sorted(partitions)])
            await consumer.seek_to_beginning()
            # Read until a poll comes back empty: Tansu's end offsets are not reliable (stack.py).
            while batches := await consumer.getmany(timeout_ms=300):
                for messages in batches.values():
                    for message in messages:
                        try:
                            before = len(self.catalog.known_fingerprints())
                            self.catalog.register(message.value)
                            learned += len(self.catalog.known_fingerprints()) - before
                        except SchemaError as error:
                            log.warning("schemas topic offset %d: not a usable schema: %s", message.offset, error)
        finally:
            await consumer.stop()
        if learned:
            log.info("learned %d writer schema(s) from %s", learned, topic)
        return fingerprint in self.catalog.known_fingerprints()
