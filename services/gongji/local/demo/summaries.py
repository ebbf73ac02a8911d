"""What the demo prints at the end: its own figures, then what the downstream services made of the
stream (clearing's statements, the ledger's books, the fraud signals), each read through the
service's own store once its output has stopped moving."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal

from gongji.clearing.service import close_month
from gongji.clearing.store import ClearingStore
from gongji.common import kafka
from gongji.common.avro import SchemaCatalog
from gongji.common.redis import client_for
from gongji.contract.wire import ACCOUNT, FUNDS
from gongji.ledger.store import LedgerStore
from gongji.local.demo.figures import MONEY, Run
from gongji.local.demo.view import yuan
from gongji.settings import Settings

#: How the ledger summary names each fund (by the result field carrying its payment; the
#: contract's label for any other), and the personal accounts' credits.
SHORT_NAMES = {"hifp_pay": "pooling", "hifob_pay": "large-amount", "cvlserv_pay": "civil-servant",
               "maf_pay": "assistance", "oth_pay": "other"}
FUND_NAMES = {fund.code: SHORT_NAMES.get(fund.field, fund.label) for fund in FUNDS} | {
    ACCOUNT: "credited to personal accounts"}


def summary(run: Run) -> str:
    """The final figures as plain text."""
    sent, board = run.sent, run.board
    counts, paid = board.counts, board.paid
    labels = {name: f"{label} ({name})" for name, label in MONEY.items()}
    width = max(map(len, labels.values()))
    lines = [
        f"gongji demo: ran {run.elapsed():.1f} s, claims sent for {run.streamed():.1f} s",
        f"sent: {sent.claims:,} messages on claims at {run.rate}/s, of which {sent.junk + sent.negative} "
        f"deliberately bad ({sent.junk} junk bytes, {sent.negative} claims with a negative amount); "
        f"{sent.credits:,} credits; {sent.registry:,} registry events",
        f"results: {counts['settlement']:,} settlements, {counts['reversal']:,} reversals, "
        f"{counts['credit']:,} credits, {counts['rejection']:,} rejections, "
        f"{counts['dead letter']:,} dead letters; {board.repeats:,} repeated results (resends answered again)",
        f"settlements per second: {run.overall_rate():,.0f} over the claim stream, "
        f"{run.recent_rate():,.0f} over the last 5 s",
        "rejections by err_code: " + (", ".join(f"{code} {n:,}" for code, n in board.rejections.most_common())
                                      or "none"),
        "dead letters by reason: " + ("; ".join(f"{n:,} × {why}" for why, n in board.dead_letters.most_common())
                                      or "none"),
        f"{'paid (yuan)':<{width}}  {'settled':>14}  {'reversed':>12}  {'net':>14}",
        *(f"{label:<{width}}  {yuan(paid['settlement'][name]):>14}  {yuan(paid['reversal'][name]):>12}  "
          f"{yuan(board.net(name)):>14}" for name, label in labels.items()),
        "by insured region: " + "; ".join(_region(run, code) for code in run.regions()),
        f"treated in another region: {board.cross_region():,} settlements",
        f"unanswered at exit: {run.in_flight():,}; service log: {run.log}",
    ]
    return "\n".join(lines)


def _region(run: Run, code: str) -> str:
    settled, fund = run.insured(code)
    return f"{run.board.region(code)}: {settled:,} settlements, fund paid {yuan(fund)}"


async def until_steady(read, quiet: float, limit: float, every: float = 0.3):
    """Read `read()` (a coroutine function) until its value has not changed for `quiet` seconds, or
    `limit` seconds have passed; returns the last value. A downstream service's output stops
    moving once it has caught up: that is when the demo sums it up."""
    last, steady_since, until = await read(), time.monotonic(), time.monotonic() + limit
    while time.monotonic() - steady_since < quiet and time.monotonic() < until:
        await asyncio.sleep(every)
        now = await read()
        if now != last:
            last, steady_since = now, time.monotonic()
    return last


async def caught_up(settings: Settings, group: str, limit: float, topic: str | None = None) -> bool:
    """Whether consumer group `group` has committed `topic` (default `settlements`) to its end within
    `limit` s."""
    try:
        async with kafka.group_progress(settings, topic or settings.topics.settlements) as progress:
            until = time.monotonic() + limit
            while time.monotonic() < until:
                done, end = await progress(group)
                if end and done >= end:
                    return True
                await asyncio.sleep(0.3)
        return False
    except Exception:  # a courtesy wait: never let it hide the demo's own outcome
        return False


async def fraud_summary(run: Run, quiet: float = 2.0, limit: float = 10.0) -> str:
    """Once the fraud service has read every result and every claim (it reads both: a junk claim is
    its dead letter too, so a summary taken while it is behind on `claims` counts too few) and its
    signals stop coming: how many per rule, and the latest few."""
    for topic in (run.settings.topics.settlements, run.settings.topics.claims):
        await caught_up(run.settings, run.settings.kafka_group("fraud"), limit=20.0, topic=topic)

    async def signals() -> int:
        return run.signals()

    await until_steady(signals, quiet, limit)
    board, topic = run.board, run.settings.topics.fraud_signals
    if not run.signals():
        return f"fraud and supervision signals: none on {topic}"
    lines = [f"fraud and supervision signals: {run.signals():,} on {topic} (one per rule, subject and window): "
             + ", ".join(f"{rule} {n:,}" for rule, n in board.signal_rules.most_common())]
    for signal in board.signals.values():
        lines.append(f"  {signal['severity']} {signal['rule_id']} {signal['subject_type']} {signal['subject_id']}: "
                     f"{signal['reason']}")
    return "\n".join(lines)


async def ledger_summary(run: Run, quiet: float = 1.5, limit: float = 15.0) -> str:
    """Once the ledger has booked what it will (its journal stops growing), its trial balance and
    what each kind of fund paid."""
    try:
        store = await LedgerStore.connect(run.settings.database_url, run.settings.ledger_schema,
                                          run.settings.database_password_value())
    except Exception as error:  # the summary is a courtesy: never let it hide the demo's own
        return f"fund ledger: not readable ({error})"
    try:
        async def counts() -> dict | None:
            try:
                return await store.counts()
            except Exception:  # tables not created yet
                return None

        await until_steady(counts, quiet, limit)
        trial = await store.trial_balance()
        funds = await store.balances("account", prefix="fund:")
    except Exception as error:  # LedgerStoreError, psycopg's: a summary never hides the demo's own outcome
        return f"fund ledger: not readable ({error})"
    finally:
        await store.close()
    balanced = not trial["unbalanced"] and all(day["debit"] == day["credit"] for day in trial["days"])
    lines = [f"fund ledger: {trial['entries']} journal entries on {len(trial['days'])} day(s) in PostgreSQL "
             f"(schema {run.settings.ledger_schema}); "
             + ("every entry and every day balances" if balanced else "SOME ENTRIES DO NOT BALANCE")]
    paid: dict[str, Decimal] = {}
    for row in funds:
        _, fund, _region = row["account"].split(":")
        paid[fund] = paid.get(fund, Decimal(0)) + row["balance"]
    for fund, amount in sorted(paid.items()):
        lines.append(f"  {FUND_NAMES.get(fund, fund)} ({fund}): {amount:,.2f} yuan net")
    return "\n".join(lines)


async def clearing_summary(run: Run, catalog: SchemaCatalog, quiet: float = 1.5, limit: float = 15.0) -> str:
    """Once the clearing service has counted what it will (its positions stop moving), close the
    months it touched and describe the statements it publishes to clearing.statements."""
    client = client_for(run.settings)
    try:
        store = ClearingStore(client, run.settings.key_prefix)

        async def snapshot() -> dict:
            return {month: await store.positions(month) for month in await store.months()}

        last = await until_steady(snapshot, quiet, limit)
        statements = [s for month in last for s in await close_month(run.settings, catalog, client, month)]
    finally:
        await client.aclose()
    if not statements:
        return "cross-region clearing: nothing treated outside the insured region"
    net: dict[tuple[str, str], Decimal] = {}
    for s in statements:
        pair = (s["region_a"], s["region_b"])
        net[pair] = net.get(pair, Decimal(0)) + s["net_to_a"]
    lines = [f"cross-region clearing: {len(statements)} statement(s) for {len(last)} month(s) on "
             f"{run.settings.topics.clearing_statements}"]
    for (region_a, region_b), amount in net.items():
        payer, payee = (region_b, region_a) if amount >= 0 else (region_a, region_b)
        lines.append(f"  {payer} pays {payee} a net {abs(amount):,.2f} yuan over those months")
    return "\n".join(lines)
