"""The dashboard's period view: what the ledger booked today or this month, beside the live figures.

The live view (gongji.dashboard.domain.Board) counts the last `dashboard_lookback_seconds` read
from the topics; a day or a month is more than a dashboard holds in memory or reads back on start,
so those come from the ledger's journal (PostgreSQL), which keeps every settlement and reversal
booked. The dashboard reads it as a role that may only SELECT (deploy/postgres/roles.sql,
`gongji_ledger_reader`), never as the ledger's writer or owner.

Periods go by book_date, the settlement's own local date in Asia/Shanghai (as the ledger books
it), up to today: "today" is that date, "month" its month from the 1st. Counts are net of
reversals (a reversal entry takes its claim out) and money sums the entries (a reversal's amounts
are booked negated). `bounds` and `figures` are pure; `LedgerReader` is the edge.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from gongji.common.observe import redacted
from gongji.settings import Settings

log = logging.getLogger("gongji.dashboard")
ZONE = ZoneInfo("Asia/Shanghai")
PERIODS = ("today", "month")
FRESH_SECONDS = 5.0  # an answer is reused this long: many pages open ask the ledger once
ZERO = Decimal("0.00")
MONEY = ("medfee_sumamt", "fund_pay_sumamt", "acct_pay", "psn_cash_pay")

QUERY = """SELECT event_type, insu_admdvs, mdtrtarea_admvs, count(*) AS entries,
  sum(medfee_sumamt) AS medfee_sumamt, sum(fund_pay_sumamt) AS fund_pay_sumamt, sum(acct_pay) AS acct_pay,
  sum(psn_cash_pay) AS psn_cash_pay
FROM {schema}.journal_entry
WHERE book_date BETWEEN %s AND %s AND event_type IN ('settlement', 'reversal')
GROUP BY event_type, insu_admdvs, mdtrtarea_admvs"""


def bounds(period: str, now: datetime) -> tuple[date, date]:
    """First and last book_date of `period` at `now` (an aware time), in Asia/Shanghai."""
    day = now.astimezone(ZONE).date()
    if period == "today":
        return day, day
    if period == "month":
        return day.replace(day=1), day
    raise ValueError(f"period {period!r}: one of {', '.join(PERIODS)}")


def figures(period: str, start: date, end: date, rows: list[dict],
            region: Callable[[str], str] = str) -> dict:
    """The page's figures from the journal's rows grouped by (event_type, insured, treated region)."""
    totals = dict.fromkeys(MONEY, ZERO)
    counts = {"settlement": 0, "reversal": 0}
    flows: dict[tuple[str, str], dict] = {}
    for row in rows:
        kind, insured, treated = row["event_type"], row["insu_admdvs"] or "?", row["mdtrtarea_admvs"] or "?"
        counts[kind] += row["entries"]
        for name in MONEY:
            totals[name] += row[name] or ZERO
        if insured != treated:
            flow = flows.setdefault((insured, treated), {"settlements": 0, "reversals": 0, "medfee": ZERO,
                                                         "fund_paid": ZERO})
            flow["settlements" if kind == "settlement" else "reversals"] += row["entries"]
            flow["medfee"] += row["medfee_sumamt"] or ZERO
            flow["fund_paid"] += row["fund_pay_sumamt"] or ZERO
    return {
        "period": period, "from": start.isoformat(), "to": end.isoformat(),
        "settlements": counts["settlement"], "reversals": counts["reversal"],
        "claims": counts["settlement"] - counts["reversal"],
        "medfee": _f(totals["medfee_sumamt"]), "fund_paid": _f(totals["fund_pay_sumamt"]),
        "acct": _f(totals["acct_pay"]), "cash": _f(totals["psn_cash_pay"]),
        "flows": [{"insured": region(insured), "treated": region(treated), "settlements": f["settlements"],
                   "reversals": f["reversals"], "claims": f["settlements"] - f["reversals"],
                   "medfee": _f(f["medfee"]), "fund_paid": _f(f["fund_paid"])}
                  for (insured, treated), f in sorted(flows.items())],
    }


def _f(value: Decimal) -> float:
    return float(round(value, 2))


class LedgerReader:
    """The journal read as the dashboard's read-only role: one connection, opened when first asked
    and again after a failure; answers kept FRESH_SECONDS."""

    def __init__(self, database_url: str, schema: str, password: str | None = None):
        self.database_url, self.schema, self._password = database_url, schema, password
        self._connection: psycopg.AsyncConnection | None = None
        self._answers: dict[str, tuple[float, dict]] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> LedgerReader | None:
        """None when no ledger is configured (GONGJI_DATABASE_URL): the page then offers the live view only."""
        if not settings.database_url:
            return None
        return cls(settings.database_url, settings.ledger_schema, settings.database_password_value())

    async def answer(self, period: str, region: Callable[[str], str] = str,
                     now: datetime | None = None) -> tuple[int, dict]:
        """(HTTP status, body) for /period.json: the figures, or what keeps the page from them."""
        if period not in PERIODS:
            return 400, {"error": f"period: one of {', '.join(PERIODS)}"}
        kept = self._answers.get(period)
        if kept and time.monotonic() - kept[0] < FRESH_SECONDS and now is None:
            return 200, kept[1]
        start, end = bounds(period, now or datetime.now(ZONE))
        try:
            rows = await self._rows(start, end)
        except psycopg.Error as error:
            await self.close()
            reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            log.warning("dashboard: the ledger at %s (GONGJI_DATABASE_URL): %s", redacted(self.database_url), reason)
            return 503, {"error": f"ledger at {redacted(self.database_url)}: {reason}"}
        body = figures(period, start, end, rows, region)
        self._answers[period] = (time.monotonic(), body)
        return 200, body

    async def _rows(self, start: date, end: date) -> list[dict]:
        if self._connection is None or self._connection.closed:
            extra = {"password": self._password} if self._password else {}
            self._connection = await psycopg.AsyncConnection.connect(
                self.database_url, autocommit=True, row_factory=dict_row, connect_timeout=5,
                options="-c default_transaction_read_only=on", **extra)
        query = sql.SQL(QUERY).format(schema=sql.Identifier(self.schema))
        cursor = await self._connection.execute(query, (start, end))
        return await cursor.fetchall()

    async def close(self) -> None:
        if self._connection is not None:
            connection, self._connection = self._connection, None
            try:
                await connection.close()
            except psycopg.Error:
                pass
