"""Settings.to_env: what a child process (`gongji run …` started by the demo, the bench, `stack up`
or a test) is given, so that it runs on exactly the parent's settings."""

from __future__ import annotations

import os
from decimal import Decimal

import pytest

from gongji.fraud_settings import FraudSettings
from gongji.settings import Settings

pytestmark = pytest.mark.unit


def in_child(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings() as a child started with `{**os.environ, **env}` reads them."""
    for key in os.environ:
        if key.upper().startswith("GONGJI_"):
            monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return Settings()


def test_every_setting_round_trips_through_the_environment(monkeypatch):
    settings = Settings(
        kafka_bootstrap_servers="kafka-1:9092,kafka-2:9092", redis_url="redis://:s3cret@redis:6379/2",
        redis_cluster=True, redis_durability="aof-replicas", database_url=None, topic_prefix="run-7.",
        key_prefix="run-7", ledger_schema="run_7", partitions=12, replication_factor=3, topic_min_insync_replicas=2,
        max_line_amount=Decimal("12345.67"), setl_time_tolerance_seconds=30.5, batch_max_records=40,
        fraud=FraudSettings(visits_per_day=5, travel_min_hours=1.5, split_max_amount=Decimal("49.99"),
                            drug_list_types=("101", "102"), suspended_codes=(),
                            refill_days_per_unit_by_code={"XB01": Decimal("2.5")}))
    child = in_child(settings.to_env(), monkeypatch)
    assert child == settings
    assert (child.topics.claims, child.fraud.visits_per_day, child.max_line_amount, child.redis_durability) == (
        "run-7.claims", 5, Decimal("12345.67"), "aof-replicas")
    assert child.fraud.refill_days_per_unit_by_code == {"XB01": Decimal("2.5")}


def test_the_callers_shell_does_not_leak_into_the_child(monkeypatch):
    """Defaults are written too, and None as empty: a database, a threshold or a topic prefix in the
    caller's shell must not reach a child the parent gave none."""
    shell = {"GONGJI_DATABASE_URL": "postgresql://prod/gongji", "GONGJI_FRAUD__VISITS_PER_DAY": "9",
             "GONGJI_TOPIC_PREFIX": "prod.", "GONGJI_REDIS_CLUSTER": "true"}
    settings = Settings(kafka_bootstrap_servers="127.0.0.1:1", redis_url="redis://127.0.0.1:2/0")
    assert in_child({**shell, **settings.to_env()}, monkeypatch) == settings


def test_names_are_the_documented_variables():
    env = Settings(fraud=FraudSettings(split_max_amount=Decimal("50.10"))).to_env()
    assert env["GONGJI_FRAUD__SPLIT_MAX_AMOUNT"] == "50.10"
    assert env["GONGJI_TOPICS__CLAIMS"] == "claims" and env["GONGJI_DATABASE_URL"] == ""
    assert env["GONGJI_FRAUD__DRUG_LIST_TYPES"] == '["101", "102", "103"]'
    assert env["GONGJI_REDIS_DURABILITY"] == "aof" and env["GONGJI_REDIS_CLUSTER"] == "false"
