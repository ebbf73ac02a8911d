"""The local stack really serves Kafka and Redis, with the semantics the services rely on."""

from __future__ import annotations

import asyncio
import json
import os
from collections import defaultdict
from pathlib import Path

import psycopg
import pytest
import redis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from gongji.common import kafka
from gongji.common.topic_admin import ensure_topics
from gongji.settings import Settings
from gongji.local.credentials import FIELDS, for_role
from gongji.local.launch import start_service, stop_processes
from gongji.local.stack import LocalStack, stack_down, stack_settings, stack_up
from gongji.local.store_users import LEDGER_OWNER, LEDGER_READER, LEDGER_WRITER


def producer(stack) -> AIOKafkaProducer:
    # The factory's: Tansu cannot serve the idempotent producer (InitProducerId fails).
    return kafka.producer(Settings(**stack.kafka_settings()))


def group_consumer(stack, topic: str, group: str) -> AIOKafkaConsumer:
    return kafka.consumer(Settings(**stack.kafka_settings()), group, topic, **stack.group_timeouts)


async def take(consumer: AIOKafkaConsumer, count: int, timeout: float = 20.0) -> list:
    """The next `count` records, then half a second more to catch any extra."""
    records: list = []
    async with asyncio.timeout(timeout):
        while len(records) < count:
            for batch in (await consumer.getmany(timeout_ms=200)).values():
                records.extend(batch)
    for batch in (await consumer.getmany(timeout_ms=500)).values():
        records.extend(batch)
    return records


async def produce(stack, topic: str, items: list[tuple[bytes, bytes]]) -> list:
    sender = producer(stack)
    await sender.start()
    try:
        futures = [await sender.send(topic, key=key, value=value) for key, value in items]
        return list(await asyncio.gather(*futures))
    finally:
        await sender.stop()


async def test_keyed_messages_round_trip_through_a_group(stack, uniq):
    topic = f"{uniq}.claims"
    assert await ensure_topics(Settings(**stack.kafka_settings()), [topic], partitions=3) == [topic]
    assert await ensure_topics(Settings(**stack.kafka_settings()), [topic], partitions=3) == []

    sent = [(f"psn{i % 12}".encode(), f"claim{i}".encode()) for i in range(60)]
    metadata = await produce(stack, topic, sent)
    partitions_of = defaultdict(set)
    for (key, _), meta in zip(sent, metadata):
        partitions_of[key].add(meta.partition)
    assert all(len(p) == 1 for p in partitions_of.values())
    assert set().union(*partitions_of.values()) == {0, 1, 2}

    consumer = group_consumer(stack, topic, f"{uniq}.group")
    await consumer.start()
    try:
        records = await take(consumer, len(sent))
    finally:
        await consumer.stop()
    assert sorted((r.key, r.value) for r in records) == sorted(sent)
    for key, partitions in partitions_of.items():
        mine = [r for r in records if r.key == key]
        assert {r.partition for r in mine} == partitions
        assert [r.value for r in mine] == [v for k, v in sent if k == key]  # order kept per key


