"""Kafka clients as every Gongji service builds them, and the dead-letter record.

Every producer, consumer and admin client comes from `producer`, `consumer` and `admin` here: the
one place the security settings (GONGJI_KAFKA_SECURITY_PROTOCOL, SASL, TLS) are applied
(tests/unit/test_kafka_clients.py holds it).

Never the idempotent producer or transactions: Tansu does not support them, and correctness comes
from idempotent, conditional writes in Redis instead (docs/DURABILITY.md, "Exactly-once effect").
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from datetime import datetime, timezone

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.partitioner import DefaultPartitioner, murmur2
from aiokafka.structs import ConsumerRecord, TopicPartition

from gongji.common import poison, reachable
from gongji.common.avro import SchemaCatalog
from gongji.settings import Settings
from gongji.common.observe import Metrics, serve
from gongji.contract import wire

log = logging.getLogger("gongji.kafka")
LAG_EVERY = 5.0  # seconds between consumer-lag readings


_PARTITIONER = DefaultPartitioner()  # for a record with no key: a partition at random


class _KeyHashes(dict):
    """Key → its murmur2 hash as Kafka's default partitioner takes it (& 0x7FFFFFFF), kept once met:
    aiokafka's murmur2 is pure Python (3–7 µs a key) and a person's results all carry their key. Bounded."""

    def __missing__(self, key: bytes) -> int:
        hashed = murmur2(key) & 0x7FFFFFFF
        if len(self) >= 65_536:
            self.clear()
        self[key] = hashed
        return hashed


_HASHES = _KeyHashes()


def partition_of(key: bytes | None, partitions: list[int]) -> int:
    """The partition `producer.send` would choose for `key` among `partitions` (sorted): the Java
    client's default partitioner."""
    if key is None:
        return _PARTITIONER(key, partitions, partitions)
    return partitions[_HASHES[key] % len(partitions)]


class KafkaSettingsError(ValueError):
    """A CA, certificate or key file the settings name cannot be read or used."""


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """The TLS context of a client under `settings` (None for PLAINTEXT and SASL_PLAINTEXT): the
    broker's certificate verified against the CA file (the system's CAs when unset) with its
    hostname checked, and the client's certificate for mTLS."""
    if not settings.kafka_security_protocol.endswith("SSL"):
        return None
    try:
        context = ssl.create_default_context(
            cafile=str(settings.kafka_ssl_cafile) if settings.kafka_ssl_cafile else None)
    except (OSError, ssl.SSLError) as error:
        raise KafkaSettingsError(f"GONGJI_KAFKA_SSL_CAFILE={settings.kafka_ssl_cafile}: {error}") from None
    context.check_hostname, context.verify_mode = True, ssl.CERT_REQUIRED  # the defaults, said outright
    if settings.kafka_ssl_certfile:
        try:
            context.load_cert_chain(str(settings.kafka_ssl_certfile),
                                    str(settings.kafka_ssl_keyfile) if settings.kafka_ssl_keyfile else None)
        except (OSError, ssl.SSLError) as error:
            raise KafkaSettingsError(f"GONGJI_KAFKA_SSL_CERTFILE={settings.kafka_ssl_certfile}, GONGJI_KAFKA_SSL_"
                                     f"KEYFILE={settings.kafka_ssl_keyfile}: {error}") from None
    return context


def client_options(settings: Settings) -> dict:
    """Where the brokers are and how to authenticate to them: what every aiokafka client is given."""
    options: dict = {"bootstrap_servers": settings.kafka_bootstrap_servers,
                     "security_protocol": settings.kafka_security_protocol}
    context = ssl_context(settings)
    if context is not None:
        options["ssl_context"] = context
    if settings.kafka_security_protocol.startswith("SASL_"):
        options.update(sasl_mechanism=settings.kafka_sasl_mechanism,
                       sasl_plain_username=settings.kafka_sasl_username,
                       sasl_plain_password=settings.kafka_sasl_secret())
    return options


def producer(settings: Settings, **options) -> AIOKafkaProducer:
    """A producer as every Gongji writer builds it; `options` override the defaults."""
    defaults = dict(**client_options(settings), acks="all", enable_idempotence=False,
                    linger_ms=settings.kafka_linger_ms,
                    max_batch_size=256 * 1024)
    return AIOKafkaProducer(**{**defaults, **options})


