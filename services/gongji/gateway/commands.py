"""`gongji run gateway`: the gateway's entry point (a handler of gongji.cli's table)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gongji.settings import Settings

log = logging.getLogger("gongji.gateway")


def run(args: argparse.Namespace, resolve: Callable[[], Settings]) -> None:
    asyncio.run(serve(resolve()))


async def serve(settings: Settings) -> None:
    """Until SIGINT or SIGTERM."""
    from gongji.common.process import until_stopped
    from gongji.common.signing import KeyFileError
    from gongji.gateway.callers import CallersFileError
    from gongji.gateway.service import start_gateway

    logging.getLogger("aiokafka").setLevel(logging.WARNING)

    async def main(stop: asyncio.Event) -> None:
        running = await start_gateway(settings)
        log.info("gateway: %s (Kafka %s, topics %s*)", running.url, settings.kafka_bootstrap_servers,
                 settings.topic_prefix or "")
        try:
            await stop.wait()
        finally:
            await running.stop()

    try:
        await until_stopped(main, grace=settings.stop_grace_seconds, name="gateway")
    except (CallersFileError, KeyFileError, ValueError) as error:  # a keys file unusable, none given
        sys.exit(f"gongji: gateway: {error}")
    except OSError as error:  # the port in use
        sys.exit(f"gongji: gateway: cannot listen on {settings.gateway_host}:{settings.gateway_port} "
                 f"(GONGJI_GATEWAY_HOST, GONGJI_GATEWAY_PORT): {error.strerror}")
