"""HIGH_EXPENSE relative to income and on the in-scope burden (seed 003: "We will strengthen early
warning and monitoring of high medical expenses, do a good job in early warning of poverty caused by
illness and return to poverty due to illness ... For key monitoring groups, implement assistance
according to application"). Hand-worked: a share of 0.25 of Erenhot's 40000.00 is 10000.00."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from tests.unit.builders import BOOK, claim, institution, line, person, state

from gongji.contract.wire import SHANGHAI
from gongji.fraud.domain import MemoryBuckets, VisitReversed, VisitSettled, in_scope_burden, visit_from_wire
from gongji.fraud.rules import detect, high_expense_threshold
from gongji.fraud_settings import FraudSettings
from gongji.settlement.codec import from_output
from gongji.settlement.domain import Output
from gongji.settlement.rules import settle_claim

pytestmark = pytest.mark.unit
RELATIVE = dict(high_expense_income_share=Decimal("0.25"), high_expense_income={"152501": Decimal("40000.00")})


def t(day: int) -> datetime:
    return datetime(2023, 3, 1, 9, tzinfo=SHANGHAI) + timedelta(days=day)


def visit(cid, burden, part=None, region="152501", day=0):
    return VisitSettled(cid, "P", "H1", region, region, t(day), 100_000_00, burden if part is None else part, burden)


def undo(cid, orig, burden, region="152501", day=30, orig_day=0):
    return VisitReversed(cid, orig, "P", "H1", region, t(day), t(orig_day), -burden, -burden, region)


def states(events, **config):
    """HIGH_EXPENSE's state after each event's signals: raised or withdrawn, or None when it did not move."""
    cfg, buckets = FraudSettings(**{**RELATIVE, **config}), MemoryBuckets()
    return [next((s.status for s in detect(cfg, buckets, [e], end_of_stream=False).signals
                  if s.rule_id == "HIGH_EXPENSE"), None) for e in events]


@pytest.mark.parametrize("burden, raised", [(9_999_99, False), (10_000_00, False), (10_000_01, True)])
def test_a_share_of_income_one_fen_either_side(burden, raised):
    assert states([visit("C1", burden)]) == ["raised" if raised else None]


def test_the_threshold_and_how_it_was_set():
    assert high_expense_threshold(FraudSettings(**RELATIVE), "152501")[0] == 10_000_00
    # A region without an income, or no share: the fixed amount (20000.00 by default).
    assert high_expense_threshold(FraudSettings(**RELATIVE), "990100") == (20_000_00, "")
    assert high_expense_threshold(FraudSettings(high_expense_income=RELATIVE["high_expense_income"]), "152501") \
        == (20_000_00, "")
    # Half up to the fen: 0.333 × 40000.01 = 13320.00333.
    odd = FraudSettings(high_expense_income_share=Decimal("0.333"), high_expense_income={"1": Decimal("40000.01")})
    assert high_expense_threshold(odd, "1")[0] == 13_320_00


def test_a_region_without_an_income_keeps_the_fixed_amount():
    assert states([visit("C1", 15_000_00, region="990100")]) == [None]
    assert states([visit("C1", 20_000_01, region="990100")]) == ["raised"]


def test_only_the_in_scope_burden_counts():
    """psn_part_amt of 30000.00, of which 20000.01 丙类 or non-medical: 9999.99 in scope, no warning."""
    assert states([visit("C1", 9_999_99, part=30_000_00)]) == [None]


def test_in_scope_burden_leaves_out_class_c_non_medical_and_over_limit_lines():
    """Erenhot general outpatient: 甲类 1200.00, a 甲类 line at 120.00 over its limit price 100.00,
    丙类 500.00, non-medical 300.00. In scope 1300.00; deductible 1000.00; pooling 300 × 0.60 = 180.00.
    psn_part 2120 − 180 = 1940.00; in-scope burden 1940 − 800.00 (全自费) − 20.00 (over the limit) = 1120.00."""
    c = claim(line("1200.00"), line(pric="120.00", uplmt="100.00"), line("500.00", lv="03"),
              line("300.00", non_med="1"))
    settled = settle_claim(c, person(), institution("H3", level="3"), BOOK, state())
    _, wire = from_output(Output("P1", settled.settlement))
    assert wire["psn_part_amt"] == Decimal("1940.00")
    assert in_scope_burden(wire) == 1120_00 == visit_from_wire(wire).inscp_burden_fen


def test_a_reversal_that_brings_the_year_back_under_is_the_next_state_and_a_new_visit_raises_again():
    events = [visit("C1", 6_000_00), visit("C2", 4_000_01, day=1), undo("R2", "C2", 4_000_01, orig_day=1),
              visit("C3", 4_000_00, day=40), visit("C4", 1, day=41)]
    assert states(events) == [None, "raised", "withdrawn", None, "raised"]


def test_the_answer_is_the_same_in_any_read_order():
    events = [visit("C1", 6_000_00), visit("C2", 4_000_01, day=1), undo("R2", "C2", 4_000_01, orig_day=1),
              visit("C3", 4_000_00, day=40)]
    finals = set()
    for order in itertools.permutations(events):
        cfg, buckets = FraudSettings(**RELATIVE), MemoryBuckets()
        net = {}
        for s in detect(cfg, buckets, list(order)).signals:
            if s.rule_id == "HIGH_EXPENSE":
                net[s.signal_id] = s.status
        finals.add(tuple(sorted(net.values())))
    # 10000.00 in scope net once everything is read: not above the line, so nothing stays raised in any order.
    assert finals <= {(), ("withdrawn",)}


def test_the_settings_come_from_the_environment_and_reach_a_child(monkeypatch):
    from gongji.settings import Settings
    monkeypatch.setenv("GONGJI_FRAUD__HIGH_EXPENSE_INCOME_SHARE", "0.25")
    monkeypatch.setenv("GONGJI_FRAUD__HIGH_EXPENSE_INCOME", '{"152501": "40000.00"}')
    settings = Settings()
    assert high_expense_threshold(settings.fraud, "152501")[0] == 10_000_00
    env = settings.to_env()
    assert env["GONGJI_FRAUD__HIGH_EXPENSE_INCOME_SHARE"] == "0.25"
    monkeypatch.delenv("GONGJI_FRAUD__HIGH_EXPENSE_INCOME_SHARE")
    monkeypatch.setenv("GONGJI_FRAUD__HIGH_EXPENSE_INCOME_SHARE", "")  # empty: unset, the fixed amount
    assert high_expense_threshold(Settings().fraud, "152501")[0] == 20_000_00
