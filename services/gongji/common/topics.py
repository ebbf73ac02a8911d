"""Gongji's topics on any Kafka cluster: what each one is (partitions, replication, cleanup policy,
retention), creating the missing ones, and reading back what the cluster holds.

`topic_specs(settings)` is the one list of topics and their configs (CONTRACT.md, "Topics");
`create_topics` creates what is missing and says which configs a broker refused instead of
failing; `describe_topics` reads partitions, replicas and configs back from the cluster.

What Tansu 0.6 (the local broker) does with topic configs, as probed: CreateTopics accepts and
stores any config, even an unknown name or a non-numeric retention.ms, and DescribeConfigs echoes
them back (only those set on the topic, no defaults); its memory engine is not known to apply
retention or compaction, so nothing may rely on either having run (on Kafka neither). It accepts
any replication factor on its single broker and lists that broker as every replica. It does not
support AlterConfigs. A metadata request naming a topic it does not have creates that topic (4
partitions), so `describe_topics` asks only for topics the cluster lists. A stock Kafka refuses
an unknown config or a bad value with INVALID_CONFIG, and a replication factor above its broker
count with INVALID_REPLICATION_FACTOR.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError

from gongji.common.config import Settings

# Kafka protocol error codes (org.apache.kafka.common.protocol.Errors).
TOPIC_ALREADY_EXISTS = 36
INVALID_REPLICATION_FACTOR = 38
INVALID_CONFIG = 40
POLICY_VIOLATION = 44
#: A broker refusing one of these drops the topic's configs, not the topic.
CONFIG_REFUSALS = {INVALID_CONFIG, POLICY_VIOLATION}

#: The configs `describe` reports, in this order.
REPORTED_CONFIGS = ("cleanup.policy", "retention.ms", "min.insync.replicas")


class TopicError(RuntimeError):
    """A topic could not be created or read; the message says which and why."""


@dataclass(frozen=True)
class TopicSpec:
    """One topic as Gongji wants it."""

    name: str
    partitions: int
    replication_factor: int
    configs: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Created:
    """What `create_topics` did with one topic."""

    name: str
    created: bool  # False: it existed already and was left as it is
    refused_configs: Mapping[str, str] = field(default_factory=dict)  # created without these
    refusal: str = ""  # the broker's words


@dataclass(frozen=True)
class Described:
    """A topic as the cluster holds it; `partitions` 0 when it does not exist."""

    name: str
    partitions: int
    replication_factor: int  # the fewest replicas any partition has
    min_isr: int  # the fewest in-sync replicas any partition has
    configs: Mapping[str, str]
    error: str = ""

    @property
    def exists(self) -> bool:
        return self.partitions > 0


def topic_specs(settings: Settings) -> list[TopicSpec]:
    """Every topic of CONTRACT.md with its configs: the registries and `schemas` compacted (the
    latest value per key is the state, kept for ever); `dead-letters` and `clearing.statements`
    kept `topic_long_retention_ms`; every other topic `topic_retention_ms`."""
    topics = settings.topics
    compacted = {topics.persons, topics.institutions, topics.schemas}
    long_kept = {topics.dead_letters, topics.clearing_statements}
    specs = []
    for name in dict.fromkeys(getattr(topics, f) for f in type(topics).model_fields):
        if name in compacted:
            configs = {"cleanup.policy": "compact"}
        else:
            retention = settings.topic_long_retention_ms if name in long_kept else settings.topic_retention_ms
            configs = {"cleanup.policy": "delete", "retention.ms": str(retention)}
        if settings.topic_min_insync_replicas:
            configs["min.insync.replicas"] = str(settings.topic_min_insync_replicas)
        specs.append(TopicSpec(name, settings.partitions, settings.replication_factor, configs))
    return specs


def topic_configs(settings: Settings) -> dict[str, dict[str, str]]:
    """Each topic's configs by name, for `ensure_topics(..., configs=...)` in a service that creates
    its own topics on start-up."""
    return {spec.name: dict(spec.configs) for spec in topic_specs(settings)}


async def create_topics(bootstrap: str, specs: Iterable[TopicSpec], wait: float = 30.0) -> list[Created]:
    """Create the topics among `specs` that do not exist yet, with their configs.

    A topic whose configs the broker refuses (INVALID_CONFIG, POLICY_VIOLATION) is created without
    them, and the result says which and why; any other refusal (a replication factor above the
    broker count, say) raises TopicError naming the topic. Existing topics are left as they are.
    Waits until new topics show all their partitions in metadata, which Kafka fills in
    asynchronously.
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return await create_topics_with(admin, specs, wait)
    finally:
        await admin.close()


