"""Which topics `gongji topics create` makes and with what configs, and what it does when a broker
refuses some of them (an admin client standing in for the broker)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from gongji.settings import Settings
from gongji.common.topic_admin import (
    INVALID_CONFIG, INVALID_REPLICATION_FACTOR, Described, TopicError, create_topics_with, differences,
)
from gongji.contract.topics import TopicSpec, topic_specs

DAY = 24 * 3600 * 1000


def test_every_contract_topic_with_registries_compacted_and_the_rest_retained():
    settings = Settings(partitions=12, replication_factor=3, topic_min_insync_replicas=2,
                        topic_retention_ms=7 * DAY, topic_long_retention_ms=90 * DAY)
    specs = {spec.name: spec for spec in topic_specs(settings)}
    assert set(specs) == {"claims", "registry.persons", "registry.institutions", "registry.catalogue",
                          "accounts.credits", "settlements",
                          "fraud.signals", "clearing.statements", "dead-letters", "schemas", "inquiries",
                          "inquiry-results"}
    assert {(s.partitions, s.replication_factor) for s in specs.values()} == {(12, 3)}
    for name in ("registry.persons", "registry.institutions", "registry.catalogue", "schemas"):
        assert specs[name].configs == {"cleanup.policy": "compact", "min.insync.replicas": "2"}
    for name in ("claims", "accounts.credits", "settlements", "fraud.signals", "inquiries", "inquiry-results"):
        assert specs[name].configs == {"cleanup.policy": "delete", "retention.ms": str(7 * DAY),
                                       "min.insync.replicas": "2"}
    for name in ("dead-letters", "clearing.statements"):
        assert specs[name].configs["retention.ms"] == str(90 * DAY)


def test_retention_comes_from_the_environment_and_topics_carry_the_prefix(monkeypatch):
    monkeypatch.setenv("GONGJI_TOPIC_RETENTION_MS", "3600000")
    monkeypatch.setenv("GONGJI_TOPIC_PREFIX", "erenhot.")
    specs = {spec.name: spec for spec in topic_specs(Settings())}
    assert specs["erenhot.claims"].configs == {"cleanup.policy": "delete", "retention.ms": "3600000"}
    assert "min.insync.replicas" not in specs["erenhot.settlements"].configs  # 0: the broker's default


def test_min_insync_replicas_above_the_replication_factor_is_refused_at_start_up():
    with pytest.raises(ValueError, match="topic_min_insync_replicas"):
        Settings(replication_factor=1, topic_min_insync_replicas=2)


class RefusingAdmin:
    """Answers CreateTopics like a broker that refuses some topics' configs or replication."""

    def __init__(self, existing=(), refuse_configs=(), refuse_replication=()):
        self.topics = {name: 1 for name in existing}
        self.refuse_configs, self.refuse_replication = set(refuse_configs), set(refuse_replication)
        self.requests = []

    async def list_topics(self):
        return list(self.topics)

    async def create_topics(self, new_topics):
        self.requests.append({t.name: dict(t.topic_configs) for t in new_topics})
        errors = []
        for topic in new_topics:
            if topic.name in self.refuse_replication:
                errors.append((topic.name, INVALID_REPLICATION_FACTOR, "Replication factor: 3 larger than "
                               "available brokers: 1."))
            elif topic.name in self.refuse_configs and topic.topic_configs:
                errors.append((topic.name, INVALID_CONFIG, "Unknown topic config name: retention.ms"))
            else:
                self.topics[topic.name] = topic.num_partitions
                errors.append((topic.name, 0, None))
        return SimpleNamespace(topic_errors=errors)

    async def describe_topics(self, names):
        return [{"topic": n, "error_code": 0, "partitions": [{}] * self.topics[n]} for n in names]


async def test_a_topic_whose_configs_are_refused_is_created_without_them_and_says_so():
    admin = RefusingAdmin(existing=["schemas"], refuse_configs=["claims"])
    specs = [TopicSpec("claims", 3, 1, {"retention.ms": "1000"}), TopicSpec("settlements", 3, 1, {"retention.ms": "1"}),
             TopicSpec("schemas", 3, 1, {"cleanup.policy": "compact"})]
    results = {r.name: r for r in await create_topics_with(admin, specs, wait=1)}
    assert results["claims"].created and results["claims"].refused_configs == {"retention.ms": "1000"}
    assert "Unknown topic config name" in results["claims"].refusal
    assert results["settlements"].created and not results["settlements"].refused_configs
    assert not results["schemas"].created
    assert admin.requests == [{"claims": {"retention.ms": "1000"}, "settlements": {"retention.ms": "1"}},
                              {"claims": {}}]


async def test_a_replication_factor_the_cluster_cannot_hold_stops_with_the_setting_named():
    admin = RefusingAdmin(refuse_replication=["claims"])
    with pytest.raises(TopicError, match="claims.*GONGJI_REPLICATION_FACTOR"):
        await create_topics_with(admin, [TopicSpec("claims", 3, 3)], wait=1)


def test_differences_name_what_the_cluster_holds_against_the_settings():
    spec = TopicSpec("claims", 12, 3, {"cleanup.policy": "delete", "retention.ms": "1000"})
    same = Described("claims", 12, 3, 3, {"cleanup.policy": "delete", "retention.ms": "1000"})
    assert differences(spec, same) == []
    # A config the broker does not report (Tansu leaves defaults out) is no difference.
    assert differences(spec, Described("claims", 12, 3, 3, {})) == []
    assert differences(spec, Described("claims", 6, 1, 1, {"retention.ms": "5"})) == [
        "6 partitions, 12 configured", "replication 1, 3 configured", "retention.ms=5, 1000 configured"]
    assert differences(spec, Described("claims", 0, 0, 0, {}, "does not exist")) == ["missing"]
