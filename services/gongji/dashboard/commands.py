"""`gongji run dashboard`: the dashboard's entry point (a handler of gongji.cli's table)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gongji.settings import Settings

log = logging.getLogger("gongji.dashboard")


def run(args: argparse.Namespace, resolve: Callable[[], Settings]) -> None:
    asyncio.run(serve(resolve(), args.policies))


async def serve(settings: Settings, policy_dir: Path | None = None) -> None:
    """Until SIGINT or SIGTERM."""
    from gongji.common.process import until_stopped
    from gongji.dashboard.access import AccessError
    from gongji.dashboard.service import start_dashboard

    logging.getLogger("aiokafka").setLevel(logging.WARNING)

    async def main(stop: asyncio.Event) -> None:
        running = await start_dashboard(settings, region_names(policy_dir))
        log.info("dashboard: %s (Kafka %s, topics %s*)", running.url, settings.kafka_bootstrap_servers,
                 settings.topic_prefix or "")
        try:
            await stop.wait()
        finally:
            await running.stop()

    try:
        await until_stopped(main, grace=settings.stop_grace_seconds, name="dashboard")
    except AccessError as error:  # no credential, auth off beyond loopback, a TLS file unreadable
        sys.exit(f"gongji: dashboard: {error}")


def region_names(policy_dir=None) -> dict[str, str]:
    """Region code → name, from settlement's policy files (labels only; none if they cannot be
    read). Read here, where the process is composed: the dashboard itself knows only codes."""
    try:
        from gongji.settlement.policy import load_policy_book

        return load_policy_book(policy_dir).region_names()
    except Exception:  # a dashboard shows codes rather than not start
        return {}
