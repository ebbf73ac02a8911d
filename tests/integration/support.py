"""Helpers for integration tests: settings isolated per test, producing events, reading topics."""

from __future__ import annotations

import asyncio
from decimal import Decimal
import time
from collections.abc import Callable, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import urlsplit

from aiokafka import TopicPartition

from gongji.common import kafka
from gongji.common.avro import DecodeError, SchemaCatalog, decimal_bytes
from gongji.common.redis import client_for
from gongji.settings import Settings
from gongji.local.credentials import FIELDS, OPERATOR, credentials, for_role, read_secret, secret_names
from gongji.local.launch import input_topic
from gongji.local.store_users import ADMIN
from gongji.contract.wire import INPUT_RECORDS

CATALOG = SchemaCatalog()


def loose(name: str, record: dict) -> bytes:
    """`record` encoded as a careless writer would: decimals past the schema's precision too (the
    reader does not check it; fastavro's writer would refuse)."""
    def walk(schema, value):
        if isinstance(schema, list):  # a union: the branch the value fits
            if value is None:
                return None
            return walk(next(branch for branch in schema if branch != "null"), value)
        if isinstance(schema, dict):
            if schema.get("logicalType") == "decimal":
                return decimal_bytes(int(Decimal(value).scaleb(schema["scale"])))
            if schema["type"] == "record":
                return {field["name"]: walk(field["type"], value.get(field["name"])) for field in schema["fields"]}
            if schema["type"] == "array":
                return [walk(schema["items"], item) for item in value]
            return walk(schema["type"], value)
        return value
    return CATALOG.encode_unscaled(name, walk(CATALOG.schema(name), record))


def settings_for(stack, uniq: str, **changes) -> Settings:
    """Settings isolated for one test, with the stack's operator credentials (the Redis admin, the
    ledger's owner): what test helpers use. A service gets its own through `as_service`."""
    timeouts = stack.group_timeouts
    settings = Settings(
        **stack.kafka_settings(), redis_url=stack.redis_url,
        topic_prefix=f"{uniq}.", key_prefix=uniq, settlement_group=f"{uniq}-settlement", partitions=3,
        kafka_session_timeout_ms=timeouts["session_timeout_ms"],
        kafka_heartbeat_interval_ms=timeouts["heartbeat_interval_ms"],
        kafka_rebalance_timeout_ms=timeouts["rebalance_timeout_ms"], **changes)
    return for_role(settings, stack.credentials, OPERATOR).model_copy(
        update={name: value for name, value in changes.items() if name in FIELDS})


def as_service(settings: Settings, service: str) -> Settings:
    """The operator's `settings` (settings_for) with `service`'s own credentials and no other's, as
    the local stack gives its child processes; unchanged on servers the environment names."""
    if settings.redis_username != ADMIN or settings.redis_password_file is None:
        return settings
    folder = settings.redis_password_file.parent  # the stack's secrets: one file per password
    port = urlsplit(settings.database_url).port if settings.database_url else None
    return for_role(settings, credentials({name: folder / name for name in secret_names()}, port), service)


def acl_args(stack, path) -> list[str]:
    """`--aclfile` for a Redis server a test starts itself: the local stack's users and passwords
    (none on servers the environment names)."""
    from gongji.local.credentials import write_acl

    if not stack.credentials:
        return []
    folder = Path(stack.credentials[OPERATOR]["redis_password_file"]).parent
    return ["--aclfile", str(write_acl(Path(path), {name: folder / name for name in secret_names()}, None))]


def admin_credentials(stack) -> dict[str, str | None]:
    """username and password of the stack's Redis admin, for redis-py (empty on configured servers)."""
    return service_credentials(stack, OPERATOR)


def service_credentials(stack, role: str) -> dict[str, str | None]:
    """username and password of `role`'s Redis user on the local stack (empty on configured servers)."""
    if not stack.credentials:
        return {}
    own = stack.credentials[role]
    return {"username": own["redis_username"], "password": read_secret(own["redis_password_file"])}


def migrated(settings: Settings) -> Settings:
    """`gongji ledger migrate` for the operator's `settings` (the owner, granting the writer); returns
    the ledger service's settings (the writer role)."""
    from gongji.local.launch import migrate_ledger

    migrate_ledger(settings)
    return as_service(settings, "ledger")


async def ledger_store(settings: Settings):
    """The ledger's schema migrated by the owner, and a LedgerStore on it as the writer role."""
    from gongji.ledger.store import LedgerStore

    ledger = migrated(settings)
    return await LedgerStore.connect(ledger.database_url, ledger.ledger_schema, ledger.database_password_value())


async def answers(settings: Settings) -> list[str]:
    """The topics the broker lists to an admin client built by the factory; raises if refused."""
    client = kafka.admin(settings, request_timeout_ms=3000)
    try:
        await client.start()
        return await client.list_topics()
    finally:
        await client.close()


@asynccontextmanager
async def producer(settings: Settings):
    """A started producer as the services' are set up on Tansu (no idempotence), stopped on leaving."""
    started = kafka.producer(settings)
    await started.start()
    try:
        yield started
    finally:
        await started.stop()


