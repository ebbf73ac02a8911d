"""The fraud service's state on its changelog topic (issue 12, in place of faust's tables): records
sent to a chosen partition in batches, a worker's partitions read back on assignment, and the
rebalance listener that keeps its buckets to the partitions it holds (gongji.fraud.store)."""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Awaitable, Callable, Iterable

from aiokafka import ConsumerRebalanceListener, TopicPartition

from gongji.common import kafka
from gongji.fraud.store import ChangelogBuckets
from gongji.settings import Settings

log = logging.getLogger("gongji.fraud")


async def send(producer, topic: str, partition: int, records: Iterable[tuple[bytes, bytes]]) -> list:
    """(key, value) records to one partition in as few batches as fit; returns futures to await."""
    futures, batch = [], producer.create_batch()
    for key, value in records:
        if batch.append(key=key, value=value, timestamp=None) is None:
            futures.append(await producer.send_batch(batch, topic, partition=partition))
            batch = producer.create_batch()
            if batch.append(key=key, value=value, timestamp=None) is None:
                raise ValueError(f"a record of {len(value)} bytes does not fit in an empty batch")
    if batch.record_count():
        futures.append(await producer.send_batch(batch, topic, partition=partition))
    return futures


async def restore(settings: Settings, topic: str, buckets: ChangelogBuckets, partitions: set[int]) -> None:
    """The buckets of `partitions` read back from the changelog `topic`, to its end (the highwater a
    fetch reports: Tansu's ListOffsets can be short)."""
    if not partitions:
        return
    started = time.monotonic()
    reader = kafka.consumer(settings, None)
    await reader.start()
    try:
        wanted = [TopicPartition(topic, p) for p in sorted(partitions)]
        reader.assign(wanted)
        await reader.seek_to_beginning(*wanted)
        asked, done, count = int(time.time() * 1000), set(), 0
        while len(done) < len(wanted):
            batches = await reader.getmany(timeout_ms=200, max_records=10_000)
            for tp, records in batches.items():
                buckets.load(tp.partition, ((r.key, r.value) for r in records))
                count += len(records)
            for tp in wanted:
                polled = reader.last_poll_timestamp(tp) or 0
                if polled >= asked and await reader.position(tp) >= (reader.highwater(tp) or 0):
                    done.add(tp)
    finally:
        await reader.stop()
    log.info("fraud: %d changelog records of partitions %s read back in %.1f s", count, sorted(partitions),
             time.monotonic() - started)
    gc.freeze()  # what was read back lives on: no collection need look through it again


class Rebalance(ConsumerRebalanceListener):
    """A new assignment: the buckets of partitions no longer this worker's are forgotten, those of
    partitions new to it read back from the changelog, before any of their input is read (after the
    batch under way, which commits first: `working` is held while a batch runs). A partition kept
    across a rebalance keeps its buckets: no other worker held it meanwhile (the group revokes
    everything before it assigns)."""

    def __init__(self, working: asyncio.Lock, buckets: ChangelogBuckets,
                 restore: Callable[[set[int]], Awaitable[None]],
                 checkpoint: Callable[[], Awaitable[None]] | None = None):
        self.working = working
        self.buckets = buckets
        self.restore = restore
        self.checkpoint = checkpoint
        self.held: set[int] = set()

    async def on_partitions_revoked(self, revoked) -> None:
        async with self.working:  # the batch under way is done first, then saved and committed
            if self.checkpoint is None:
                return
            try:
                await self.checkpoint()
            except Exception as error:  # the next owner reads again what came after the last one
                log.warning("fraud: no checkpoint before the rebalance: %s", error)

    async def on_partitions_assigned(self, assigned) -> None:
        given = {tp.partition for tp in assigned}
        async with self.working:
            self.buckets.drop(self.held - given)
            await self.restore(given - self.held)
            self.held = given
