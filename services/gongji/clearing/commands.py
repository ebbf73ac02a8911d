"""`gongji run clearing`, `gongji clearing close MONTH` and `gongji clearing report MONTH`: clearing's
entry points (handlers of gongji.cli's table)."""

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
    from gongji.common.process import tune_gc, until_stopped
    from gongji.common.redis import service_client

    client = await service_client(settings, "clearing")
    tune_gc()
    try:
        await until_stopped(ClearingService(settings, SchemaCatalog(), client).run, grace=settings.stop_grace_seconds,
                            name="clearing")
    finally:
        await client.aclose()


def clearing(args: argparse.Namespace, resolve: Callable[[], Settings]) -> None:
    """`gongji clearing close MONTH`: the month's statements published, and printed; `gongji clearing
    report MONTH`: the month as it stands per pair of regions or per institution, nothing published."""
    shape = "csv" if args.csv else "json" if args.json else "text"
    if args.action == "close" and args.by != "pair":
        sys.exit("gongji clearing close: statements are per pair of regions; --by institution is for "
                 "`gongji clearing report MONTH --by institution`")
    if args.action == "report":
        asyncio.run(report(resolve(), args.month, args.by, shape))
    else:
        asyncio.run(close_and_print(resolve(), args.month, shape))


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
        print(summary, file=sys.stderr)
        _print_statements(statements, shape)
        return
    print(summary)
    _print_statements(statements, shape)


def _print_statements(statements: list[dict], shape: str) -> None:
    from gongji.clearing.domain import STATEMENT_COLUMNS, STATEMENT_MONEY, statement_rows

    if shape != "text":
        _print_rows(statement_rows(statements), STATEMENT_COLUMNS, STATEMENT_MONEY, shape)
        return
    for s in statements:
        a, b = s["a_to_b"], s["b_to_a"]
        print(f"  {s['region_a']} ⇄ {s['region_b']}: {s['region_a']} advanced {a['owed']} for {a['settlements']} "
              f"settlement(s), {s['region_b']} advanced {b['owed']} for {b['settlements']}; "
              f"net {s['net_to_a']} to {s['region_a']}")


def _print_rows(rows: list[dict], columns, money, shape: str) -> None:
    from gongji.common.reports import json_line, write_csv

    if shape == "json":
        for row in rows:
            print(json_line(row, money))
    else:  # csv; a table is CSV too, for a report
        write_csv(sys.stdout, columns, rows, money)


async def report(settings: Settings, month: str, by: str, shape: str) -> None:
    """The month's clearing as it stands, per pair of regions or per treating institution."""
    from gongji.clearing import domain, service
    from gongji.clearing.store import ClearingStore
    from gongji.common.redis import client_for

    client = client_for(settings)
    try:
        if by == "institution":
            shares = await ClearingStore(client, settings.key_prefix).institutions(month)
            rows, columns, money = domain.institution_rows(month, shares), domain.INSTITUTION_COLUMNS, \
                domain.INSTITUTION_MONEY
        else:
            statements = await service.month_statements(settings, client, month)
            if shape == "text":
                print(f"{month}: {len(statements)} pair(s) of regions (not closed: nothing published)")
                _print_statements(statements, shape)
                return
            rows, columns, money = domain.statement_rows(statements), domain.STATEMENT_COLUMNS, domain.STATEMENT_MONEY
    finally:
        await client.aclose()
    _print_rows(rows, columns, money, shape)
