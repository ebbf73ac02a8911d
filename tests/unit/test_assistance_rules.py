"""Seed 003's assistance rules beyond the three lines: 倾斜救助 (preferential assistance) and
assistance on application for key monitoring groups (易返贫致贫). Every figure is worked by hand from
the shipped Erenhot sample policy (152501): level-3 inpatient, deductible 800.00, in-service 85%;
医疗救助 低保 70% without deductible, 易返贫致贫 (relapse_risk) 60% after 10% of 40000.00 = 4000.00,
annual relief limit 30000.00; 倾斜救助 heavy above 10000.00 a year, 50%, annual limit 20000.00.

The reference claim: 10800.00 of 甲类 at H3, med_type 21. Basic (10800 − 800) × 0.85 = 8500.00;
2300.00 in scope left; 低保 assistance 2300 × 0.70 = 1610.00; burden left after the three layers
2300 − 1610 = 690.00."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from tests.unit.builders import BOOK, claim, fen, institution, line, person, record, reversal, state

from gongji.settlement.codec import from_output
from gongji.settlement.domain import Rejection, YearTotals
from gongji.settlement.events import AccumulatorQuery, Institution
from gongji.settlement.inquiry import accumulators
from gongji.settlement.memory_store import MemoryStore
from gongji.settlement.policy import PolicyBook, parse_policy
from gongji.settlement.rules import reverse_claim, settle_claim
from gongji.settlement.settler import Settler

pytestmark = pytest.mark.unit
H3 = institution("H3", level="3")
GRANT = dict(aid_idet_type="relapse_risk", aid_begndate="2023-06-01", aid_enddate="2023-06-30",
             aid_apprv_org="二连浩特市医疗保障局", aid_apprv_date="2023-05-20")


def inpatient(when: str = "2023-06-01T10:00:00+08:00", amount: str = "10800.00", **kw):
    return claim(line(amount), med_type="21", setl_time=when, **kw)


def settle(p, c, st, book=BOOK):
    outcome = settle_claim(c, p, H3, book, st)
    assert not isinstance(outcome, Rejection), outcome
    return outcome


DIBAO = person(psn_idet_type="dibao")
HEAVY = YearTotals(maf_pref_burden_used=fen("10000.00"))  # the year's burden already heavy


# ---------------------------------------------------------------- 倾斜救助


@pytest.mark.parametrize("used, pref", [
    ("9309.99", "0.00"),  # 690.00 more reaches 9999.99: not heavy yet
    ("9310.00", "0.00"),  # reaches 10000.00 exactly: nothing above it
    ("9310.01", "0.01"),  # 0.01 above the line × 0.50 = 0.005 → 0.01 (half up)
    ("9309.00", "0.00"),
    ("9400.00", "45.00"),  # 10090.00: 90.00 above × 0.50
])
def test_preferential_starts_above_the_heavy_burden_line_one_fen_either_side(used, pref):
    """Seed 003: "For the relief objects who still have a heavy personal burden after being guaranteed
    by the triple system, the local government shall give preferential assistance"."""
    outcome = settle(DIBAO, inpatient(), state(y2023=YearTotals(maf_pref_burden_used=fen(used))))
    s = outcome.settlement
    assert s.maf_pref_pay == fen(pref)
    assert s.maf_pay == fen("1610.00") + fen(pref)  # inside maf_pay and fund_pay_sumamt, not beside them
    assert s.fund_pay_sumamt == fen("8500.00") + s.maf_pay
    assert s.psn_part_amt == fen("690.00") - fen(pref)
    year = outcome.state.year(2023)
    assert year.maf_pref_burden_used == min(fen("10000.00"), fen(used) + fen("690.00"))
    assert year.maf_pref_paid == fen(pref) and year.maf_paid == fen("1610.00")  # the relief limit's own
    assistance = [row for row in s.setldetail if row.fund_pay_type == "610100"]
    assert len(assistance) == 1 and assistance[0].fund_payamt == s.maf_pay  # one row per fund
    assert "倾斜救助" in assistance[0].setl_proc_info


@pytest.mark.parametrize("paid, pref", [
    ("19654.99", "345.00"),  # 345.01 left: the ratio binds (690.00 × 0.50)
    ("19655.00", "345.00"),  # exactly 345.00 left
    ("19655.01", "344.99"),  # the limit binds
    ("20000.00", "0.00"),
])
def test_preferential_has_its_own_annual_limit_one_fen_either_side(paid, pref):
    outcome = settle(DIBAO, inpatient(), state(y2023=dataclasses.replace(HEAVY, maf_pref_paid=fen(paid))))
    assert outcome.settlement.maf_pref_pay == fen(pref)
    assert outcome.state.year(2023).maf_pref_paid == fen(paid) + fen(pref)


