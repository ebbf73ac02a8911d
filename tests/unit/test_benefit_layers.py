"""Benefit layers (issue 3, POLICY §6): 门诊慢特病, inpatient and 门诊大病, the large-amount and
civil-servant subsidies, medical assistance, in that order (保险在前、救助在后). Every figure is worked
by hand in the comments, in yuan, from the shipped sample policies (152501 Erenhot, 990100)."""

from __future__ import annotations

import dataclasses
from datetime import date


import pytest
from tests.unit.builders import BOOK, ERENHOT, PROVINCE, claim, fen, institution, line, person, record, reversal, state

from gongji.settlement.domain import Rejection, YearTotals
from gongji.settlement.rules import reverse_claim, settle_claim

pytestmark = pytest.mark.unit
H3 = institution("H3", level="3")
H2 = institution("H2", level="2")


def settle(p, c, st, inst=H3):
    outcome = settle_claim(c, p, inst, BOOK, st)
    assert not isinstance(outcome, Rejection), outcome
    return outcome


def funds(outcome) -> dict[str, int]:
    return {row.fund_pay_type: row.fund_payamt for row in outcome.settlement.setldetail if row.fund_pay_type != "310200"}


def test_chronic_group_own_limit_alongside_general_outpatient():
    """§6 门诊慢特病 (Erenhot 高血压: no deductible, retired 75%, limit 2000.00), its own accumulator."""
    p = person(retired=True, chronic_diseases=("I10",))
    st = state()
    first = settle(p, claim(line("500.00"), med_type="14", dise_codg="I10"), st)
    assert first.settlement.hifp_pay == fen("375.00")  # 500 × 0.75
    second = settle(p, claim(line("2000.00"), med_type="14", dise_codg="I10"), first.state)
    assert second.settlement.hifp_pay == fen("1500.00")  # 2000 × 0.75; 1625.00 of the limit left
    third = settle(p, claim(line("500.00"), med_type="14", dise_codg="I10"), second.state)
    assert third.settlement.hifp_pay == fen("125.00")  # 375.00 by ratio, 2000 − 1875 = 125.00 left
    year = third.state.year(2023)
    assert year.chronic_paid == {"高血压": fen("2000.00")}
    # Enjoyed alongside general outpatient: its deductible and cap are untouched.
    assert year.deductible_used == 0 and year.outpatient_pool_paid == 0
    general = settle(p, claim(line("1200.00")), third.state)
    assert general.settlement.act_pay_dedc == fen("1000.00")  # the annual deductible, all of it still to pay


def test_unrecognised_disease_general_in_erenhot_refused_in_the_province():
    """§6: a diagnosis not on the person's 备案 list: settled as general outpatient or refused, as the
    region says (Erenhot: general; 990100: reject)."""
    p = person(chronic_diseases=("I10",))
    as_general = settle(p, claim(line("1200.00"), med_type="14", dise_codg="E11"), state())
    assert as_general.settlement.act_pay_dedc == fen("1000.00")  # general outpatient's annual deductible
    assert as_general.settlement.hifp_pay == fen("120.00")  # (1200 − 1000) × 0.60
    assert "settled as general outpatient" in as_general.settlement.setldetail[0].setl_proc_info
    q = person(region=PROVINCE, chronic_diseases=("I10",))
    refused = settle_claim(claim(line("100.00"), med_type="14", dise_codg="E11"), q,
                           institution("H3", level="3", admdvs=PROVINCE), BOOK, state())
    assert isinstance(refused, Rejection) and refused.err_code == "UNSUPPORTED_MED_TYPE"
    missing = settle_claim(claim(line("100.00"), med_type="14"), p, H3, BOOK, state())
    assert isinstance(missing, Rejection) and missing.err_code == "INVALID_CLAIM"