async def test_a_new_group_member_resumes_after_the_committed_offset(stack, uniq):
    topic, group = f"{uniq}.claims", f"{uniq}.group"
    await ensure_topics(Settings(**stack.kafka_settings()), [topic], partitions=3)
    await produce(stack, topic, [(f"psn{i % 5}".encode(), f"first{i}".encode()) for i in range(30)])

    first = group_consumer(stack, topic, group)
    await first.start()
    try:
        records = await take(first, 30)
        assert len(records) == 30
        # Commit about half of each partition: everything before the middle record.
        by_partition = defaultdict(list)
        for r in records:
            by_partition[r.partition].append(r)
        offsets = {TopicPartition(topic, p): rs[len(rs) // 2].offset for p, rs in by_partition.items()}
        await first.commit(offsets)
    finally:
        await first.stop()
    positions = {(r.partition, r.offset) for r in records}
    committed = {(p, o) for p, o in positions if o < offsets[TopicPartition(topic, p)]}
    uncommitted = positions - committed
    assert committed and uncommitted

    later = await produce(stack, topic, [(b"psn1", b"later")])
    second = group_consumer(stack, topic, group)
    await second.start()
    try:
        resumed = await take(second, len(uncommitted) + 1)
    finally:
        await second.stop()
    assert {(r.partition, r.offset) for r in resumed} == uncommitted | {(later[0].partition, later[0].offset)}


async def test_a_consumer_without_group_reads_assigned_partitions_from_the_start(stack, uniq):
    topic = f"{uniq}.registry"
    await ensure_topics(Settings(**stack.kafka_settings()), [topic], partitions=3, compacted={topic})
    sent = [(f"psn{i}".encode(), b"v") for i in range(9)]
    await produce(stack, topic, sent)

    consumer = kafka.consumer(Settings(**stack.kafka_settings()), None)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(3)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        records = await take(consumer, len(sent))
    finally:
        await consumer.stop()
    assert sorted((r.key, r.value) for r in records) == sorted(sent)


async def test_redis_answers_ping_and_runs_lua(redis_client, uniq):
    assert await redis_client.ping()
    script = "redis.call('SET', KEYS[1], ARGV[1]); return redis.call('INCRBY', KEYS[1], ARGV[2])"
    assert await redis_client.eval(script, 1, f"{uniq}:{{psn1}}:n", 40, 2) == 42
    assert await redis_client.get(f"{uniq}:{{psn1}}:n") == b"42"


async def test_stack_up_serves_until_stack_down(tmp_path: Path):
    state_dir = tmp_path / ".gongji"
    state = stack_up(state_dir, key_prefix="gj")
    pids = [s["pid"] for s in state["servers"].values()]
    try:
        assert not state["already_running"]
        assert (state_dir / "stack.json").exists()
        operator = Settings(**stack_settings(state))
        assert redis.Redis.from_url(state["redis_url"], **operator.redis_credentials()).ping()
        with psycopg.connect(state["database_url"], password=operator.database_password_value()) as connection:
            assert connection.execute("SELECT 1 + 1").fetchone() == (2,)  # the ledger's PostgreSQL, as its owner
        scratch = state["servers"]["postgres"].get("scratch")  # its data directory, when root runs it
        admin = kafka.admin(Settings(**stack_settings(state)))  # TLS, the tools' certificate
        await admin.start()
        try:
            await admin.describe_cluster()
        finally:
            await admin.close()

        again = stack_up(state_dir)
        assert again["already_running"]
        assert again["kafka_bootstrap_servers"] == state["kafka_bootstrap_servers"]
    finally:
        assert stack_down(state_dir)
    assert not any(running(pid) for pid in pids)
    assert not (state_dir / "stack.json").exists()
    assert scratch is None or not Path(scratch).exists()
    assert not (state_dir / "secrets").exists() and not (state_dir / "users.acl").exists()
    assert not stack_down(state_dir)


def test_the_stack_is_secured_by_default_and_records_no_password(tmp_path: Path):
    """Valkey and PostgreSQL refuse a client without the right password; the passwords are files of
    mode 0600 in a folder of mode 0700, and neither the state file nor the ACL file holds one."""
    import stat

    from gongji.local.store_users import redis_user

    with LocalStack(tmp_path / "stack", key_prefix="gj") as local:
        state = local.state()
        secrets = tmp_path / "stack" / "secrets"
        assert stat.S_IMODE(secrets.stat().st_mode) == 0o700
        passwords = {path.name: path.read_text() for path in secrets.iterdir()}
        # eight passwords (the ledger's reader among them), the input signing key with its keys file
        # (gongji.local.input_keys), and the gateway caller's key with its callers file
        # (gongji.local.gateway_callers)
        assert len(passwords) == 12 and len(set(passwords.values())) == 12
        assert all(stat.S_IMODE(path.stat().st_mode) == 0o600 for path in secrets.iterdir())
        acl = tmp_path / "stack" / "users.acl"
        assert stat.S_IMODE(acl.stat().st_mode) == 0o600
        recorded = json.dumps(state) + acl.read_text()
        assert not [name for name, password in passwords.items() if password in recorded]

        for credentials in ({}, {"username": redis_user("settlement"), "password": "wrong"},
                            {"username": "default", "password": ""}):
            with pytest.raises(redis.AuthenticationError):
                redis.Redis.from_url(state["redis_url"], **credentials).ping()
        for role in ("postgres", LEDGER_OWNER, LEDGER_WRITER, LEDGER_READER):
            port = local.credentials()["ledger"]["database_url"].rsplit(":", 1)[1].split("/")[0]
            for password in (None, "wrong"):
                with pytest.raises(psycopg.OperationalError, match="no password supplied|password authentication failed"):
                    psycopg.connect(f"postgresql://{role}@127.0.0.1:{port}/postgres", password=password,
                                    connect_timeout=5).close()
        # Each role's settings open what it may and name only its own files.
        ledger = for_role(Settings(**stack_settings(state)), state["credentials"], "ledger")
        with psycopg.connect(ledger.database_url, password=ledger.database_password_value()) as connection:
            assert connection.execute("SELECT current_user").fetchone() == (LEDGER_WRITER,)
        assert ledger.redis_username is None and ledger.redis_password_file is None
        settlement = for_role(Settings(**stack_settings(state)), state["credentials"], "settlement")
        assert redis.Redis.from_url(state["redis_url"], **settlement.redis_credentials()).ping()
        assert settlement.database_url is None and settlement.database_password_file is None
        fraud = for_role(Settings(**stack_settings(state)), state["credentials"], "fraud")
        assert not any(getattr(fraud, name) for name in FIELDS)
        # The dashboard: the ledger's reader (its period view) and nothing else.
        dashboard = for_role(Settings(**stack_settings(state)), state["credentials"], "dashboard")
        with psycopg.connect(dashboard.database_url, password=dashboard.database_password_value()) as connection:
            assert connection.execute("SELECT current_user").fetchone() == (LEDGER_READER,)
        assert {name for name in FIELDS if getattr(dashboard, name)} == {"database_url", "database_password_file"}


def test_what_follows_settlement_yields_the_cpu_to_the_path_of_a_claims_answer(tmp_path: Path, monkeypatch):
    """On shared cores the ledger, clearing, fraud and the dashboard, and the stack's PostgreSQL, run
    GONGJI_LOCAL_DOWNSTREAM_NICE nicer than what starts them; settlement, the gateway, the broker,
    its TLS terminator and Valkey, which a waiting claim's answer goes through, do not."""
    monkeypatch.setenv("GONGJI_LOCAL_DOWNSTREAM_NICE", "7")
    own = os.getpriority(os.PRIO_PROCESS, 0)
    nicer = min(19, own + 7)
    with LocalStack(tmp_path / "stack", key_prefix="gj") as local:
        state = local.state()
        servers = {name: os.getpriority(os.PRIO_PROCESS, server["pid"]) for name, server in state["servers"].items()}
        assert servers == {name: nicer if name == "postgres" else own for name in servers}
        assert {"kafka", "kafka-tls", "redis", "postgres"} <= set(servers)
        settings = Settings(**stack_settings(state))
        assert settings.local_downstream_nice == 7
        started = {}
        with open(tmp_path / "services.log", "wb") as log:
            for service in ("settlement", "gateway", "clearing", "fraud"):
                (started[service],) = start_service(service, settings, None, log, credentials=state["credentials"])
        try:
            assert {service: os.getpriority(os.PRIO_PROCESS, process.pid) for service, process in started.items()} \
                == {"settlement": own, "gateway": own, "clearing": nicer, "fraud": nicer}
        finally:
            stop_processes(started.values())


def running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie has stopped running
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
