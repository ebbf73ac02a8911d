"""The latency settings and the bench's latency phase in pure code (issue 12): the fetch wait and the
linger reach every client the factories build, the groups downstream of `settlements` alone wait
for fuller fetches, `kafka.publish` hands its batches over closed (sent
at once, not after the linger), the paced sender keeps its schedule and times each claim from when
it was due, and the percentiles are the ones printed."""

from __future__ import annotations

import asyncio
import time

import pytest
from aiokafka.producer.message_accumulator import BatchBuilder

from gongji.common import kafka
from gongji.local.bench_latency import percentiles, send_paced
from gongji.settings import Settings

pytestmark = pytest.mark.unit


class Producer:
    """What kafka.publish uses of an AIOKafkaProducer, keeping every batch handed over."""

    def __init__(self, partitions: int = 6):
        self.partitions = set(range(partitions))
        self.sent: list[tuple[str, int, BatchBuilder, bool, float]] = []

    async def partitions_for(self, topic):
        return self.partitions

    def create_batch(self):
        return BatchBuilder(16384, 0)

    async def send_batch(self, batch, topic, *, partition):
        self.sent.append((topic, partition, batch, batch.closed(), time.perf_counter()))
        future = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future


async def test_the_fetch_wait_and_the_linger_come_from_the_settings():
    settings = Settings(kafka_fetch_max_wait_ms=7, kafka_linger_ms=3)
    assert kafka.consumer(settings, "g", "t")._fetch_max_wait_ms == 7
    assert kafka.producer(settings)._message_accumulator._linger_time == 0.003
    assert kafka.consumer(settings, None, fetch_max_wait_ms=1)._fetch_max_wait_ms == 1  # a caller's own
    env = Settings(kafka_fetch_max_wait_ms=7).to_env()
    assert env["GONGJI_KAFKA_FETCH_MAX_WAIT_MS"] == "7"  # and a child process gets them


async def test_only_the_downstream_groups_wait_for_fuller_fetches():
    settings = Settings(kafka_fetch_max_wait_ms=7, kafka_downstream_fetch_min_bytes=65536,
                        kafka_downstream_fetch_max_wait_ms=250, topic_prefix="t.", fraud_group="f")
    for service in ("ledger", "clearing"):
        consumer = kafka.consumer(settings, settings.kafka_group(service), "settlements")
        assert (consumer._fetch_min_bytes, consumer._fetch_max_wait_ms) == (65536, 250), service
    fraud = kafka.consumer(settings.model_copy(update={"fraud": settings.fraud.model_copy(
        update={"fetch_min_bytes": 4096, "fetch_max_wait_ms": 90})}), settings.kafka_group("fraud"), "settlements")
    assert (fraud._fetch_min_bytes, fraud._fetch_max_wait_ms) == (4096, 90)  # its own, not the downstream's
    assert settings.kafka_group("fraud") == "t.f"  # the fraud group carries the prefix, and is found by it
    for group in (settings.settlement_group, None, "f"):
        consumer = kafka.consumer(settings, group, "claims")
        assert (consumer._fetch_min_bytes, consumer._fetch_max_wait_ms) == (1, 7), group


async def test_publish_hands_over_every_batch_closed_so_none_waits_for_the_linger():
    producer = Producer()
    records = [(f"p{n}".encode(), b"x" * 300, []) for n in range(400)]  # several batches a partition
    await asyncio.gather(*await kafka.publish(producer, "settlements", records))
    assert len(producer.sent) > len(producer.partitions)
    assert all(closed for _, _, _, closed, _ in producer.sent)
    assert sum(batch.record_count() for _, _, batch, _, _ in producer.sent) == 400


async def test_the_paced_sender_keeps_the_schedule_and_times_each_claim_from_when_it_was_due():
    producer = Producer()
    rate, count = 2000, 300
    messages = [("claims", f"p{n % 37}".encode(), b"v", f"c{n}", []) for n in range(count)]
    messages.append(("claims", b"p1", b"v", "c5", []))  # a resend: timed from its first send
    start = time.perf_counter()
    due = await send_paced(producer, messages, rate)
    elapsed = time.perf_counter() - start
    assert list(due) == [f"c{n}" for n in range(count)]
    assert sum(batch.record_count() for _, _, batch, _, _ in producer.sent) == count + 1
    gaps = [due[f"c{n + 1}"] - due[f"c{n}"] for n in range(count - 1)]
    assert min(gaps) == pytest.approx(1 / rate) and max(gaps) == pytest.approx(1 / rate)
    assert due["c0"] >= start and elapsed >= (count - 1) / rate  # not faster than the rate
    # nothing is handed over before it is due
    by_id = {}
    for _, _, batch, _, at in producer.sent:
        for _ in range(batch.record_count()):
            by_id[len(by_id)] = at
    assert all(by_id[n] >= start + n / rate for n in range(count))


def test_percentiles_are_p50_p95_p99_and_the_max():
    values = [float(v) for v in range(1, 1001)]
    figures = percentiles(values[::-1])
    assert 500 <= figures["p50_ms"] <= 501 and 950 <= figures["p95_ms"] <= 951
    assert 990 <= figures["p99_ms"] <= 991 and figures["max_ms"] == 1000
    assert percentiles([4.0]) == {"p50_ms": 4.0, "p95_ms": 4.0, "p99_ms": 4.0, "max_ms": 4.0}
