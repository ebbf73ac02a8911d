"""`gongji ledger burden`: the share of in-scope costs left to persons, per insured region and
medical-assistance category, read from the journal (seed 003: "reasonably control the proportion of
out of pocket expenses within the scope of policies for people with difficulties").

Per (insu_admdvs, psn_idet_type) over the period's settlements net of reversals: the persons with
anything in scope, the in-scope total, what the funds paid of it, what was left to the persons, the
share left (gongji.common.burden.left_share), and how many persons are over their region's OOP_SHARE
threshold (GONGJI_FRAUD__OOP_SHARE_THRESHOLD[_BY_REGION], with at least OOP_SHARE_MIN_INSCOPE in
scope: the fraud service's signal counts the same persons). A person whose category changed in the
period is counted under each category for the results settled under it. Rows without a category
(`—`) are every other insured person: the comparison.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any, TextIO

from gongji.common.burden import left_share
from gongji.common.money import to_fen, to_yuan
from gongji.common.reports import json_line, write_csv

BURDEN_QUERY = """
WITH person AS (
    SELECT insu_admdvs AS region, psn_idet_type AS category, psn_no,
           sum(inscp_scp_amt) AS inscope, sum(fund_pay_sumamt) AS fund
    FROM journal_entry
    WHERE event_type IN ('settlement', 'reversal') AND book_date >= %(start)s AND book_date <= %(end)s
    GROUP BY 1, 2, 3
), judged AS (
    SELECT p.*, coalesce(t.threshold, %(threshold)s) AS threshold
    FROM person p LEFT JOIN unnest(%(regions)s::text[], %(thresholds)s::numeric[]) AS t(region, threshold)
         ON t.region = p.region
)
SELECT region, category, count(*) FILTER (WHERE inscope > 0) AS persons,
       coalesce(sum(inscope), 0) AS inscope, coalesce(sum(fund), 0) AS fund,
       count(*) FILTER (WHERE inscope >= %(minimum)s AND inscope > 0 AND inscope - fund > threshold * inscope) AS over
FROM judged
GROUP BY region, category
ORDER BY region, category NULLS FIRST
"""


@dataclass(frozen=True, slots=True)
class BurdenRow:
    region: str
    category: str | None
    persons: int
    inscope: int  # fen
    fund: int
    over: int  # persons over the region's threshold
    threshold: Decimal

    @property
    def left(self) -> int:
        return self.inscope - self.fund

    @property
    def share(self) -> Decimal | None:
        return left_share(self.inscope, self.fund)


def query_params(start: date, end: date, fraud) -> dict[str, Any]:
    regions = sorted(fraud.oop_share_threshold_by_region)
    return {"start": start, "end": end, "threshold": fraud.oop_share_threshold, "regions": regions,
            "thresholds": [fraud.oop_share_threshold_by_region[r] for r in regions],
            "minimum": fraud.oop_share_min_inscope}


def rows_from(records: list[dict[str, Any]], fraud) -> list[BurdenRow]:
    """The query's records as rows (yuan from PostgreSQL's numeric → fen)."""
    return [BurdenRow(r["region"], r["category"], r["persons"], to_fen(r["inscope"]), to_fen(r["fund"]), r["over"],
                      fraud.oop_threshold(r["region"])) for r in records]


COLUMNS = ("insu_admdvs", "psn_idet_type", "persons", "inscp_scp_amt", "fund_pay_sumamt", "left_to_persons",
           "left_share", "threshold", "persons_over")
MONEY = ("inscp_scp_amt", "fund_pay_sumamt", "left_to_persons")


def as_record(row: BurdenRow) -> dict[str, Any]:
    return {"insu_admdvs": row.region, "psn_idet_type": row.category, "persons": row.persons,
            "inscp_scp_amt": row.inscope, "fund_pay_sumamt": row.fund, "left_to_persons": row.left,
            "left_share": None if row.share is None else f"{row.share:f}", "threshold": f"{row.threshold:f}",
            "persons_over": row.over}


def print_rows(rows: list[BurdenRow], shape: str, minimum: int, out: TextIO = sys.stdout) -> None:
    """A table (or CSV, JSON lines); `minimum` is OOP_SHARE_MIN_INSCOPE in fen, for the table's legend."""
    if shape == "json":
        for row in rows:
            print(json_line(as_record(row), MONEY), file=out)
        return
    if shape == "csv":
        write_csv(out, COLUMNS, [as_record(row) for row in rows], MONEY)
        return
    if not rows:
        print("no settlements in the period", file=out)
        return
    print(f"{'region':<8} {'category':<18} {'persons':>8} {'in scope':>16} {'funds paid':>16} {'left':>16} "
          f"{'share':>8} {'over':>6}", file=out)
    for row in rows:
        share = "" if row.share is None else f"{row.share:.2%}"
        print(f"{row.region:<8} {row.category or '—':<18} {row.persons:>8} {to_yuan(row.inscope):>16,.2f} "
              f"{to_yuan(row.fund):>16,.2f} {to_yuan(row.left):>16,.2f} {share:>8} "
              f"{row.over:>6}", file=out)
    print(f"share: of the in-scope costs, what the funds did not pay; over: persons with at least "
          f"{to_yuan(minimum)} yuan in scope and more than their region's threshold of it left to them", file=out)
