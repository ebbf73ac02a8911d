"""Cross-region clearing rules (issue 4 §3, POLICY §7), pure."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gongji.clearing.domain import FIELDS, Contribution, contribution, fold, statement

pytestmark = pytest.mark.unit
D = Decimal
ZERO = D("0.00")


def result(**changes) -> dict:
    base = {"setl_id": "S1", "insu_admdvs": "990100", "mdtrtarea_admvs": "152501",
            "setl_time": "2023-03-31T23:30:00+08:00", "medfee_sumamt": D("500.00"), "hifp_pay": D("120.00"),
            "hifob_pay": ZERO, "cvlserv_pay": ZERO, "maf_pay": D("30.00"), "fund_pay_sumamt": D("150.00"),
            "acct_pay": D("40.00"), "acct_mulaid_pay": D("10.00")}
    return {**base, **changes}


def test_own_region_is_not_cleared():
    assert contribution(result(mdtrtarea_admvs="990100")) is None


def test_the_insured_region_owes_the_funds_and_accounts():
    item = contribution(result())
    assert (item.ym, item.treatment, item.insured) == ("2023-03", "152501", "990100")
    assert item.amounts["fund_pay_sumamt"] == 15000 and item.amounts["acct_pay"] == 5000  # own 40 + family 10
    assert (item.amounts["settlements"], item.amounts["adjustments"]) == (1, 0)


def test_a_reversal_next_month_adjusts_the_original_month():
    item = contribution(result(setl_id="S2", orig_claim_id="C1", orig_setl_time="2023-03-31T23:30:00+08:00",
                               setl_time="2023-04-02T09:00:00+08:00", medfee_sumamt=D("-500.00"),
                               fund_pay_sumamt=D("-150.00"), acct_pay=D("-40.00"), acct_mulaid_pay=D("-10.00")))
    assert item.ym == "2023-03"
    assert (item.amounts["settlements"], item.amounts["adjustments"], item.amounts["fund_pay_sumamt"]) == (-1, 1, -15000)


@pytest.mark.parametrize(("setl_time", "adjustments"), [
    ("2023-03-31T23:59:59+08:00", 0),  # the original's month: a settlement taken back, no adjustment
    ("2023-04-01T00:00:00+08:00", 1),  # a second later the month has turned: it adjusts March
])
def test_a_reversal_in_the_originals_month_is_no_adjustment(setl_time, adjustments):
    item = contribution(result(setl_id="S2", orig_claim_id="C1", orig_setl_time="2023-03-31T23:30:00+08:00",
                               setl_time=setl_time, medfee_sumamt=D("-500.00"), fund_pay_sumamt=D("-150.00"),
                               acct_pay=D("-40.00"), acct_mulaid_pay=D("-10.00")))
    assert (item.ym, item.amounts["settlements"], item.amounts["adjustments"]) == ("2023-03", -1, adjustments)


@pytest.mark.parametrize(("orig_setl_time", "setl_time", "adjustments"), [
    ("2023-03-31T23:30:00+08:00", "2023-02-27T09:00:00+08:00", 0),  # an earlier month: received before, no adjustment
    ("2023-03-31T23:30:00+08:00", "2023-03-31T15:29:00+00:00", 0),  # 23:29 in Beijing, the same month, before it
    ("2022-12-31T23:30:00+08:00", "2023-01-01T00:10:00+08:00", 1),  # a later month across the year
    ("2023-01-01T00:10:00+08:00", "2022-12-31T23:30:00+08:00", 0),  # an earlier month across the year
])
def test_only_a_reversal_received_in_a_later_month_is_an_adjustment(orig_setl_time, setl_time, adjustments):
    """The schema: "reversals received in a later month than their original". Settlement refuses a
    reversal dated before its original (REVERSAL_BEFORE_ORIGINAL), but `settlements` may still carry
    ones accepted before that rule (an independent reference found 75 of 179), and clearing holds to
    the schema for them."""
    item = contribution(result(setl_id="S2", orig_claim_id="C1", orig_setl_time=orig_setl_time,
                               setl_time=setl_time, medfee_sumamt=D("-500.00"), fund_pay_sumamt=D("-150.00"),
                               acct_pay=D("-40.00"), acct_mulaid_pay=D("-10.00")))
    assert (item.ym, item.amounts["settlements"], item.amounts["adjustments"]) == (
        orig_setl_time[:7], -1, adjustments)


def test_a_month_is_a_month_in_shanghai():
    assert contribution(result(setl_time="2023-03-31T16:30:00+00:00")).ym == "2023-04"  # 00:30 on 1 April in Beijing


def test_statement_nets_the_two_directions():
    """152501 advanced 150 + 50 = 200.00 for 990100's insured; 990100 advanced 80.00 for 152501's:
    990100 pays 152501 a net 120.00."""
    a_to_b = dict.fromkeys(FIELDS, 0) | {"settlements": 1, "fund_pay_sumamt": 15000, "acct_pay": 5000}
    b_to_a = dict.fromkeys(FIELDS, 0) | {"settlements": 2, "fund_pay_sumamt": 8000}
    s = statement("2023-03", "152501", "990100", a_to_b, b_to_a, "2023-04-01T00:00:00+00:00")
    assert (s["a_to_b"]["owed"], s["b_to_a"]["owed"], s["net_to_a"]) == (D("200.00"), D("80.00"), D("120.00"))
    assert s["statement_id"] == statement("2023-03", "152501", "990100", b_to_a, a_to_b, "x")["statement_id"]


contributions = st.builds(
    Contribution, setl_id=st.sampled_from([f"S{i}" for i in range(30)]), ym=st.sampled_from(["2023-03", "2023-04"]),
    treatment=st.sampled_from(["152501", "990100"]), insured=st.sampled_from(["152501", "990100"]),
    amounts=st.fixed_dictionaries({name: st.integers(-10**8, 10**8) for name in FIELDS}))


@settings(max_examples=200, deadline=None)
@given(st.lists(contributions, max_size=60))
def test_positions_equal_the_sum_of_the_settlements_counted_once(items):
    """Issue 4: clearing totals always equal the sum of the cross-region settlements."""
    first = {}
    for item in items:
        first.setdefault(item.setl_id, item)  # a setl_id is one settlement: later copies are redeliveries
    positions = fold(items + items)  # everything delivered twice
    for name in FIELDS:
        assert sum(p[name] for p in positions.values()) == sum(i.amounts[name] for i in first.values())
    for (ym, treatment, insured), position in positions.items():
        assert position["medfee_sumamt"] == sum(i.amounts["medfee_sumamt"] for i in first.values()
                                                if (i.ym, i.treatment, i.insured) == (ym, treatment, insured))
