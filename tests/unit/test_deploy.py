"""docker-compose.yml runs what the code defines (there is no Docker engine here to run it)."""

from __future__ import annotations

from pathlib import Path

import yaml

from gongji import cli

ROOT = Path(__file__).parents[2]


def test_compose_runs_every_service_the_cli_defines():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    commands = {tuple(spec.get("command", [])) for spec in compose["services"].values()}
    for name in cli.SERVICES:
        assert ("run", name) in commands, f"docker-compose.yml has no service running `gongji run {name}`"
    assert ("topics", "create") in commands


def test_compose_kafka_is_three_brokers_replicating_everything_three_times():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    brokers = [name for name, spec in compose["services"].items() if "apache/kafka" in str(spec.get("image"))]
    assert len(brokers) == 3
    for name in brokers:
        env = compose["services"][name]["environment"]
        assert env["KAFKA_DEFAULT_REPLICATION_FACTOR"] == 3 and env["KAFKA_MIN_INSYNC_REPLICAS"] == 2
    gongji_env = compose["services"]["settlement"]["environment"]
    assert gongji_env["GONGJI_REPLICATION_FACTOR"] == "3"
    assert "--appendonly" in compose["services"]["redis"]["command"]
