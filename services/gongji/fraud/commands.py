"""`gongji run fraud`: the fraud service's entry point (a handler of gongji.cli's table)."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gongji.settings import Settings


def run(args: argparse.Namespace, resolve: Callable[[], Settings]) -> None:
    asyncio.run(serve(resolve()))


async def serve(settings: Settings) -> None:
    from gongji.common.avro import SchemaCatalog
    from gongji.common.process import until_stopped
    from gongji.fraud.service import FraudService

    await until_stopped(FraudService(settings, SchemaCatalog()).run, grace=settings.stop_grace_seconds, name="fraud")