def test_preferential_pays_above_an_exhausted_annual_relief_limit():
    """The relief limit (30000.00) used up: 医疗救助 pays nothing, the whole 2300.00 is burden left, and
    倾斜救助 still pays 2300 × 0.50 = 1150.00 against its own limit."""
    before = state(y2023=dataclasses.replace(HEAVY, maf_paid=fen("30000.00")))
    s = settle(DIBAO, inpatient(), before).settlement
    assert (s.maf_pay, s.maf_pref_pay, s.psn_part_amt) == (fen("1150.00"), fen("1150.00"), fen("1150.00"))


def test_reversal_restores_the_preferential_accumulators_exactly():
    before = state(y2023=YearTotals(maf_pref_burden_used=fen("9400.00"), maf_pref_paid=fen("100.00")))
    outcome = settle(DIBAO, inpatient(), before)
    assert outcome.settlement.maf_pref_pay == fen("45.00")
    undone = reverse_claim(reversal(outcome.settlement.claim_id, setl_time="2024-01-05T09:00:00+08:00"),
                           record(outcome), outcome.state)
    assert undone.state.year(2023) == before.year(2023)
    assert (undone.settlement.maf_pay, undone.settlement.maf_pref_pay) == (-fen("1655.00"), -fen("45.00"))
    kind, wire = from_output(type("O", (), {"value": undone.settlement, "key": "P1"})())
    assert kind == "reversal" and str(wire["maf_pref_pay"]) == "-45.00"


def test_no_preferential_for_persons_without_a_category_or_in_general_outpatient():
    assert settle(person(), inpatient(), state(y2023=HEAVY)).settlement.maf_pref_pay == 0
    general = settle(DIBAO, claim(line("3000.00")), state(y2023=HEAVY)).settlement
    assert (general.maf_pay, general.maf_pref_pay) == (0, 0)


def _without_preferential() -> PolicyBook:
    from importlib.resources import files
    text = files("gongji.settlement").joinpath("policies/152501.toml").read_text(encoding="utf-8")
    head, _, tail = text.partition("[versions.assistance.preferential]")
    tail = tail[tail.index("\n[", 1):]  # drop the table's three lines
    return PolicyBook([parse_policy(head + tail, "152501-without.toml")])


def test_a_policy_without_the_table_pays_no_preferential():
    book = _without_preferential()
    s = settle(DIBAO, inpatient(), state(y2023=HEAVY), book).settlement
    assert (s.maf_pay, s.maf_pref_pay) == (fen("1610.00"), 0)
    assert "倾斜救助" not in s.setldetail[-1].setl_proc_info


@pytest.mark.parametrize("field, value", [("heavy_burden", "0.00"), ("ratio", "0"), ("annual_limit", "0.00"),
                                          ("ratio", "1.01")])
def test_the_preferential_terms_are_refused_at_load_when_meaningless(field, value):
    from importlib.resources import files
    from gongji.settlement.policy import PolicyError
    text = files("gongji.settlement").joinpath("policies/152501.toml").read_text(encoding="utf-8")
    table = "[versions.assistance.preferential]"
    head, _, tail = text.partition(table)
    tail = "\n".join(f'{field} = "{value}"' if row.startswith(f"{field} =") else row for row in tail.split("\n"))
    with pytest.raises(PolicyError, match=rf"assistance\.preferential\.{field}"):
        parse_policy(head + table + tail, "bad.toml")


def test_accumulator_query_shows_the_preferential_rows():
    outcome = settle(DIBAO, inpatient(), state(y2023=YearTotals(maf_pref_burden_used=fen("9400.00"))))
    answer = accumulators(AccumulatorQuery(query_id="Q", psn_no="P1", year=2023), DIBAO, BOOK, outcome.state)
    rows = {row.cum_type_code: (row.cum, row.payb_lmt_amt, row.crt_payb_lmt_amt) for row in answer.cuminfo}
    assert rows["maf_pref_burden"] == (fen("10000.00"), fen("10000.00"), 0)
    assert rows["maf_pref"] == (fen("45.00"), fen("20000.00"), fen("19955.00"))
    plain = accumulators(AccumulatorQuery(query_id="Q", psn_no="P2", year=2023), person("P2"), BOOK, state())
    assert "maf_pref" not in {row.cum_type_code for row in plain.cuminfo}


# ---------------------------------------------------------------- assistance on application


MET = YearTotals(maf_deductible_used=fen("4000.00"))  # 易返贫致贫's deductible, 10% of 40000.00, met


