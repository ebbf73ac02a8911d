"""`gongji run ledger`, `gongji ledger …` and `gongji reconcile …`: the ledger's entry points
(handlers of gongji.cli's table)."""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gongji.settings import Settings
from gongji.common.money import to_fen, to_yuan

# `gongji ledger balances --by`: the accounts each choice shows (gongji.cli offers these and "day").
PREFIXES = {"fund": "fund:", "institution": "inst:", "account": "acct:", "cash": "cash:", "all": None}


def run(args: argparse.Namespace, resolve: Callable[[], Settings]) -> None:
    from gongji.ledger.store import LedgerStoreError

    try:
        asyncio.run(run_ledger(_with_database(resolve())))
    except LedgerStoreError as error:  # credentials refused, a schema the role may not migrate: one line
        sys.exit(f"gongji: ledger: {error}")


def ledger(args: argparse.Namespace, resolve: Callable[[], Settings]) -> int:
    """`gongji ledger migrate|balances|burden|check|entry`."""
    from gongji.ledger.store import LedgerStoreError, migrate

    settings = _with_database(resolve())
    if args.action == "migrate":
        owner = settings.ledger_migration_url
        try:
            applied = migrate(owner or settings.database_url, settings.ledger_schema, settings.ledger_writer_role,
                              settings.migration_password_value() if owner else settings.database_password_value())
        except LedgerStoreError as error:
            sys.exit(f"gongji: ledger migrate: {error}")
        print(f"ledger schema {settings.ledger_schema}: " + (f"applied {', '.join(applied)}" if applied else "up to date"))
        return 0
    try:
        return asyncio.run(_query(settings, args))
    except LedgerStoreError as error:
        sys.exit(f"gongji: ledger: {error}")


def reconcile(args: argparse.Namespace, resolve: Callable[[], Settings]) -> int:
    return asyncio.run(reconcile_command(_with_database(resolve()), args))


def _with_database(settings: Settings) -> Settings:
    if not settings.database_url:
        sys.exit("gongji: the ledger needs PostgreSQL: set GONGJI_DATABASE_URL, or start the local stack "
                 "with `gongji stack up`.")
    return settings


async def run_ledger(settings: Settings) -> None:
    from gongji.common.avro import SchemaCatalog
    from gongji.common.process import tune_gc, until_stopped
    from gongji.ledger.service import LedgerService
    from gongji.ledger.store import LedgerStore, migrate, wait_for_database

    password = settings.database_password_value()
    await wait_for_database(settings.database_url, password=password)
    applied = await asyncio.to_thread(migrate, settings.database_url, settings.ledger_schema, None, password)
    logging.getLogger("gongji.ledger").info("ledger: schema %s ready%s", settings.ledger_schema,
                                            f" (applied {', '.join(applied)})" if applied else "")
    store = await LedgerStore.connect(settings.database_url, settings.ledger_schema, settings.database_password_value())
    tune_gc()
    try:
        await until_stopped(LedgerService(settings, SchemaCatalog(), store).run, grace=settings.stop_grace_seconds,
                            name="ledger")
    finally:
        await store.close()


async def _query(settings: Settings, args: argparse.Namespace) -> int:
    from gongji.ledger.store import LedgerStore

    store = await LedgerStore.connect(settings.database_url, settings.ledger_schema, settings.database_password_value())
    try:
        if args.action == "balances":
            prefix = args.account or (None if args.by == "day" else PREFIXES[args.by])
            rows = await store.balances("day" if args.by == "day" else "account", args.start, args.end, prefix)
            _print_balances(rows, "csv" if args.csv else "json" if args.json else "table", args.by == "day")
            return 0
        if args.action == "burden":
            from gongji.ledger.burden import print_rows

            rows = await store.burden(args.start, args.end, settings.fraud)
            print_rows(rows, "csv" if args.csv else "json" if args.json else "table",
                       to_fen(settings.fraud.oop_share_min_inscope))
            return 0
        if args.action == "check":
            report = await store.trial_balance()
            for day in report["days"]:
                ok = "balanced" if day["debit"] == day["credit"] else "NOT BALANCED"
                print(f"{day['book_date']}  {day['entries']:>8} entries  debit {day['debit']:>16,.2f}  "
                      f"credit {day['credit']:>16,.2f}  {ok}")
            for row in report["unbalanced"]:
                print(f"entry {row['entry_id']} does not balance: debit {row['debit']}, credit {row['credit']}")
            bad_days = [d for d in report["days"] if d["debit"] != d["credit"]]
            print(f"{report['entries']} entries on {len(report['days'])} day(s): "
                  + ("every entry and every day balances" if not bad_days and not report["unbalanced"]
                     else f"{len(report['unbalanced'])} entries and {len(bad_days)} days do not balance"))
            stuck = await ledger_stuck(settings)
            print(stuck or "the ledger is keeping up with the settlements")
            return 1 if bad_days or report["unbalanced"] or stuck else 0
        entry = await store.entry(args.entry_id)
        if entry is None:
            print(f"no journal entry {args.entry_id}", file=sys.stderr)
            return 1
        print(json.dumps(entry, default=str, ensure_ascii=False, indent=2))
        return 0
    finally:
        await store.close()