def consumer(settings: Settings, group_id: str | None, *topics: str, **options) -> AIOKafkaConsumer:
    """A consumer as every Gongji reader builds it; `options` override the defaults."""
    defaults = dict(
        **client_options(settings),
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=4 * 1024 * 1024,
        # Tansu holds a fetch for up to fetch_max_wait_ms even when data is there: latency.
        **settings.fetch_options(group_id),
        **(settings.group_timeouts() if group_id else {}),
    )
    return AIOKafkaConsumer(*topics, **{**defaults, **options})


def admin(settings: Settings, **options) -> AIOKafkaAdminClient:
    return AIOKafkaAdminClient(**{**client_options(settings), **options})


class PartitionEnds:
    """Where partitions end, read by a group-less consumer of its own: the one way Gongji finds a
    partition's end outside a consuming loop (the dashboard's lag, `group_progress`, the rebuild).

    `end_offsets` (ListOffsets) is a lower bound on Tansu after batched sends (the last batch's base
    offset + 1); a fetch's highwater is right. So: seek to the listed end, fetch once (the little
    between the two is read and dropped), take the larger of the two. A consuming loop knows its own
    partitions' ends from its fetches (`record_lag`)."""

    def __init__(self, settings: Settings):
        self.consumer = consumer(settings, None)

    async def __aenter__(self) -> "PartitionEnds":
        await self.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.stop()

    async def start(self) -> None:
        await self.consumer.start()

    async def stop(self) -> None:
        await self.consumer.stop()

    async def partitions(self, topics: Iterable[str]) -> list[TopicPartition]:
        await self.consumer._client.force_metadata_update()
        return [TopicPartition(topic, p) for topic in topics
                for p in sorted(self.consumer.partitions_for_topic(topic) or ())]

    async def ends(self, partitions: list[TopicPartition], wait: float = 1.5) -> dict[TopicPartition, int]:
        if not partitions:
            return {}
        if set(partitions) != self.consumer.assignment():
            self.consumer.assign(partitions)
        listed = await self.consumer.end_offsets(partitions)
        for tp in partitions:
            self.consumer.seek(tp, listed[tp])
        asked = int(time.time() * 1000)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            await self.consumer.getmany(timeout_ms=100, max_records=10_000)
            if all((self.consumer.last_poll_timestamp(tp) or 0) >= asked for tp in partitions):
                break
        return {tp: max(listed[tp], self.consumer.highwater(tp) or 0) for tp in partitions}


def record_lag(metrics: Metrics, consumer_, done: Callable[[TopicPartition], int | None]) -> None:
    """Per partition assigned to a consuming loop: its end (the highwater its fetches saw: right on
    Tansu too, unlike end_offsets) less `done(partition)` (None: nothing to report yet)."""
    metrics.lag.clear()  # partitions revoked since are another consumer's to report
    for partition in consumer_.assignment():
        end, position = consumer_.highwater(partition), done(partition)
        if end is not None and position is not None:
            metrics.lag.labels(partition.topic, str(partition.partition)).set(max(0, end - position))


async def publish(producer: AIOKafkaProducer, topic: str,
                  records: Iterable[tuple[bytes | None, bytes, list[tuple[str, bytes]]]]) -> list[asyncio.Future]:
    """Send (key, value, headers) records in as few batches as fit, partitioned by key exactly as
    `producer.send` would (murmur2, like the Java client); returns futures to await.

    One future per batch rather than per message: `send` cost a tenth of a settlement worker's CPU.
    Each batch is closed before it is handed over, so it goes at once instead of lingering
    (GONGJI_KAFKA_LINGER_MS is for `send`, which fills batches one record at a time).
    """
    all_partitions = sorted(await producer.partitions_for(topic))
    batches: dict[int, object] = {}
    futures = []
    for key, value, headers in records:
        partition = partition_of(key, all_partitions)
        batch = batches.get(partition)
        if batch is None:
            batch = batches[partition] = producer.create_batch()
        if batch.append(key=key, value=value, timestamp=None, headers=headers) is None:
            batch.close()  # whole: sent at once, not after the producer's linger
            futures.append(await producer.send_batch(batch, topic, partition=partition))
            batch = batches[partition] = producer.create_batch()
            if batch.append(key=key, value=value, timestamp=None, headers=headers) is None:
                raise ValueError(f"a record of {len(value)} bytes does not fit in an empty batch")
    for partition, batch in batches.items():
        if batch.record_count():
            batch.close()
            futures.append(await producer.send_batch(batch, topic, partition=partition))
    return futures


