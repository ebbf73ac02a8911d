"""`gongji topics create` and `gongji topics describe` against the stack's broker, as an operator
runs them: every topic with the configured partitions, compaction and retention, read back."""

from __future__ import annotations

import os
import subprocess
import sys

from gongji.settings import Settings
from gongji.common.topic_admin import describe_topics, ensure_service_topics
from gongji.contract.topics import topic_specs


def gongji(stack, prefix: str, *args: str, **env: str) -> subprocess.CompletedProcess:
    env = {**os.environ, **stack.kafka_env(),
           "GONGJI_REDIS_URL": stack.redis_url, "GONGJI_TOPIC_PREFIX": prefix, **env}
    return subprocess.run([sys.executable, "-m", "gongji.cli", *args], env=env, capture_output=True, text=True,
                          timeout=120)


def table(stdout: str) -> dict[str, dict[str, str]]:
    header, *rows = [line.split() for line in stdout.splitlines()]
    return {row[0]: dict(zip(header, row)) for row in rows}


async def test_topics_create_makes_every_topic_as_configured_and_describe_reports_it(stack, uniq):
    env = {"GONGJI_PARTITIONS": "3", "GONGJI_TOPIC_RETENTION_MS": "86400000",
           "GONGJI_TOPIC_LONG_RETENTION_MS": "864000000"}
    prefix = f"{uniq}."
    settings = Settings(topic_prefix=prefix, partitions=3, topic_retention_ms=86400000,
                        topic_long_retention_ms=864000000)
    specs = {spec.name: spec for spec in topic_specs(settings)}

    created = gongji(stack, prefix, "topics", "create", **env)
    assert created.returncode == 0, created.stderr
    rows = table(created.stdout)
    assert set(rows) == set(specs) and {r["status"] for r in rows.values()} == {"created"}
    assert {f"{prefix}fraud.signals", f"{prefix}clearing.statements", f"{prefix}schemas"} <= set(rows)
    assert {r["partitions"] for r in rows.values()} == {"3"}
    assert {r["replicas"] for r in rows.values()} == {"1"}
    assert rows[f"{prefix}registry.persons"]["cleanup.policy"] == "compact"
    assert rows[f"{prefix}settlements"]["retention.ms"] == "86400000"
    assert rows[f"{prefix}dead-letters"]["retention.ms"] == "864000000"
    assert "warning" not in created.stderr, created.stderr

    # The cluster holds what the settings say, read back without the command.
    for found in await describe_topics(Settings(**stack.kafka_settings()), specs):
        spec = specs[found.name]
        assert (found.partitions, found.replication_factor) == (3, 1), found
        for key, value in spec.configs.items():
            # Tansu and Kafka both report configs set on the topic.
            assert found.configs.get(key) == value, (found.name, key, found.configs)

    again = gongji(stack, prefix, "topics", "create", **env)
    assert again.returncode == 0, again.stderr
    assert {r["status"] for r in table(again.stdout).values()} == {"exists"}
    described = gongji(stack, prefix, "topics", "describe", **env)
    assert described.returncode == 0, described.stderr
    assert {name: {k: v for k, v in row.items() if k != "status"} for name, row in table(described.stdout).items()} \
        == {name: {k: v for k, v in row.items() if k != "status"} for name, row in rows.items()}

    # Settings the topics no longer match are pointed out.
    wider = gongji(stack, prefix, "topics", "describe", **{**env, "GONGJI_PARTITIONS": "6"})
    assert wider.returncode == 0 and f"{prefix}claims: 3 partitions, 6 configured" in wider.stderr


def test_topics_describe_of_a_cluster_without_them_says_missing_and_fails(stack, uniq):
    result = gongji(stack, f"{uniq}.", "topics", "describe")
    assert result.returncode == 1
    assert {r["status"] for r in table(result.stdout).values()} == {"missing"}


async def test_a_service_creates_its_topics_with_the_configured_retention(stack, uniq):
    settings = Settings(**stack.kafka_settings(), topic_prefix=f"{uniq}.",
                        topic_retention_ms=3600000, partitions=2)
    claims = settings.topics.claims
    created = await ensure_service_topics(settings, [claims])
    assert created == [claims]
    (found,) = await describe_topics(settings, [claims])
    assert found.partitions == 2 and found.configs.get("retention.ms") == "3600000"
