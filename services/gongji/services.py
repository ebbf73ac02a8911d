"""The services Gongji deploys, and how `gongji run SERVICE` runs each.

A handler is `handler(args, resolve) -> exit status or None`: `args` from gongji.cli's parser,
`resolve()` the settings on the servers to use (called by the handler when it needs them, after
its own checks such as loading the policy files). Handlers are named by import path and imported
only when their command runs: `gongji --help` loads none of them.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gongji.settings import Settings

    Handler = Callable[[argparse.Namespace, Callable[[], Settings]], "int | None"]

# What `gongji run SERVICE` starts, and `gongji stack up` and the demo start all of; the
# deployments run each (docker-compose.yml and deploy/k8s/: tests/unit/test_deploy.py checks).
SERVICES: dict[str, str] = {
    "settlement": "gongji.settlement.commands:run",
    "clearing": "gongji.clearing.commands:run",
    "ledger": "gongji.ledger.commands:run",
    "fraud": "gongji.fraud.commands:run",
    "dashboard": "gongji.dashboard.commands:run",
    "gateway": "gongji.gateway.commands:run",
}


def handler(path: str) -> Handler:
    """The function a "module:function" path names, imported now."""
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def run(args: argparse.Namespace, resolve: Callable[[], Settings]) -> int | None:
    """`gongji run SERVICE`: the service in the foreground until SIGINT or SIGTERM, once the servers
    it needs answer (gongji.common.reachable: one line for each that does not, then backoff).
    Redis's credentials are checked as soon as it answers, while Kafka may still be away: a refused
    password stops the service at once in one line, where waiting for the broker first would hide it."""
    def reachable() -> Settings:
        from gongji.common.reachable import needed, wait_until_reachable

        settings = resolve()

        async def redis_credentials() -> None:
            from gongji.common.redis import service_client

            await (await service_client(settings, args.service)).aclose()

        asyncio.run(wait_until_reachable(args.service, needed(settings, args.service),
                                         initial=settings.retry_initial_seconds, maximum=settings.retry_max_seconds,
                                         timeout=settings.probe_timeout_seconds, checks={"Redis": redis_credentials}))
        return settings

    return handler(SERVICES[args.service])(args, reachable)