def dead_letter(catalog: SchemaCatalog, message: ConsumerRecord, reason: str, service: str) -> bytes:
    """The DeadLetter record for `message`: where it came from, why, who refused it, its original bytes."""
    return catalog.encode("DeadLetter", {
        "topic": message.topic,
        "partition": message.partition,
        "offset": message.offset,
        "key": message.key,
        "reason": reason.encode("utf-8", "backslashreplace").decode("utf-8"),
        "original": message.value if message.value is not None else b"",
        "failed_at": datetime.now(timezone.utc).isoformat(),
        "service": service,
    })


def dead_letter_headers(service: str) -> list[tuple[str, bytes]]:
    """A dead letter's headers: which service refused it, so that one bad message read by two
    services is two letters a reader tells apart (service + topic + partition + offset) without
    decoding them."""
    return [(wire.TYPE_HEADER, wire.DEAD_LETTER.encode()), (wire.SERVICE_HEADER, service.encode())]


def dead_letter_record(catalog: SchemaCatalog, message: ConsumerRecord, reason: str,
                       service: str) -> tuple[bytes | None, bytes, list[tuple[str, bytes]]]:
    """(key, value, headers) of `message`'s dead letter, for `publish`."""
    return message.key, dead_letter(catalog, message, reason, service), dead_letter_headers(service)


async def send_dead_letters(producer: AIOKafkaProducer, settings: Settings, catalog: SchemaCatalog,
                            dead: list[tuple[ConsumerRecord, str]], service: str) -> None:
    """Each (message, reason) to `dead-letters` under the message's own key; returns once sent."""
    if dead:
        letters = [dead_letter_record(catalog, message, reason, service) for message, reason in dead]
        await asyncio.gather(*await publish(producer, settings.topics.dead_letters, letters))


def policy(settings: Settings, service: str, probe: Callable[[], Awaitable[None]],
           dead: Callable[[ConsumerRecord, str], Awaitable[None]],
           outages: tuple[type[BaseException], ...] = ()) -> poison.Policy[ConsumerRecord]:
    """The poison-message policy of `service`, configured by `settings`."""
    return poison.Policy(service, probe, dead, retry_transient_attempts=settings.retry_transient_attempts,
                         probe_timeout=settings.probe_timeout_seconds,
                         backoff=poison.Backoff(settings.retry_initial_seconds, settings.retry_max_seconds),
                         outages=outages, describe_item=where)


def where(message: ConsumerRecord) -> str:
    """A message named by topic, partition and offset (never by its key: a person's id)."""
    return f"{message.topic}[{message.partition}]@{message.offset}"


async def kafka_answers(producer: AIOKafkaProducer) -> None:
    """Raises unless the brokers answer a metadata request."""
    await producer.client.fetch_all_metadata()


class BatchStep:
    """How every consumer loop takes a polled batch: its work (handling, publishing, committing) done
    whole, or, when that fails (a server away, a commit refused by a rebalance), its partitions sought
    back to the batch's first offsets and polled again after a capped exponential backoff, said once
    per outage (gongji.common.reachable) and counted in the metrics."""

    def __init__(self, settings: Settings, service: str, metrics: Metrics, stop: asyncio.Event):
        self.metrics, self.stop = metrics, stop
        self.outage = poison.Backoff(settings.retry_initial_seconds, settings.retry_max_seconds)
        self.said = reachable.OutageLog(service, reachable.needed(settings, service), settings.retry_max_seconds,
                                        settings.probe_timeout_seconds)

    async def take(self, consumer_: AIOKafkaConsumer, batches: dict, count: int,
                   work: Callable[[], Awaitable[None]]) -> bool:
        """Run `work` for the `count` messages polled as `batches`; False when it must be done again."""
        metrics = self.metrics
        metrics.batch_started()
        try:
            await work()
        except asyncio.CancelledError:
            raise
        except Exception as error:  # an outage, or the commit refused (a rebalance)
            metrics.batch_failed()
            metrics.retried.inc()
            delay = self.outage.next()
            await self.said.failed(f"batch of {count} not done ({poison.describe(error)})", delay)
            assigned = consumer_.assignment()
            for partition, records in batches.items():
                # A partition lost to a rebalance meanwhile is its new owner's to redo.
                if partition in assigned:
                    consumer_.seek(partition, records[0].offset)
            try:
                await asyncio.wait_for(self.stop.wait(), delay)
            except asyncio.TimeoutError:
                pass
            return False
        metrics.batch_done()
        self.outage.reset()
        self.said.done()
        return True


