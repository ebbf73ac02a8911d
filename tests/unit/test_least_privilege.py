"""The least-privilege table of README.md and what the servers are given (deploy/kafka-acls.sh, the
Redis users) say the same, and say what the code does: each service's topics as
contract/topics.py's SERVICE_TOPICS names them, its consumer group as the settings name it.

deploy/kafka-acls.sh is run for real (sh), with a recorder in place of Kafka's kafka-acls.sh."""

from __future__ import annotations

import re
import shlex
import subprocess
from collections import defaultdict
from pathlib import Path

import pytest

from gongji.contract.topics import SETTLEMENT_INPUTS, Topics, service_topics, topic_specs
from gongji.dashboard.service import service_groups
from gongji.local.store_users import REDIS_RULES, redis_user
from gongji.services import SERVICES
from gongji.settings import Settings

ROOT = Path(__file__).parents[2]
SCRIPT = ROOT / "deploy" / "kafka-acls.sh"
INPUT = "gongji-input"


def acls(tmp_path: Path, prefix: str = "") -> set[tuple[str, str, str, str, str]]:
    """{(principal, operation, resource type, name, pattern type)} the script adds."""
    log = tmp_path / "calls"
    recorder = tmp_path / "kafka-acls.sh"
    recorder.write_text(f'#!/bin/sh\nprintf "%s\\0" "$@" >>{shlex.quote(str(log))}\nprintf "\\n" >>{shlex.quote(str(log))}\n')
    recorder.chmod(0o755)
    env = {"PATH": "/usr/bin:/bin", "KAFKA_BOOTSTRAP": "kafka:9093", "KAFKA_CONFIG": "admin.properties",
           "KAFKA_ACLS": str(recorder), "TOPIC_PREFIX": prefix}
    result = subprocess.run(["sh", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    found = set()
    for line in log.read_text().splitlines():
        args = line.split("\0")[:-1]
        options = dict(zip(args, args[1:]))  # each flag → its value
        assert args[args.index("--bootstrap-server") + 1] == "kafka:9093" and "--add" in args
        assert "--deny-principal" not in args
        (kind,) = [k for k in ("--topic", "--group", "--cluster") if k in args]
        name = options[kind] if kind != "--cluster" else "kafka-cluster"
        principal = options["--allow-principal"].removeprefix("User:")
        found.add((principal, options["--operation"], kind.removeprefix("--"), name,
                   options["--resource-pattern-type"]))
    return found


def by_principal(granted) -> dict[str, dict[str, set[str]]]:
    """{principal: {operation or "group:<operation>": literal topic or group names}}."""
    table: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for principal, operation, kind, name, pattern in granted:
        if pattern == "literal":
            table[principal][operation if kind == "topic" else f"{kind}:{operation}"].add(name)
    return table


@pytest.mark.parametrize("prefix", ["", "prod."])
def test_each_service_may_read_and_write_exactly_its_topics_and_join_only_its_group(tmp_path, prefix):
    granted = acls(tmp_path, prefix)
    settings = Settings(topic_prefix=prefix, topics=Topics().prefixed(prefix))
    topics = settings.topics
    everything = {spec.name for spec in topic_specs(settings)}
    table = by_principal(granted)
    for principal, operation, kind, name, pattern in granted:
        assert operation not in ("All", "Alter", "AlterConfigs", "Delete", "ClusterAction"), (principal, operation)
        assert kind != "cluster" and "*" not in name, f"{principal}: {operation} on {kind} {name}"
        if kind == "topic" and pattern == "literal":
            assert name in everything, f"{principal}: {name} is no topic of the contract"
    for service in SERVICES:
        rights = table[redis_user(service)]
        assert rights["Read"] | rights["Write"] == set(service_topics(topics, service)), service
        if service == "dashboard":  # read-only: it counts what it cannot read, and writes nothing
            assert not rights["Write"]
        elif service == "gateway":  # an input producer: it writes claims and inquiries, no group
            assert rights["Write"] == {topics.claims, topics.inquiries}
        else:  # every other consumer dead-letters what it cannot handle (common/poison)
            assert topics.dead_letters in rights["Write"], f"{service} cannot dead-letter"
        group = settings.kafka_group(service) if f"{service}_group" in Settings.model_fields else None
        assert rights["group:Read"] == ({group} if group else set()), service
    inputs = {getattr(topics, name) for name in SETTLEMENT_INPUTS}
    assert inputs <= table["gongji-settlement"]["Read"]
    assert table[INPUT]["Write"] == inputs and not table[INPUT]["Read"], "the input producers write input only"
    writers = {t: {p for p, rights in table.items() if t in rights["Write"]} for t in everything}
    assert writers[topics.settlements] == {"gongji-settlement"}
    # The gateway's questions: only it asks, only settlement answers, and only the gateway reads the
    # answers (a pre-settlement never reaches the ledger, clearing, fraud or the dashboard).
    readers = {t: {p for p, rights in table.items() if t in rights["Read"]} for t in everything}
    assert writers[topics.inquiries] == {"gongji-gateway"} and readers[topics.inquiries] == {"gongji-settlement"}
    assert writers[topics.inquiry_results] == {"gongji-settlement"}
    assert readers[topics.inquiry_results] == {"gongji-gateway"}
    for topic in inputs:
        # The gateway sends claims for its callers, as an input producer does.
        assert writers[topic] == {INPUT} | ({"gongji-gateway"} if topic == topics.claims else set()), \
            f"{topic} is written by {writers[topic]}"
    assert table["gongji-topics"]["Create"] == everything == table["gongji-topics"]["DescribeConfigs"]
    dashboard = table["gongji-dashboard"]
    assert dashboard["Read"] | dashboard["Describe"] == everything, "the dashboard's lag reads every topic's ends"
    assert dashboard["group:Describe"] == set(service_groups(settings).values())
    fraud_own = {(op, name) for p, op, kind, name, pattern in granted if p == "gongji-fraud" and pattern == "prefixed"}
    assert {name for _, name in fraud_own} == {settings.kafka_group("fraud") + "-"}
    assert {op for op, _ in fraud_own} == {"Create", "Read", "Write", "Describe", "DescribeConfigs"}
    assert {p for p, *_ in granted} == {redis_user(s) for s in SERVICES} | {"gongji-topics", INPUT}


def readme_table() -> dict[str, dict[str, str]]:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Least privilege"):]
    section = section[:section.index("\n## ", 1)]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    header = [cell.strip() for cell in section.splitlines()[[i for i, l in enumerate(section.splitlines())
                                                             if l.startswith("| principal")][0]].strip("|").split("|")]
    table = {}
    for row in rows:
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        principal = re.match(r"`([^`]+)`", cells[0])[1]
        table[principal] = dict(zip(header, cells))
    return table


def names(cell: str) -> set[str]:
    """The backticked names of a cell, without the fraud service's own `gongji-fraud-*`."""
    return {n for n in re.findall(r"`([^`]+)`", cell.split("(")[0] if "Describe" in cell else cell)
            if not n.endswith("-*")}


def test_the_readme_table_says_what_the_acls_grant(tmp_path):
    table = by_principal(acls(tmp_path))
    readme = readme_table()
    assert set(readme) >= set(table) | {"gongji-ledger-migrate"}, "a principal without a row"
    for principal, rights in table.items():
        row = readme[principal]
        assert names(row["Kafka: reads"]) == rights["Read"], (principal, "reads")
        assert names(row["Kafka: writes"]) == rights["Write"], (principal, "writes")
        assert names(row["Kafka: group"]) == rights["group:Read"], (principal, "group")


def test_the_readme_table_says_what_the_redis_users_may():
    readme = readme_table()
    for principal, row in readme.items():
        service = principal.removeprefix("gongji-")
        cell = row["Redis: keys (after `<prefix>:`) and commands"]
        if service not in REDIS_RULES:
            assert cell == "none", principal
            continue
        commands, keys = REDIS_RULES[service]
        patterns, _, listed = cell.partition(";")
        assert names(patterns) == {k.removeprefix(":") for k in keys}, principal
        written = {c.strip().lower().replace(" ", "|") for c in re.sub(r"\(in its scripts ([^)]*)\)", r", \1", listed).split(",")}
        assert written == set(commands), principal