def test_inpatient_deductible_per_admission_and_ratio_by_level():
    """§6 inpatient (Erenhot sample: level 3 deductible 800.00, in-service 85%; level 2 500.00, 88%)."""
    p = person()
    one = settle(p, claim(line("10000.00"), med_type="21"), state())
    assert (one.settlement.act_pay_dedc, one.settlement.hifp_pay) == (fen("800.00"), fen("7820.00"))  # 9200 × 0.85
    two = settle(p, claim(line("10000.00"), med_type="21", fixmedins_code="H2"), one.state, inst=H2)
    assert (two.settlement.act_pay_dedc, two.settlement.hifp_pay) == (fen("500.00"), fen("8360.00"))  # 9500 × 0.88
    assert two.state.year(2023).fund_cap_used == fen("16180.00")


def test_major_disease_and_dibao_crossing_the_basic_cap_then_reversed():
    """The issue's case: dialysis (N18.5, 门诊大病 参照住院) for a retired 低保 recipient whose basic fund
    has 5,000.00 of its 150,000.00 annual cap left, the 800.00 annual deductible already met.
    - basic: 20000.00 × 88% = 17600.00 by ratio, capped at 5000.00;
      covered base 5000 ÷ 0.88 = 5681.82, so 20000 − 5681.82 = 14318.18 in scope above the cap;
    - large-amount (90%): 14318.18 × 0.90 = 12886.362 → 12886.36;
    - assistance (低保: no deductible, 70%): 20000 − 5000 − 12886.36 = 2113.64 × 0.70 = 1479.548 → 1479.55;
    - personal 20000 − 19365.91 = 634.09."""
    p = person(retired=True, chronic_diseases=("N18.5",), psn_idet_type="dibao")
    before = state(y2023=YearTotals(fund_cap_used=fen("145000.00"), major_deductible_used=fen("800.00")))
    outcome = settle(p, claim(line("20000.00"), med_type="14", dise_codg="N18.5"), before)
    s = outcome.settlement
    assert (s.act_pay_dedc, s.hifp_pay, s.hifob_pay, s.cvlserv_pay, s.maf_pay) == (
        0, fen("5000.00"), fen("12886.36"), 0, fen("1479.55"))
    assert funds(outcome) == {"310100": fen("5000.00"), "330100": fen("12886.36"), "610100": fen("1479.55")}
    assert (s.fund_pay_sumamt, s.psn_part_amt) == (fen("19365.91"), fen("634.09"))
    assert str(s.pool_prop_selfpay) == "0.8800"  # the basic ratio applied
    year = outcome.state.year(2023)
    assert (year.fund_cap_used, year.hifob_paid, year.maf_paid) == (fen("150000.00"), fen("12886.36"), fen("1479.55"))
    # Reversed next year: every layer's accumulator of 2023 goes back exactly.
    undone = reverse_claim(reversal(s.claim_id, setl_time="2024-01-10T09:00:00+08:00"), record(outcome),
                           outcome.state)
    assert undone.state.year(2023) == before.year(2023)
    assert (undone.settlement.hifob_pay, undone.settlement.maf_pay) == (-fen("12886.36"), -fen("1479.55"))


def test_assistance_deductible_is_a_share_of_income_shared_across_claims():
    """因病致贫 (Erenhot sample: 25% of 40000.00 = 10000.00 a year, ratio 60%). Level-2 inpatient stays
    of 30000.00: deductible 500.00, 29500 × 88% = 25960.00 pooling, 4040.00 in scope left each time.
    1st and 2nd: 4040.00 each goes to the assistance deductible (8080.00 of 10000.00); 3rd: 1920.00
    of it left, (4040 − 1920) × 0.60 = 1272.00. 倾斜救助 (sample: heavy above 10000.00 a year, 50%): the
    burden left, 4040.00, 4040.00, then 4040 − 1272 = 2768.00, reaches 10848.00: (10848 − 10000) × 0.50
    = 424.00 on the 3rd, inside maf_pay (1696.00)."""
    p = person(psn_idet_type="illness_poverty")
    st = state()
    paid = []
    for _ in range(3):
        outcome = settle(p, claim(line("30000.00"), med_type="21", fixmedins_code="H2"), st, inst=H2)
        paid.append((outcome.settlement.maf_pay, outcome.settlement.maf_pref_pay))
        st = outcome.state
    assert paid == [(0, 0), (0, 0), (fen("1696.00"), fen("424.00"))]
    assert st.year(2023).maf_deductible_used == fen("10000.00")