async def produce(settings: Settings, events: Iterable[tuple[str, dict]]) -> int:
    """Encode and send events to their topics, keyed as CONTRACT.md says; returns how many."""
    async with producer(settings) as sender:
        sends = []
        for kind, data in events:
            key = data["fixmedins_code"] if kind == "institution" else data["psn_no"]
            sends.append(await sender.send(input_topic(settings, kind), CATALOG.encode(INPUT_RECORDS[kind], data),
                                           key=key.encode()))
        await asyncio.gather(*sends)
        return len(sends)


async def send_raw(settings: Settings, topic: str, value: bytes, key: bytes | None,
                   headers: list[tuple[str, bytes]] | None = None) -> None:
    async with producer(settings) as sender:
        await sender.send_and_wait(topic, value, key=key, headers=headers or [])


async def collect(settings: Settings, topic: str, done: Callable[[list], bool], timeout: float = 60.0) -> list:
    """Read `topic` from the beginning until `done(records)`; records are (name, dict, message)."""
    consumer = kafka.consumer(settings, None)
    await consumer.start()
    records: list = []
    try:
        deadline = time.monotonic() + timeout
        partitions = None
        while partitions is None and time.monotonic() < deadline:
            partitions = consumer.partitions_for_topic(topic)
            if partitions is None:
                await consumer._client.force_metadata_update()  # the topic may not exist yet
                await asyncio.sleep(0.2)
        assert partitions, f"topic {topic} never appeared"
        consumer.assign([TopicPartition(topic, p) for p in sorted(partitions)])
        await consumer.seek_to_beginning()
        while not done(records):
            assert time.monotonic() < deadline, f"timed out on {topic} with {len(records)} records"
            batches = await consumer.getmany(timeout_ms=200)
            for messages in batches.values():
                for message in messages:
                    try:
                        name, data = CATALOG.decode(message.value)
                    except DecodeError:
                        name, data = None, None
                    records.append((name, data, message))
        return records
    finally:
        await consumer.stop()


def by_claim(records: list) -> dict[str, list[dict]]:
    """Settlement-topic records grouped by claim_id (or credit_id)."""
    grouped: dict[str, list[dict]] = {}
    for _name, data, _message in records:
        ident = data.get("claim_id") or data.get("credit_id")
        grouped.setdefault(ident, []).append(data)
    return grouped


async def wait_registered(settings: Settings, traffic, timeout: float = 60.0) -> None:
    """Wait until the service has stored the traffic's persons and institutions from the registry
    topics (topics of their own, so nothing orders them before the claims that follow)."""
    client = client_for(settings)
    persons = [f"{settings.key_prefix}:{{{row['psn_no']}}}:state" for row in traffic.persons]
    institutions = [f"{settings.key_prefix}:inst:{row['fixmedins_code']}" for row in traffic.institutions]

    async def registered() -> bool:
        async with client.pipeline(transaction=False) as pipe:
            for key in persons:
                pipe.hexists(key, "person")
            found = await pipe.execute()
        return all(found) and await client.exists(*institutions) == len(institutions)

    try:
        deadline = time.monotonic() + timeout
        while not await registered():
            assert time.monotonic() < deadline, "persons or institutions never reached the registry"
            await asyncio.sleep(0.1)
    finally:
        await client.aclose()


def figures(states) -> dict:
    """What persons' states say in money and counts; tokens are write nonces, not figures, and a
    year a reversal emptied is the same as no year."""
    from gongji.settlement.domain import YearTotals

    return {psn: (state.balance, {year: totals for year, totals in state.years.items() if totals != YearTotals()})
            for psn, state in states.items()}


async def open_accounts(settings: Settings, traffic, timeout: float = 60.0) -> set[str]:
    """Register the traffic's persons and institutions, then credit their opening balances and
    wait for every credit's result; returns the credit ids."""
    await produce(settings, traffic.registry())
    await wait_registered(settings, traffic)
    openings = traffic.openings()
    await produce(settings, openings)
    credit_ids = {data["credit_id"] for _, data in openings}
    await collect(settings, settings.topics.settlements,
                  lambda rs: credit_ids <= {d.get("credit_id") for _, d, _ in rs}, timeout=timeout)
    return credit_ids


@asynccontextmanager
async def running(*services, grace: float = 30.0):
    """Services (anything with `run(stop)`) running in this event loop; stopped, and their batches
    in flight finished (within `grace` seconds), on leaving."""
    stop = asyncio.Event()
    tasks = [asyncio.create_task(service.run(stop)) for service in services]
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), grace)


@asynccontextmanager
async def running_service(settings, book=None):
    """The settlement service (under `book`, default the shipped policies) on its own Redis client,
    in this event loop; yields it; stopped, its batch in flight finished, on leaving."""
    from gongji.settlement.policy import load_policy_book
    from gongji.settlement.service import SettlementService

    settings = as_service(settings, "settlement")
    client = client_for(settings)
    service = SettlementService(settings, CATALOG, book or load_policy_book(), client)
    try:
        async with running(service):
            yield service
    finally:
        await client.aclose()