async def ledger_stuck(settings: Settings) -> str | None:
    """Why the ledger is stuck, or None: its group's committed offsets on `settlements` against the
    topic's end, read twice `ledger_check_seconds` apart; behind both times and not moved is stuck
    (a balanced journal that has stopped booking is not a healthy one)."""
    from gongji.common.kafka import group_progress

    group, topic = settings.ledger_group, settings.topics.settlements
    if not settings.kafka_bootstrap_servers:
        return None  # no broker configured: only the journal can be checked
    try:
        async with group_progress(settings, topic) as progress:
            first, end = await progress(group)
            if first >= end:
                return None
            await asyncio.sleep(settings.ledger_check_seconds)
            done, end = await progress(group)
    except Exception as error:  # the broker away: the check cannot say the ledger keeps up
        return f"STUCK? the ledger's progress on {topic} could not be read: {type(error).__name__}: {error}"
    if done >= end or done > first:
        return None
    return (f"STUCK: the ledger's group {group} is {end - done} results behind on {topic} and did not move in "
            f"{settings.ledger_check_seconds:g} s (is `gongji run ledger` running? see its log and dead-letters)")


BALANCE_COLUMNS = ("account", "debit", "credit", "balance", "postings")
BALANCE_MONEY = ("debit", "credit", "balance")


def _print_balances(rows: list[dict[str, Any]], shape: str, by_day: bool) -> None:
    from gongji.common.reports import json_line, write_csv

    if shape == "json":
        for row in rows:
            print(json_line(row, BALANCE_MONEY))
        return
    if shape == "csv":
        write_csv(sys.stdout, ("book_date",) * by_day + BALANCE_COLUMNS, rows, BALANCE_MONEY)
        return
    if not rows:
        print("no postings")
        return
    day = "book_date" in rows[0]
    width = max(len(row["account"]) for row in rows)
    print(("date        " if day else "") + f"{'account':<{width}}  {'debit':>16}  {'credit':>16}  {'balance':>16}")
    for row in rows:
        print((f"{row['book_date']}  " if day else "") + f"{row['account']:<{width}}  {row['debit']:>16,.2f}  "
              f"{row['credit']:>16,.2f}  {row['balance']:>16,.2f}")


def read_details(path: Path) -> list[Any]:
    from gongji.ledger.domain import detail_from_row

    text = path.read_text(encoding="utf-8-sig")
    if path.suffix.lower() in (".jsonl", ".json", ".ndjson"):
        rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    else:
        rows = list(csv.DictReader(text.splitlines()))
    return [detail_from_row(row) for row in rows]


async def reconcile_command(settings: Settings, args: argparse.Namespace) -> int:
    from gongji.ledger.domain import Totals, Unbookable, reconcile
    from gongji.ledger.store import LedgerStore

    try:
        theirs = Totals(args.count, to_fen(args.medfee_sumamt), to_fen(args.fund_pay_sumamt), to_fen(args.acct_pay))
        details = read_details(args.details) if args.details else None
    except (Unbookable, ValueError, OSError) as error:
        print(f"gongji reconcile: {error}", file=sys.stderr)
        return 2
    store = await LedgerStore.connect(settings.database_url, settings.ledger_schema, settings.database_password_value())
    try:
        ours = await store.centre_details(args.fixmedins, args.start, args.end, args.refunds)
    finally:
        await store.close()
    report = reconcile(ours, theirs, details)
    if args.json:
        print(json.dumps(report_json(report, args), ensure_ascii=False, default=str))
    elif args.csv:
        from gongji.common.reports import write_csv

        write_csv(sys.stdout, REPORT_COLUMNS, report_rows(report, args), REPORT_MONEY)
    else:
        print_report(report, args)
    return 0 if report.verdict == "balanced" else 1