@pytest.mark.parametrize("when, maf", [
    ("2023-05-31T23:59:59+08:00", "0.00"),  # the day before the period
    ("2023-05-31T16:00:00+00:00", "1380.00"),  # 1 June 00:00 in Asia/Shanghai: the first day
    ("2023-06-01T00:00:00+08:00", "1380.00"),  # 2300 × 0.60
    ("2023-06-30T23:59:59+08:00", "1380.00"),  # the last day, included
    ("2023-07-01T00:00:00+08:00", "0.00"),  # the day after
])
def test_assistance_granted_on_application_holds_within_its_period(when, maf):
    """Seed 003: "For key monitoring groups, implement assistance according to application"."""
    granted = person(**GRANT)
    s = settle(granted, inpatient(when), state(y2023=MET)).settlement
    assert (s.maf_pay, s.maf_pref_pay) == (fen(maf), 0)
    if maf != "0.00":
        assert "易返贫致贫" in [row for row in s.setldetail if row.fund_pay_type == "610100"][0].setl_proc_info


def test_the_granted_category_has_its_own_deductible():
    """Nothing met yet: 2300.00 all under the 4000.00 deductible, no assistance; a second stay: 1700.00 of
    the deductible left, (2300 − 1700) × 0.60 = 360.00."""
    granted = person(**GRANT)
    first = settle(granted, inpatient(), state())
    assert first.settlement.maf_pay == 0 and first.state.year(2023).maf_deductible_used == fen("2300.00")
    second = settle(granted, inpatient("2023-06-02T10:00:00+08:00"), first.state)
    assert second.settlement.maf_pay == fen("360.00")


@pytest.mark.parametrize("used, maf", [("1699.99", "0.00"), ("1700.00", "0.00"), ("1700.01", "0.01")])
def test_the_granted_categorys_deductible_one_fen_either_side(used, maf):
    """2300.00 in scope left against 4000.00: with 1700.00 used it takes all of it; 0.01 more used leaves
    0.01 above it, × 0.60 = 0.006 → 0.01 (half up)."""
    s = settle(person(**GRANT), inpatient(), state(y2023=YearTotals(maf_deductible_used=fen(used)))).settlement
    assert s.maf_pay == fen(maf)


def test_a_standing_category_comes_before_a_grant():
    both = person(psn_idet_type="dibao", **GRANT)
    assert settle(both, inpatient(), state(y2023=MET)).settlement.maf_pay == fen("1610.00")  # 低保 70%
    # Outside the grant the standing category still holds.
    assert settle(both, inpatient("2023-08-01T10:00:00+08:00"), state()).settlement.maf_pay == fen("1610.00")


def test_a_granted_code_the_policy_does_not_list_gives_no_assistance():
    unknown = person(**{**GRANT, "aid_idet_type": "not_in_policy"})
    assert settle(unknown, inpatient(), state(y2023=MET)).settlement.maf_pay == 0


def test_both_shipped_policies_list_the_key_monitoring_category_under_the_three_lines():
    for region in BOOK.regions:
        assistance = BOOK.region(region).versions[-1].assistance
        category = assistance.category("relapse_risk")
        assert category is not None and category.name == "易返贫致贫"
        assert category.deductible_share > 0 and category.ratio < min(
            c.ratio for c in assistance.categories if set(c.codes) & {"dibao", "tekun"})


@pytest.mark.parametrize("change, problem", [
    ({"aid_apprv_org": None}, "all of aid_idet_type"),
    ({"aid_begndate": None}, "all of aid_idet_type"),
    ({"aid_enddate": "2023-05-31"}, "before aid_begndate"),
    ({"aid_enddate": "2023-02-30"}, "no date"),
    ({"aid_begndate": "2023-6-1"}, "pattern"),
])
def test_a_grant_must_be_whole_and_its_period_real(change, problem):
    with pytest.raises(ValidationError, match=problem):
        person(**{**GRANT, **change})
    assert person(**{**GRANT, "aid_enddate": "2023-06-01", "aid_begndate": "2023-06-01"}).aid_enddate == "2023-06-01"


def test_accumulator_query_shows_a_grant_that_held_in_the_year():
    granted = person(**GRANT)
    rows = {row.cum_type_code: row.payb_lmt_amt for row in accumulators(
        AccumulatorQuery(query_id="Q", psn_no="P1", year=2023), granted, BOOK, state()).cuminfo}
    assert rows["maf_deductible"] == fen("4000.00") and rows["maf"] == fen("30000.00")
    other_year = {row.cum_type_code for row in accumulators(
        AccumulatorQuery(query_id="Q", psn_no="P1", year=2024), granted, BOOK, state()).cuminfo}
    assert "maf" not in other_year


