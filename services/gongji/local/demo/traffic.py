"""The demo's traffic: the registry, the opening credits, then claims at a steady rate with a
deliberately bad message now and then; and the results read back into the run's figures."""

from __future__ import annotations

import asyncio
import copy
import sys
import time
import uuid

from aiokafka import TopicPartition

from gongji.common import kafka
from gongji.common.avro import SchemaCatalog
from gongji.common.redis import client_for
from gongji.local.demo.figures import Run
from gongji.local.errors import DemoError
from gongji.common.signing import Key, signer
from gongji.local.launch import Row, encode, row as input_row
from gongji.local.synthetic import Traffic
from gongji.settings import Settings
from gongji.settlement.redis_store import RedisStore

BAD_EVERY = 500  # one deliberately bad message per 500 on `claims`, the first as the 250th
JUNK = b"GONGJI-DEMO-JUNK "  # starts every junk message, so its dead letter is recognised
REGISTRY_TIMEOUT = 120.0


async def feed(run: Run, catalog: SchemaCatalog, traffic: Traffic, stop: asyncio.Event) -> None:
    """Registry, then opening credits once the service has the registry, then claims at the rate."""
    settings = run.settings
    key = signer(settings)  # the configured input key (the local stack's: always one)
    producer = kafka.producer(settings)
    await producer.start()
    try:
        run.phase = "sending the registry"
        run.sent.registry = await _send_rows(producer, encode(catalog, settings, traffic.registry(), key))
        await wait_registered(settings, traffic, stop)
        if stop.is_set():
            return
        run.phase = "sending opening credits"
        run.sent.credits = await _send_rows(producer, encode(catalog, settings, traffic.openings(), key))
        run.phase = "settling"
        await _stream_claims(run, producer, catalog, traffic, stop, key)
    finally:
        await producer.stop()


async def _send_rows(producer, rows) -> int:
    """Send rows and wait until the broker has them all; returns how many."""
    await asyncio.gather(*[await _send(producer, row) for row in rows])
    return len(rows)


async def _send(producer, row) -> asyncio.Future:
    topic, key, value, _ident, headers = row
    return await producer.send(topic, value, key=key, headers=headers)


async def wait_registered(settings: Settings, traffic: Traffic, stop: asyncio.Event) -> None:
    """Wait until the service has stored every person and institution, and the catalogue (the
    registry topics are topics of their own, so nothing orders them before the claims): settlement's
    own reads."""
    client = client_for(settings)
    store = RedisStore(client, settings.key_prefix)
    persons = [row["psn_no"] for row in traffic.persons]
    institutions = [row["fixmedins_code"] for row in traffic.institutions]
    items = {(row["admdvs"], row["med_list_codg"]) for kind, row in traffic.registry() if kind == "catalogue"}
    deadline = time.monotonic() + REGISTRY_TIMEOUT
    try:
        while not stop.is_set():
            snapshot = await store.read(persons, institutions, ())
            if all(snapshot.persons.values()) and all(snapshot.institutions.values()) and (
                    not items or all((await store.read_catalogue(items)).values())):
                return
            if time.monotonic() > deadline:
                raise DemoError(f"the settlement service did not store the registry within {REGISTRY_TIMEOUT:.0f} s")
            await asyncio.sleep(0.2)
    finally:
        await client.aclose()


async def _stream_claims(run: Run, producer, catalog: SchemaCatalog, traffic: Traffic, stop: asyncio.Event,
                         key: Key | None) -> None:
    """Traffic.stream at `run.rate` messages a second, paced by the clock, until `stop`."""
    settings, sent = run.settings, run.sent
    events = traffic.stream(sys.maxsize)
    sent.claims_since = start = time.monotonic()
    last_claim = None
    while not stop.is_set():
        due = int((time.monotonic() - start) * run.rate)
        deliveries = []
        while sent.claims < due:
            kind, data = next(events)
            last_claim = data if kind == "claim" else last_claim
            deliveries.append(await _send(producer, encode(catalog, settings, [(kind, data)], key)[0]))
            sent.claims += 1
            if sent.claims % BAD_EVERY == BAD_EVERY // 2 and last_claim:
                deliveries.append(await _send(producer, bad_input(run, catalog, last_claim, key)))
        await asyncio.gather(*deliveries)
        await wait_set(stop, 0.02)
    sent.claims_until = time.monotonic()


def bad_input(run: Run, catalog: SchemaCatalog, claim: dict, key: Key | None = None) -> Row:
    """A deliberately bad message for `claims`, junk bytes and a negative amount in turn. Both end
    as dead letters; the claim with a negative amount also gets an INVALID_CLAIM rejection."""
    sent, settings = run.sent, run.settings
    if sent.junk <= sent.negative:
        sent.junk += 1
        sent.claims += 1
        # Signed like the rest: it is dead-lettered for what it holds, not for want of a signature.
        return input_row(settings, "claim", b"demo-junk", JUNK + uuid.uuid4().bytes, "junk", key)
    sent.negative += 1
    sent.claims += 1
    bad = copy.deepcopy(claim)
    bad["claim_id"] = f"{settings.key_prefix}NEG{sent.negative:06d}"
    line = bad["fee_details"][0]
    line["det_item_fee_sumamt"] = -line["det_item_fee_sumamt"]
    return encode(catalog, settings, [("claim", bad)], key)[0]


async def wait_set(event: asyncio.Event, seconds: float) -> bool:
    """Wait for `event` at most `seconds`; whether it is set."""
    try:
        await asyncio.wait_for(event.wait(), seconds)
    except asyncio.TimeoutError:
        pass
    return event.is_set()


async def read_results(run: Run, catalog: SchemaCatalog, done: asyncio.Event) -> None:
    """Decode every record on `settlements`, `dead-letters` and `fraud.signals` into the run's
    figures, until `done`."""
    topics = run.settings.topics
    consumer = kafka.consumer(run.settings, None)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, number)
                      for topic in (topics.settlements, topics.dead_letters, topics.fraud_signals)
                      for number in sorted(consumer.partitions_for_topic(topic) or ())]
        if not partitions:
            raise DemoError(f"topics {topics.settlements} and {topics.dead_letters} have no partitions")
        consumer.assign(partitions)
        await consumer.seek_to_beginning()
        while not done.is_set():
            batches = await consumer.getmany(timeout_ms=100, max_records=5000)
            for messages in batches.values():
                for message in messages:
                    name, data = catalog.decode(message.value)
                    at = message.timestamp / 1000 if message.timestamp and message.timestamp > 0 else time.time()
                    run.fold(name, data, at)
    finally:
        await consumer.stop()