async def consume_batches(
    settings: Settings,
    group: str,
    topics: list[str],
    metrics: Metrics,
    handle: Callable[[list[ConsumerRecord], AIOKafkaProducer], Awaitable[object]],
    stop: asyncio.Event,
    *,
    started: Callable[[AIOKafkaProducer], Awaitable[None]] | None = None,
    polled: Callable[[AIOKafkaConsumer], None] | None = None,
    probe: Callable[[], Awaitable[None]] | None = None,
    catalog: SchemaCatalog | None = None,
    outages: tuple[type[BaseException], ...] = (),
    listener: Callable[[AIOKafkaConsumer], ConsumerRebalanceListener] | None = None,
    dead_lettered: Callable[[list[ConsumerRecord]], Awaitable[None]] | None = None,
) -> None:
    """The loop every Gongji service runs until `stop`: poll a batch, `handle` it (which publishes
    what it produces), and only then commit the offsets.

    When handling fails, gongji.common.poison decides: while `probe` (the service's own servers) and
    the brokers answer, the message that fails is found by splitting the batch and goes to
    `dead-letters` naming `metrics.service`; when a server is away, the batch is sought back and
    consumed again after a capped exponential backoff, and /healthz turns 503 after
    settings.stall_seconds. Serves the service's metrics and health while it runs, when
    settings.metrics_port is set."""
    server = serve(metrics, settings.metrics_host, settings.metrics_port, settings.stall_seconds,
                   settings.metrics_token_value()) if settings.metrics_port else None
    producer_ = producer(settings)
    consumer_ = consumer(settings, group, *([] if listener else topics))
    if listener is not None:  # told of each assignment (the settlement service checks its Redis then)
        consumer_.subscribe(topics, listener=listener(consumer_))
    catalog = catalog or SchemaCatalog()
    service = metrics.service

    async def servers_answer() -> None:
        await kafka_answers(producer_)
        if probe is not None:
            await probe()

    async def dead(message: ConsumerRecord, reason: str) -> None:
        await send_dead_letters(producer_, settings, catalog, [(message, reason)], service)
        metrics.dead_letters.inc()
        if dead_lettered is not None:  # the service's own note that the message is answered
            await dead_lettered([message])

    rules = policy(settings, service, servers_answer, dead, outages)
    step = BatchStep(settings, service, metrics, stop)
    await producer_.start()
    try:
        if started is not None:
            await started(producer_)
        await consumer_.start()
        try:
            next_lag = time.monotonic()
            while not stop.is_set():
                batches = await consumer_.getmany(timeout_ms=200, max_records=settings.batch_max_records)
                metrics.polled()
                if polled is not None:
                    polled(consumer_)
                if time.monotonic() >= next_lag:
                    next_lag = time.monotonic() + LAG_EVERY
                    positions = {tp: await consumer_.position(tp) for tp in consumer_.assignment()}
                    record_lag(metrics, consumer_, positions.get)
                messages = [message for partition in sorted(batches) for message in batches[partition]]
                if not messages:
                    metrics.idle()
                    continue

                async def work() -> None:
                    with metrics.batch_seconds.time():
                        await rules.handle(messages, lambda part: handle(list(part), producer_))
                        await consumer_.commit()

                await step.take(consumer_, batches, len(messages), work)
        finally:
            await consumer_.stop()
    finally:
        await producer_.stop()
        if server is not None:
            server.shutdown()


async def committed_offsets(settings: Settings, group: str,
                            partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
    """The offsets `group` has committed on `partitions` (those it never committed left out)."""
    client = admin(settings)
    await client.start()
    try:
        return await committed_with(client, group, partitions)
    finally:
        await client.close()


async def committed_with(client: AIOKafkaAdminClient, group: str,
                         partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
    """`committed_offsets` on an admin client already started. The partitions are named to the
    admin call: Tansu's answer to a whole-group OffsetFetch breaks aiokafka's decoder."""
    committed = await client.list_consumer_group_offsets(group, partitions=partitions) if partitions else {}
    return {tp: meta.offset for tp, meta in committed.items() if meta is not None and meta.offset >= 0}


@asynccontextmanager
async def group_progress(settings: Settings, topic: str):
    """`progress(group)` → (offsets `group` has committed on `topic`, the topic's end), each summed
    over its partitions; the ends (PartitionEnds) are read again by each call."""
    client = admin(settings)
    async with PartitionEnds(settings) as reader:
        await client.start()
        try:
            partitions = await reader.partitions([topic])

            async def progress(group: str) -> tuple[int, int]:
                done = await committed_with(client, group, partitions)
                return sum(done.values()), sum((await reader.ends(partitions)).values())

            yield progress
        finally:
            await client.close()
