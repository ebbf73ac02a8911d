"""`gongji run clearing` and `gongji clearing close MONTH`: clearing's entry points (handlers of
gongji.cli's table)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gongji.settings import Settings


def run(args: argparse.Namespace, resolve: Callable[[], Settings]) -> None:
    asyncio.run(serve(resolve()))


async def serve(settings: Settings) -> None:
    from gongji.clearing.service import ClearingService
    from gongji.common.avro import SchemaCatalog
    from gongji.common.process import until_stopped
    from gongji.common.redis import CredentialsRefused, check_credentials, client_for

    client = client_for(settings)
    try:
        await check_credentials(client, settings.redis_url)
    except CredentialsRefused as error:
        await client.aclose()
        sys.exit(f"gongji: clearing: {error}")
    try:
        await until_stopped(ClearingService(settings, SchemaCatalog(), client).run, grace=settings.stop_grace_seconds,
                            name="clearing")
    finally:
        await client.aclose()


def close(args: argparse.Namespace, resolve: Callable[[], Settings]) -> None:
    """`gongji clearing close MONTH`: the month's statements published, and printed."""
    asyncio.run(close_and_print(resolve(), args.month, "csv" if args.csv else "json" if args.json else "text"))


async def close_and_print(settings: Settings, month: str, shape: str = "text") -> None:
    from gongji.clearing import service
    from gongji.common.avro import SchemaCatalog
    from gongji.common.redis import client_for

    client = client_for(settings)
    try:
        statements = await service.close_month(settings, SchemaCatalog(), client, month)
    finally:
        await client.aclose()
    summary = f"{month}: {len(statements)} statement(s) on {settings.topics.clearing_statements}"
    if shape != "text":
        from gongji.clearing.domain import STATEMENT_COLUMNS, STATEMENT_MONEY, statement_rows
        from gongji.common.reports import json_line, write_csv

        print(summary, file=sys.stderr)
        rows = statement_rows(statements)
        if shape == "csv":
            write_csv(sys.stdout, STATEMENT_COLUMNS, rows, STATEMENT_MONEY)
        for row in rows if shape == "json" else ():
            print(json_line(row, STATEMENT_MONEY))
        return
    print(summary)
    for s in statements:
        a, b = s["a_to_b"], s["b_to_a"]
        print(f"  {s['region_a']} ⇄ {s['region_b']}: {s['region_a']} advanced {a['owed']} for {a['settlements']} "
              f"settlement(s), {s['region_b']} advanced {b['owed']} for {b['settlements']}; "
              f"net {s['net_to_a']} to {s['region_a']}")
