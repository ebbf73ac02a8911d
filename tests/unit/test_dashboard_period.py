"""The dashboard's period view (gongji.dashboard.period): the periods' dates and the figures from
the journal's grouped rows, worked by hand."""

from __future__ import annotations

import json
from datetime import date, datetime, timezone
from decimal import Decimal as D

import pytest

from gongji.dashboard.period import bounds, figures


def test_periods_go_by_the_local_date_in_shanghai():
    # 2026-11-30 17:30 UTC is already 1 December in Shanghai (+08:00).
    late = datetime(2026, 11, 30, 17, 30, tzinfo=timezone.utc)
    assert bounds("today", late) == (date(2026, 12, 1), date(2026, 12, 1))
    assert bounds("month", late) == (date(2026, 12, 1), date(2026, 12, 1))
    early = datetime(2026, 11, 30, 15, 59, tzinfo=timezone.utc)
    assert bounds("today", early) == (date(2026, 11, 30), date(2026, 11, 30))
    assert bounds("month", early) == (date(2026, 11, 1), date(2026, 11, 30))
    with pytest.raises(ValueError):
        bounds("year", late)


def row(kind, insured, treated, entries, medfee, fund, acct="0.00", cash="0.00"):
    return {"event_type": kind, "insu_admdvs": insured, "mdtrtarea_admvs": treated, "entries": entries,
            "medfee_sumamt": D(medfee), "fund_pay_sumamt": D(fund), "acct_pay": D(acct), "psn_cash_pay": D(cash)}


def test_counts_net_of_reversals_money_summed_and_cross_region_flows_with_amounts():
    rows = [row("settlement", "152501", "152501", 10, "1000.10", "700.00", "200.00", "100.10"),
            row("settlement", "990100", "152501", 3, "300.00", "210.00", "60.00", "30.00"),
            row("reversal", "990100", "152501", 1, "-100.00", "-70.00", "-20.00", "-10.00"),
            row("settlement", "152501", "990100", 2, "0.20", "0.10", "0.00", "0.10"),
            row("reversal", "152501", "152501", 2, "-200.02", "-140.00", "-40.00", "-20.02")]
    names = {"152501": "152501 Erenhot", "990100": "990100 Demo"}
    out = json.loads(json.dumps(figures("month", date(2026, 12, 1), date(2026, 12, 9), rows, names.get)))
    assert (out["period"], out["from"], out["to"]) == ("month", "2026-12-01", "2026-12-09")
    assert (out["settlements"], out["reversals"], out["claims"]) == (15, 3, 12)
    assert (out["medfee"], out["fund_paid"], out["acct"], out["cash"]) == (1000.28, 700.1, 200.0, 100.18)
    assert out["flows"] == [
        {"insured": "152501 Erenhot", "treated": "990100 Demo", "settlements": 2, "reversals": 0, "claims": 2,
         "medfee": 0.2, "fund_paid": 0.1},
        {"insured": "990100 Demo", "treated": "152501 Erenhot", "settlements": 3, "reversals": 1, "claims": 2,
         "medfee": 200.0, "fund_paid": 140.0}]


def test_an_empty_period_is_zeros_not_an_error():
    out = figures("today", date(2026, 12, 1), date(2026, 12, 1), [])
    assert (out["claims"], out["fund_paid"], out["flows"]) == (0, 0.0, [])