async def create_topics_with(
    admin: AIOKafkaAdminClient, specs: Iterable[TopicSpec], wait: float = 30.0,
) -> list[Created]:
    """`create_topics` on an admin client already started (which stays open)."""
    specs = {spec.name: spec for spec in specs}
    existing = set(await admin.list_topics())
    results = {name: Created(name, False) for name in specs if name in existing}
    wanted = [spec for name, spec in specs.items() if name not in existing]
    retry = []
    for spec, (code, message) in await _create(admin, wanted, with_configs=True):
        if code == 0:
            results[spec.name] = Created(spec.name, True)
        elif code in CONFIG_REFUSALS and spec.configs:
            retry.append((spec, f"error {code} {message or ''}".strip()))
        elif code == TOPIC_ALREADY_EXISTS:  # created meanwhile by someone else
            results[spec.name] = Created(spec.name, False)
        else:
            raise TopicError(_refusal(spec, code, message))
    refusals = {spec.name: why for spec, why in retry}
    for spec, (code, message) in await _create(admin, [s for s, _ in retry], with_configs=False):
        if code == 0:
            results[spec.name] = Created(spec.name, True, dict(spec.configs), refusals[spec.name])
        elif code == TOPIC_ALREADY_EXISTS:
            results[spec.name] = Created(spec.name, False)
        else:
            raise TopicError(_refusal(spec, code, message))
    new = [specs[name] for name, result in results.items() if result.created]
    await _wait_for_partitions(admin, new, wait)
    return [results[name] for name in specs]


async def describe_topics(bootstrap: str, names: Iterable[str]) -> list[Described]:
    """Partitions, replication and configs of each named topic as the cluster holds them."""
    names = list(dict.fromkeys(names))
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        # Only topics the cluster lists: asking for a missing one by name has Tansu create it.
        listed = set(await admin.list_topics())
        asked = [n for n in names if n in listed]
        metadata = {t["topic"]: t for t in await admin.describe_topics(asked)} if asked else {}
        present = [n for n in asked if metadata.get(n, {}).get("error_code") == 0 and metadata[n]["partitions"]]
        configs = await _topic_configs(admin, present)
    finally:
        await admin.close()
    described = []
    for name in names:
        if name not in present:
            code = metadata.get(name, {}).get("error_code")
            described.append(Described(name, 0, 0, 0, {}, f"error {code}" if code else "does not exist"))
            continue
        partitions = metadata[name]["partitions"]
        described.append(Described(
            name, len(partitions), min(len(p["replicas"]) for p in partitions),
            min(len(p["isr"]) for p in partitions), configs.get(name, {}),
        ))
    return described


def differences(spec: TopicSpec, found: Described) -> list[str]:
    """How a topic on the cluster differs from its spec, in words ([] when it matches). Configs the
    cluster does not report (a broker default it leaves out) are not counted as differences."""
    if not found.exists:
        return ["missing"]
    out = []
    if found.partitions < spec.partitions:
        out.append(f"{found.partitions} partitions, {spec.partitions} configured")
    if found.replication_factor < spec.replication_factor:
        out.append(f"replication {found.replication_factor}, {spec.replication_factor} configured")
    for key, wanted in spec.configs.items():
        have = found.configs.get(key)
        if have is not None and have != wanted:
            out.append(f"{key}={have}, {wanted} configured")
    return out


async def _create(admin: AIOKafkaAdminClient, specs: list[TopicSpec], *, with_configs: bool):
    if not specs:
        return []
    response = await admin.create_topics([
        NewTopic(s.name, s.partitions, s.replication_factor, topic_configs=dict(s.configs) if with_configs else {})
        for s in specs
    ])
    by_name = {}
    for name, code, *message in response.topic_errors:  # (name, code) in v0, + message from v1
        by_name[name] = (code, message[0] if message else None)
    return [(s, by_name.get(s.name, (0, None))) for s in specs]


def _refusal(spec: TopicSpec, code: int, message: str | None) -> str:
    why = f"error {code}" + (f" {message}" if message else "")
    if code == INVALID_REPLICATION_FACTOR:
        why += (f": replication factor {spec.replication_factor} needs at least that many brokers "
                "(GONGJI_REPLICATION_FACTOR)")
    return f"creating topic {spec.name}: {why}"


async def _topic_configs(admin: AIOKafkaAdminClient, names: list[str]) -> dict[str, dict[str, str]]:
    """Every config the cluster reports per topic; {} per topic if the broker cannot say."""
    if not names:
        return {}
    try:
        responses = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, name) for name in names])
    except KafkaError:
        return {}
    configs: dict[str, dict[str, str]] = {}
    for response in responses:
        for code, _message, _type, name, entries in response.resources:
            if code == 0:
                configs[name] = {entry[0]: entry[1] for entry in entries if entry[1] is not None}
    return configs


async def _wait_for_partitions(admin: AIOKafkaAdminClient, specs: list[TopicSpec], wait: float) -> None:
    deadline = time.monotonic() + wait
    while specs:
        described = {t["topic"]: t for t in await admin.describe_topics([s.name for s in specs])}
        if all(described.get(s.name, {}).get("error_code") == 0
               and len(described[s.name]["partitions"]) >= s.partitions for s in specs):
            return
        if time.monotonic() > deadline:
            raise TopicError(f"topics {[s.name for s in specs]} did not appear in metadata within {wait:.0f}s")
        await asyncio.sleep(0.2)


async def ensure_service_topics(settings: Settings, names: Iterable[str]) -> list[str]:
    """What a service calls on start-up for the topics it reads and writes: those missing are
    created as `topic_specs` says (partitions, replication, compaction, retention), so a service
    started before `gongji topics create` leaves no topic a broker would default."""
    from gongji.common.stack import ensure_topics

    configs = topic_configs(settings)
    compacted = {name for name, config in configs.items() if config.get("cleanup.policy") == "compact"}
    return await ensure_topics(settings.kafka_bootstrap_servers, names, settings.partitions, compacted=compacted,
                               replication_factor=settings.replication_factor, configs=configs)
