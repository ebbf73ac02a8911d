"""`gongji run settlement`, `gongji settlement rebuild` and `gongji replay`: settlement's entry
points (handlers of gongji.cli's table)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gongji.settings import Settings
    from gongji.settlement.policy import PolicyBook


def run(args: argparse.Namespace, resolve: Callable[[], Settings]) -> None:
    from gongji.settlement.policy import load_policy_book

    book = load_policy_book(args.policies)  # a bad policy file stops start-up before anything runs
    asyncio.run(serve(resolve(), book))


async def serve(settings: Settings, book: PolicyBook) -> None:
    from gongji.common.avro import SchemaCatalog
    from gongji.common.observe import redacted
    from gongji.common.process import tune_gc, until_stopped
    from gongji.common.redis import DurabilityUnavailable, service_client
    from gongji.settlement.service import SettlementService

    client = await service_client(settings, "settlement")
    from gongji.common.signing import KeyFileError

    try:
        service = SettlementService(settings, SchemaCatalog(), book, client)
    except KeyFileError as error:  # a keys file that cannot be used stops start-up with one line
        await client.aclose()
        sys.exit(f"gongji: settlement: {error}")
    tune_gc()
    logging.getLogger("gongji").info("settlement: regions %s, Kafka %s, Redis %s", ", ".join(book.regions),
                                     settings.kafka_bootstrap_servers, redacted(settings.redis_url))
    try:
        await until_stopped(service.run, grace=settings.stop_grace_seconds, name="settlement")
    except DurabilityUnavailable as error:
        sys.exit(f"gongji: Redis at {redacted(settings.redis_url)}: {error}")
    finally:
        await client.aclose()


def rebuild(args: argparse.Namespace, resolve: Callable[[], Settings]) -> int:
    """`gongji settlement rebuild`: the state in Redis again from Kafka (gongji.settlement.rebuild);
    1 when it wrote no markers."""
    from gongji.settlement.policy import load_policy_book

    book = load_policy_book(args.policies)
    return asyncio.run(_rebuild(resolve(), book, args))


async def _rebuild(settings: Settings, book: PolicyBook, args: argparse.Namespace) -> int:
    from gongji.common.avro import SchemaCatalog
    from gongji.common.redis import DurabilityUnavailable, client_for
    from gongji.settlement.rebuild import RebuildError, rebuild

    client = client_for(settings)
    try:
        report = await rebuild(settings, SchemaCatalog(), book, client, force=args.force,
                               accept_differences=args.accept_differences, batch=args.batch)
    except (RebuildError, DurabilityUnavailable) as error:
        sys.exit(f"gongji: settlement rebuild: {error}")
    finally:
        await client.aclose()
    print("\n".join(report.lines()))
    return 0 if report.markers_written else 1


def replay(args: argparse.Namespace, resolve: Callable[[], Settings]) -> None:
    """`gongji replay FILE`: offline, on no server; only the bounds are read from the environment."""
    from gongji.common.process import tune_gc

    tune_gc()  # the in-memory store only grows: collecting it every 700 allocations cost a third of the time
    asyncio.run(replay_file(args.file, args.policies, args.batch, args.now))


async def replay_file(path: str, policy_dir: Path | None, batch: int = 500, now: datetime | None = None) -> None:
    import gc

    from gongji.settings import Settings
    from gongji.settlement.policy import load_policy_book
    from gongji.settlement.replay import replay_chunks

    book = load_policy_book(policy_dir)
    bounds = Settings().settlement_bounds()
    try:  # bytes: a line that is not UTF-8 is one skipped line, not the end of the file
        source = sys.stdin.buffer if path == "-" else open(path, "rb")
    except OSError as error:
        sys.exit(f"gongji: {path}: {error.strerror}")
    with source:
        write = sys.stdout.write
        async for text in replay_chunks(source, book, batch=batch, bounds=bounds, now=now):
            write(text)
            # The in-memory store only grows: what a batch leaves behind is frozen out of the
            # collector's sight, so each collection looks at the last batch only, not at the year.
            gc.freeze()
