"""`gongji topics create|describe`: every topic of CONTRACT.md on the configured cluster (a handler
of gongji.cli's table)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gongji.settings import Settings


def topics(args: argparse.Namespace, resolve: Callable[[], Settings]) -> int:
    from aiokafka.errors import KafkaError

    from gongji.common.topic_admin import TopicError

    settings = resolve()
    try:
        return asyncio.run(topics_command(settings, args.action))
    except TopicError as error:
        sys.exit(f"gongji: {error}")
    except KafkaError as error:
        from gongji.common.kafka_failures import explain

        sys.exit(f"gongji: {explain(error, settings)}")


async def topics_command(settings: Settings, action: str) -> int:
    """Create (for `create`) every topic of CONTRACT.md, then print a table of what the cluster
    holds; refused configs and differences from the settings on stderr. The exit status is 1 when
    a topic is missing."""
    from gongji.common.topic_admin import REPORTED_CONFIGS, create_topics, describe_topics, differences
    from gongji.contract.topics import topic_specs

    specs = topic_specs(settings)
    status = {spec.name: "missing" for spec in specs}
    if action == "create":
        for result in await create_topics(settings, specs):
            status[result.name] = "created" if result.created else "exists"
            if result.refused_configs:
                refused = ", ".join(f"{k}={v}" for k, v in result.refused_configs.items())
                print(f"gongji: warning: the broker refused {refused} for {result.name} ({result.refusal}); "
                      "created it without them", file=sys.stderr)
    found = {d.name: d for d in await describe_topics(settings, status)}
    rows = [("topic", "status", "partitions", "replicas", "in-sync", *REPORTED_CONFIGS)]
    for spec in specs:
        d = found[spec.name]
        if d.exists and status[spec.name] == "missing":
            status[spec.name] = "exists"
        rows.append((spec.name, status[spec.name], *(str(n) if d.exists else "-" for n in
                                                      (d.partitions, d.replication_factor, d.min_isr)),
                     *(_config_cell(key, d.configs.get(key)) for key in REPORTED_CONFIGS)))
        for difference in differences(spec, d) if d.exists else ():
            print(f"gongji: warning: {spec.name}: {difference}", file=sys.stderr)
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    return 1 if "missing" in status.values() else 0


def _config_cell(key: str, value: str | None) -> str:
    """A config as the table shows it: '-' when the broker does not report it, retention with days."""
    if value is None:
        return "-"
    if key == "retention.ms" and value.lstrip("-").isdigit():
        ms = int(value)
        return f"{value} (forever)" if ms < 0 else f"{value} ({ms / 86_400_000:g}d)"
    return value