def _totals_json(totals) -> dict[str, Any]:
    return {"count": totals.count, "medfee_sumamt": str(to_yuan(totals.medfee_sumamt)),
            "fund_pay_sumamt": str(to_yuan(totals.fund_pay_sumamt)), "acct_pay": str(to_yuan(totals.acct_pay))}


def _detail_json(detail) -> dict[str, Any] | None:
    if detail is None:
        return None
    return {"setl_id": detail.setl_id, "medfee_sumamt": str(to_yuan(detail.medfee_sumamt)),
            "fund_pay_sumamt": str(to_yuan(detail.fund_pay_sumamt)), "acct_pay": str(to_yuan(detail.acct_pay)),
            "psn_no": detail.psn_no, "setl_time": detail.setl_time}


def report_json(report, args) -> dict[str, Any]:
    return {"fixmedins_code": args.fixmedins, "stmt_begndate": str(args.start), "stmt_enddate": str(args.end),
            "refd_setl_flag": "1" if args.refunds else "0", "verdict": report.verdict, "stmt_rslt": report.code,
            "centre": _totals_json(report.centre), "institution": _totals_json(report.institution),
            "differences": [{"setl_id": d.setl_id, "kind": d.kind, "centre": _detail_json(d.centre),
                             "institution": _detail_json(d.institution)} for d in report.differences]}


REPORT_MONEY = ("medfee_sumamt", "fund_pay_sumamt", "acct_pay")
REPORT_COLUMNS = ("fixmedins_code", "stmt_begndate", "stmt_enddate", "refd_setl_flag", "verdict", "stmt_rslt",
                  "line", "setl_id", "side", "count", *REPORT_MONEY, "setl_time")


def report_rows(report, args) -> list[dict[str, Any]]:
    """The reconciliation as flat rows: `line` total (one per side), then per settlement that differs
    one row per side that has it (`line` its kind: centre has more, institution has more, mismatch)."""
    head = {"fixmedins_code": args.fixmedins, "stmt_begndate": args.start, "stmt_enddate": args.end,
            "refd_setl_flag": "1" if args.refunds else "0", "verdict": report.verdict, "stmt_rslt": report.code}
    rows = [{**head, "line": "total", "side": side, "count": totals.count, "medfee_sumamt": totals.medfee_sumamt,
             "fund_pay_sumamt": totals.fund_pay_sumamt, "acct_pay": totals.acct_pay}
            for side, totals in (("centre", report.centre), ("institution", report.institution))]
    for d in report.differences:
        for side, detail in (("centre", d.centre), ("institution", d.institution)):
            if detail is not None:
                rows.append({**head, "line": d.kind, "setl_id": d.setl_id, "side": side, "count": 1,
                             "medfee_sumamt": detail.medfee_sumamt, "fund_pay_sumamt": detail.fund_pay_sumamt,
                             "acct_pay": detail.acct_pay, "setl_time": detail.setl_time})
    return rows


def print_report(report, args) -> None:
    what = "reversals" if args.refunds else "settlements"
    print(f"{args.fixmedins} {what} {args.start} – {args.end}: {report.verdict.upper()} (stmt_rslt {report.code})")
    print(f"  {'':12}{'count':>8}  {'medfee_sumamt':>16}  {'fund_pay_sumamt':>16}  {'acct_pay':>16}")
    for name, totals in (("centre", report.centre), ("institution", report.institution)):
        print(f"  {name:<12}{totals.count:>8}  {to_yuan(totals.medfee_sumamt):>16,.2f}  "
              f"{to_yuan(totals.fund_pay_sumamt):>16,.2f}  {to_yuan(totals.acct_pay):>16,.2f}")
    for d in report.differences:
        side = d.centre or d.institution
        print(f"  {d.kind:<21} {d.setl_id}  medfee {to_yuan(side.medfee_sumamt)}"
              + (f" (institution {to_yuan(d.institution.medfee_sumamt)}, fund {to_yuan(d.institution.fund_pay_sumamt)}, "
                 f"account {to_yuan(d.institution.acct_pay)}; centre fund {to_yuan(d.centre.fund_pay_sumamt)}, "
                 f"account {to_yuan(d.centre.acct_pay)})" if d.kind == "mismatch" else ""))