# ---------------------------------------------------------------- batch invariance


def _stream() -> list:
    inst = Institution(fixmedins_code="H3", fixmedins_name="h", fixmedins_type="1", medins_lv="3",
                       grassroots=False, admdvs="152501")
    events: list = [inst, person("A", psn_idet_type="dibao"), person("B")]
    for n, day in enumerate(("05-20", "06-03", "06-10", "06-20", "07-02", "07-09")):
        for psn in ("A", "B"):
            events.append(inpatient(f"2023-{day}T10:00:00+08:00", "60000.00", claim_id=f"{psn}{n}", psn_no=psn))
        if n == 1:  # B's grant arrives mid-stream: the claims before it settle without it
            events.append(person("B", **GRANT))
        if n == 3:
            events.append(reversal("A2", claim_id="RA2", psn_no="A", setl_time="2023-06-21T10:00:00+08:00"))
            events.append(reversal("B2", claim_id="RB2", psn_no="B", setl_time="2023-06-21T10:00:00+08:00"))
    return events


async def _settle(events, size):
    store = MemoryStore()
    settler = Settler(store, BOOK)
    out = []
    for start in range(0, len(events), size):
        out += [from_output(o) for o in await settler.handle(events[start:start + size])]
    return out, {psn: (s.balance, s.years) for psn, s in store.states.items()}


@pytest.mark.parametrize("size", [2, 3, 5, 50])
def test_preferential_and_grants_settle_alike_in_any_batch(size):
    one = asyncio.run(_settle(_stream(), 1))
    paid = {wire["claim_id"]: (wire["maf_pay"], wire["maf_pref_pay"]) for kind, wire in one[0] if kind == "settlement"}
    assert paid["A5"][1] > 0  # the stream reaches 倾斜救助 for A
    assert paid["B0"][0] == 0 and paid["B2"][0] > 0 and paid["B4"][0] == 0  # the grant's period, after it arrived
    assert asyncio.run(_settle(_stream(), size)) == one


CATEGORIES = (None, "dibao", "tekun", "dibao_edge", "illness_poverty", "relapse_risk")


@st.composite
def _grant(draw) -> dict:
    if not draw(st.booleans()):
        return {}
    start = draw(st.integers(1, 12))
    end = draw(st.integers(start, 12))
    return dict(aid_idet_type=draw(st.sampled_from(CATEGORIES[1:] + ("unknown",))), aid_begndate=f"2023-{start:02d}-01",
                aid_enddate=f"2023-{end:02d}-28", aid_apprv_org="医保局", aid_apprv_date=f"2023-{start:02d}-01")


@st.composite
def _assisted_streams(draw) -> list:
    inst = Institution(fixmedins_code="H3", fixmedins_name="h", fixmedins_type="1", medins_lv="3",
                       grassroots=False, admdvs="152501")
    psns = ("A", "B", "C")
    events: list = [inst, *(person(p, psn_idet_type=draw(st.sampled_from(CATEGORIES)), **draw(_grant())) for p in psns)]
    claims = []
    for serial in range(draw(st.integers(4, 30))):
        kind = draw(st.sampled_from(("claim",) * 5 + ("reversal", "person")))
        if kind == "claim" or not claims and kind == "reversal":
            c = inpatient(f"2023-{draw(st.integers(1, 12)):02d}-{draw(st.integers(1, 28)):02d}T10:00:00+08:00",
                          f"{draw(st.integers(100_00, 8_000_000)) / 100:.2f}", claim_id=f"c{serial}",
                          psn_no=draw(st.sampled_from(psns)))
            claims.append(c)
            events.append(c)
        elif kind == "reversal":
            original = draw(st.sampled_from(claims))
            events.append(reversal(original.claim_id, claim_id=f"r{serial}", psn_no=original.psn_no,
                                   setl_time="2023-12-30T10:00:00+08:00"))
        else:
            events.append(person(draw(st.sampled_from(psns)), psn_idet_type=draw(st.sampled_from(CATEGORIES)),
                                 **draw(_grant())))
    return events


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(events=_assisted_streams(), size=st.integers(2, 40))
def test_any_batching_of_assisted_streams_gives_the_one_by_one_results_and_state(events, size):
    assert asyncio.run(_settle(events, size)) == asyncio.run(_settle(events, 1))


def test_a_record_stored_before_maf_pref_pay_loads_with_none_paid_that_way():
    from gongji.settlement.domain import Settlement
    s = settle(DIBAO, inpatient(), state()).settlement
    old = {key: value for key, value in s.to_record().items() if key != "maf_pref_pay"}
    assert Settlement.from_record(old) == s and Settlement.from_record(old).maf_pref_pay == 0