def test_civil_servant_subsidy_for_those_entitled():
    """公务员医疗补助 (Erenhot sample: deductible 1000.00, 80%): level-3 stay of 10000.00 → basic 7820.00,
    2180.00 in scope left, (2180 − 1000) × 0.80 = 944.00. Without the flag: nothing."""
    entitled = settle(person(cvlserv_flag="1"), claim(line("10000.00"), med_type="21"), state())
    assert entitled.settlement.cvlserv_pay == fen("944.00")
    assert funds(entitled)["320100"] == fen("944.00")
    assert settle(person(), claim(line("10000.00"), med_type="21"), state()).settlement.cvlserv_pay == 0


def test_general_outpatient_gets_no_assistance_or_subsidy():
    """Medical assistance covers outpatient chronic/special and inpatient care, not general outpatient."""
    outcome = settle(person(psn_idet_type="tekun", cvlserv_flag="1"), claim(line("3000.00")), state())
    assert (outcome.settlement.maf_pay, outcome.settlement.cvlserv_pay, outcome.settlement.hifob_pay) == (0, 0, 0)


def test_outpatient_pooling_shares_the_annual_fund_cap_where_the_region_says_so():
    """国办发〔2021〕14号 / seed 001 三、4: Erenhot counts general outpatient inside the basic annual cap
    (150000.00 sample), the province keeps it outside (seed 000). With 149,000.00 of the cap used by
    inpatient care, an outpatient visit of 3000.00 (Erenhot: (3000 − 1000) × 60% = 1200.00, of which
    1000.00 fits) leaves no room for the next stay; in the province the stay still has 1000.00."""
    erenhot = person()
    used = state(y2023=YearTotals(fund_cap_used=fen("149000.00")))
    visit = settle(erenhot, claim(line("3000.00")), used)
    assert visit.settlement.hifp_pay == fen("1000.00")
    stay = settle(erenhot, claim(line("5000.00"), med_type="21"), visit.state)
    assert stay.settlement.hifp_pay == 0 and stay.settlement.hifob_pay > 0  # all of it above the basic cap

    province = person(region=PROVINCE)
    p_used = state(y2023=YearTotals(fund_cap_used=fen("119000.00")))
    p_h3 = institution("H3", level="3", admdvs=PROVINCE)
    p_visit = settle(province, claim(line("3000.00")), p_used, inst=p_h3)
    assert p_visit.settlement.hifp_pay == fen("1475.00")  # (3000 − 50) × 50%, outside the fund cap
    p_stay = settle(province, claim(line("5000.00"), med_type="21"), p_visit.state, inst=p_h3)
    assert p_stay.settlement.hifp_pay == fen("1000.00")  # the 1000.00 the cap still has


# ---------------------------------------------------------------- properties over any sequence

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from gongji.settlement.domain import PersonState  # noqa: E402

CATEGORIES = [None, "tekun", "dibao", "dibao_edge", "illness_poverty"]
DISEASES = ["I10", "E11", "I25", "N18.5", "Z51.1", "G80.1", "J45"]  # chronic groups, 门诊大病, one in no list
PROCEDURES = [None, None, "13.41", "99.99"]  # none, a day surgery on Erenhot's list, one on no list


