"""Gongji's topics on any Kafka cluster: what each one is (partitions, replication, cleanup policy,
retention), creating the missing ones, and reading back what the cluster holds.

The topics themselves (names, configs, which service reads and writes which) are
`gongji.contract.topics`; here is what talks to a cluster about them: `create_topics` creates what is missing and says which configs a broker refused instead of
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
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError

from gongji.contract.topics import TopicSpec, topic_specs

from gongji.common import kafka

if TYPE_CHECKING:
    from gongji.settings import Settings

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


async def create_topics(settings: Settings, specs: Iterable[TopicSpec], wait: float = 30.0) -> list[Created]:
    """Create the topics among `specs` that do not exist yet, with their configs.

    A topic whose configs the broker refuses (INVALID_CONFIG, POLICY_VIOLATION) is created without
    them, and the result says which and why; any other refusal (a replication factor above the
    broker count, say) raises TopicError naming the topic. Existing topics are left as they are.
    Waits until new topics show all their partitions in metadata, which Kafka fills in
    asynchronously.
    """
    admin = kafka.admin(settings)
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


async def describe_topics(settings: Settings, names: Iterable[str]) -> list[Described]:
    """Partitions, replication and configs of each named topic as the cluster holds them."""
    names = list(dict.fromkeys(names))
    admin = kafka.admin(settings)
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


async def ensure_topics(
    settings: Settings,
    names: Iterable[str],
    partitions: int,
    compacted: Collection[str] = frozenset(),
    replication_factor: int = 1,
) -> list[str]:
    """Create the topics among `names` that do not exist yet, with `partitions` each (those in
    `compacted` with cleanup.policy=compact); return the ones created. Services create theirs by
    `ensure_service_topics`, with the configs `topic_specs` gives; this is for topics of other
    shapes (tests, tools). Tansu 0.6 accepts and reports configs but enforces none: readers must
    not rely on compaction having run (on Kafka neither). Raises TopicError for a refusal other than
    of the configs. Existing topics are left as they are."""
    specs = [TopicSpec(name, partitions, replication_factor,
                       {"cleanup.policy": "compact"} if name in compacted else {})
             for name in dict.fromkeys(names)]
    return [result.name for result in await create_topics(settings, specs) if result.created]


async def ensure_service_topics(settings: Settings, names: Iterable[str]) -> list[str]:
    """What a service calls on start-up for the topics it reads and writes: those missing are
    created as `topic_specs` says (partitions, replication, compaction, retention), so a service
    started before `gongji topics create` leaves no topic a broker would default."""
    specs = {spec.name: spec for spec in topic_specs(settings)}
    wanted = [specs.get(name) or TopicSpec(name, settings.partitions, settings.replication_factor)
              for name in dict.fromkeys(names)]  # a name of the service's own (fraud's activity topic)
    return [result.name for result in await create_topics(settings, wanted) if result.created]
