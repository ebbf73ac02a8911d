"""The dashboard's period view against the real PostgreSQL of the local stack: the ledger's owner
migrates and the writer books today's and an earlier day's settlements and a reversal; the
dashboard, given the read-only role `gongji_ledger_reader` as the stack gives it, answers
/period.json with today's and this month's figures net of the reversal, cross-region flows with
amounts; the reader role may not write; without a ledger the page is told why."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

import aiohttp
import psycopg
import pytest
from pydantic import SecretStr
from tests.dashboard_records import settlement
from tests.integration.support import as_service, ledger_store

from gongji.dashboard.period import ZONE
from gongji.dashboard.service import start_dashboard
from gongji.ledger.domain import entry_for

TOKEN = "period-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def at(day: datetime, **result) -> dict:
    return {**result, "setl_time": day.isoformat()}


def reversal_of(result: dict, day: datetime) -> dict:
    negated = {name: (-value if isinstance(value, Decimal) else value) for name, value in result.items()}
    negated["setldetail"] = [{**line, "fund_payamt": -line["fund_payamt"]} for line in result["setldetail"]]
    return {**negated, "claim_id": "R" + result["claim_id"], "setl_id": "R" + result["setl_id"],
            "orig_claim_id": result["claim_id"], "orig_setl_id": result["setl_id"], "setl_time": day.isoformat()}


async def test_today_and_this_month_from_the_ledger_as_its_read_only_role(ledger_settings):
    now = datetime.now(ZONE)
    today = now.replace(hour=12, minute=0, second=0, microsecond=0)
    earlier = today - timedelta(days=1) if today.day > 1 else None  # still this month, not today
    home = at(today, **settlement("P1", hifp="100.00", acct="20.00", cash="5.00"))
    away = at(today, **settlement("P2", insured="990100", treated="152501", hifp="60.00", acct="0.00", cash="4.50"))
    undone = at(today, **settlement("P3", insured="990100", treated="152501", hifp="30.00", acct="0.00", cash="1.00"))
    results = [("settlement", home), ("settlement", away), ("settlement", undone),
               ("reversal", reversal_of(undone, today + timedelta(minutes=5)))]
    if earlier:
        results.append(("settlement", at(earlier, **settlement("P4", hifp="7.00", acct="0.00", cash="0.00"))))
    store = await ledger_store(ledger_settings)
    try:
        await store.book([(entry_for(kind, data), None) for kind, data in results])
    finally:
        await store.close()

    dashboard = as_service(ledger_settings.model_copy(update={"dashboard_port": 0, "dashboard_token": SecretStr(TOKEN)}),
                           "dashboard")
    assert dashboard.database_url and "gongji_ledger_reader@" in dashboard.database_url
    running = await start_dashboard(dashboard, region_names={"152501": "Erenhot"})
    try:
        async with aiohttp.ClientSession(headers=AUTH) as session:
            async with session.get(running.url + "period.json?period=today") as response:
                assert response.status == 200, await response.text()
                day = await response.json()
            async with session.get(running.url + "period.json?period=month") as response:
                month = await response.json()
            async with session.get(running.url + "period.json?period=year") as response:
                assert response.status == 400
            async with aiohttp.ClientSession() as stranger:
                async with stranger.get(running.url + "period.json?period=today") as response:
                    assert response.status == 401
    finally:
        await running.stop()

    assert day["from"] == day["to"] == today.date().isoformat()
    assert (day["settlements"], day["reversals"], day["claims"]) == (3, 1, 2)
    assert (day["medfee"], day["fund_paid"], day["acct"], day["cash"]) == (189.5, 160.0, 20.0, 9.5)
    assert day["flows"] == [{"insured": "990100", "treated": "152501 Erenhot", "settlements": 2, "reversals": 1,
                             "claims": 1, "medfee": 64.5, "fund_paid": 60.0}]
    assert month["from"] == today.date().replace(day=1).isoformat()
    assert month["claims"] == day["claims"] + (1 if earlier else 0)
    assert month["fund_paid"] == day["fund_paid"] + (7.0 if earlier else 0.0)

    # The reader reads and nothing more, even outside the dashboard's read-only sessions.
    async with await psycopg.AsyncConnection.connect(dashboard.database_url, autocommit=True,
                                                     password=dashboard.database_password_value()) as connection:
        await connection.execute(f"SELECT count(*) FROM {ledger_settings.ledger_schema}.journal_entry")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            await connection.execute(f"DELETE FROM {ledger_settings.ledger_schema}.posting")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            await connection.execute(f"CREATE TABLE {ledger_settings.ledger_schema}.mine (x int)")


async def test_without_a_ledger_the_period_view_says_why_and_the_live_view_goes_on(ledger_settings):
    settings = ledger_settings.model_copy(update={"dashboard_port": 0, "dashboard_token": SecretStr(TOKEN), "database_url": None})
    running = await start_dashboard(settings)
    try:
        async with aiohttp.ClientSession(headers=AUTH) as session:
            async with session.get(running.url + "period.json?period=today") as response:
                assert response.status == 503
                assert "GONGJI_DATABASE_URL" in (await response.json())["error"]
            async with session.get(running.url + "snapshot.json") as response:
                assert response.status == 200
    finally:
        await running.stop()