@st.composite
def sequences(draw):
    region = draw(st.sampled_from([ERENHOT, PROVINCE]))
    p = person(region=region, retired=draw(st.booleans()), psn_idet_type=draw(st.sampled_from(CATEGORIES)),
               brdy=draw(st.sampled_from([None, "2015-03-10", "1980-01-01"])),
               cvlserv_flag=draw(st.sampled_from([None, "1"])),
               chronic_diseases=tuple(draw(st.lists(st.sampled_from(DISEASES), max_size=3, unique=True))))
    cap = BOOK.in_force(region, date(2023, 6, 1)).annual_fund_cap
    start = YearTotals(fund_cap_used=draw(st.sampled_from([0, cap - fen("20000.00"), cap - fen("1000.00"), cap])))
    ops = []
    for _ in range(draw(st.integers(1, 12))):
        if ops and draw(st.integers(0, 4)) == 0:
            ops.append(("reverse", draw(st.integers(0, len(ops) - 1))))
            continue
        med_type = draw(st.sampled_from(["11", "14", "21"]))
        amounts = draw(st.lists(st.integers(1, 6_000_000), min_size=1, max_size=3))
        lines = [line(f"{a // 100}.{a % 100:02d}", draw(st.sampled_from(["01", "02", "03"])),
                      selfpay=draw(st.sampled_from([None, "0.10"]))) for a in amounts]
        level = draw(st.sampled_from(["1", "2", "3"]))
        ops.append(("claim", med_type, lines, level, draw(st.sampled_from(DISEASES)),
                    draw(st.sampled_from(PROCEDURES))))
    return region, p, start, ops


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sequences())
def test_layers_never_overpay_and_reversals_restore(case):
    """Issue 3: no layer pays below zero; together they never pay more than the in-scope amount;
    no fund's yearly total passes its cap; reversing everything gives the starting year back."""
    region, p, start, ops = case
    version = BOOK.in_force(region, date(2023, 6, 1))
    st_ = PersonState(token="t", balance=0, years={2023: start})
    settled: list = []
    for op in ops:
        if op[0] == "reverse":
            target = settled[op[1]] if op[1] < len(settled) else None
            if target is None or target[1]:
                continue
            undone = reverse_claim(reversal(target[0].settlement.claim_id), record(target[0]), st_)
            st_ = undone.state
            settled[op[1]] = (target[0], True)
            continue
        _, med_type, lines, level, disease, procedure = op
        inst = institution(f"H{level}", level=level, admdvs=region)
        c = claim(*lines, fixmedins_code=inst.fixmedins_code, med_type=med_type,
                  dise_codg=disease if med_type == "14" else None).model_copy(update={"oprn_oprt_code": procedure})
        outcome = settle_claim(c, p, inst, BOOK, st_)
        if isinstance(outcome, Rejection):
            settled.append(None)
            continue
        s = outcome.settlement
        payments = (s.hifp_pay, s.hifob_pay, s.cvlserv_pay, s.maf_pay)
        assert all(amount >= 0 for amount in payments)
        assert sum(payments) == s.fund_pay_sumamt <= s.inscp_scp_amt
        assert s.medfee_sumamt == s.fund_pay_sumamt + s.psn_part_amt
        year = outcome.state.year(2023)
        assert year.fund_cap_used <= version.annual_fund_cap
        assert year.hifob_paid <= version.large_amount.annual_cap
        assert year.cvlserv_paid <= version.civil_servant.annual_cap
        assert year.maf_paid <= version.assistance.annual_limit
        for group in version.chronic.groups:
            assert year.chronic_paid.get(group.name, 0) <= group.annual_limit
        assert all(value >= 0 for value in (year.maf_deductible_used, year.hifob_deductible_used,
                                            year.cvlserv_deductible_used, year.major_deductible_used))
        st_ = outcome.state
        settled.append((outcome, False))
    for entry in settled:
        if entry is not None and not entry[1]:
            st_ = reverse_claim(reversal(entry[0].settlement.claim_id), record(entry[0]), st_).state
    final = st_.year(2023)
    assert final.fund_cap_used == start.fund_cap_used
    normalised = dataclasses.replace(final, chronic_paid={k: v for k, v in final.chronic_paid.items() if v},
                                     chronic_deductible_used={k: v for k, v in final.chronic_deductible_used.items() if v})
    assert normalised == start
