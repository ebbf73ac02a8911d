"""Hand-worked settlement cases: POLICY.md §2 line split, §3 pooling, §4 account, §8 reversal, and the
CONTRACT.md rejections. Every expected figure is worked out in yuan in a comment beside it."""

from __future__ import annotations

from decimal import Decimal

import pytest
from tests.unit.builders import (
    BOOK,
    ERENHOT,
    PROVINCE,
    claim,
    credit,
    fen,
    institution,
    line,
    person,
    record,
    reversal,
    state,
)
from pydantic import ValidationError

from gongji.contract.wire import ACCOUNT, POOLING
from gongji.settlement.domain import ClaimRecord, PersonState, Rejection, Settlement, YearTotals
from gongji.settlement.events import Claim, FeeLine
from gongji.settlement.pooling import split_line, split_lines
from gongji.settlement.rules import (
    AccountCredited,
    ClaimReversed,
    ClaimSettled,
    apply_credit,
    check_person,
    reverse_claim,
    setl_id_for,
    settle_claim,
)

pytestmark = pytest.mark.unit

# Erenhot institutions (treatment region = insured region 152501)
E_H3 = institution("EH3", "3")
E_H2 = institution("EH2", "2")
E_PH = institution("EPH", "1", pharmacy=True)
E_G1 = institution("EG1", "1", grassroots=True)
# Province 990100 institutions
P_H3 = institution("PH3", "3", admdvs=PROVINCE)
P_H2 = institution("PH2", "2", admdvs=PROVINCE)
P_PH = institution("PPH", "1", pharmacy=True, admdvs=PROVINCE)
P_G1 = institution("PG1", "1", grassroots=True, admdvs=PROVINCE)
P_G2 = institution("PG2", "1", grassroots=True, admdvs=PROVINCE)
P_PHG = institution("PPHG", "1", pharmacy=True, grassroots=True, admdvs=PROVINCE)

# A year whose Erenhot annual deductible (1000.00) is already used up, so ratios show directly.
DEDUCTIBLE_USED = YearTotals(deductible_used=fen("1000.00"))


def settle(c: Claim, p, inst, st: PersonState | None = None, holder_available: int | None = None) -> ClaimSettled:
    outcome = settle_claim(c, p, inst, BOOK, st if st is not None else PersonState(), holder_available)
    assert isinstance(outcome, ClaimSettled), outcome
    assert_identities(outcome.settlement)
    return outcome


def assert_identities(s: Settlement) -> None:
    """CONTRACT.md identities, and POLICY §3.5–3.6."""
    parts = s.fulamt_ownpay_amt + s.overlmt_selfpay + s.preselfpay_amt + s.inscp_scp_amt
    assert s.medfee_sumamt == parts
    assert s.fund_pay_sumamt == s.hifp_pay + s.hifob_pay + s.cvlserv_pay + s.maf_pay + s.oth_pay
    assert s.medfee_sumamt == s.fund_pay_sumamt + s.psn_part_amt
    assert s.psn_part_amt == s.acct_pay + s.acct_mulaid_pay + s.psn_cash_pay


def assert_yuan(s: Settlement, **expected: str) -> None:
    """Compare money fields, given in yuan."""
    got = {name: f"{Decimal(getattr(s, name)) / 100:.2f}" for name in expected}
    assert got == expected


# ================================================================ §2 line split

SPLIT_CASES = [
    # (line, fulamt_ownpay, overlmt, preselfpay, inscp, non_medical) in yuan
    pytest.param(line("100.00", "01"), "0.00", "0.00", "0.00", "100.00", "0.00",
                 id="POLICY 2.4 class-A: all in scope"),
    # 12.35 × 0.10 = 1.235 → 1.24 (half up); inscp 12.35 − 1.24 = 11.11
    pytest.param(line("12.35", "02", selfpay="0.10"), "0.00", "0.00", "1.24", "11.11", "0.00",
                 id="POLICY 2.3 class-B selfpay 0.10, 1.235 rounds up"),
    # pric 4.15 × 3 = 12.45; 12.45 × 0.10 = 1.245 → 1.25; inscp 11.20
    pytest.param(line(pric="4.15", cnt="3", lv="02", selfpay="0.10"), "0.00", "0.00", "1.25", "11.20", "0.00",
                 id="POLICY 2.3 class-B cnt 3, 1.245 rounds up"),
    # 12.34 × 0.10 = 1.234 → 1.23; inscp 11.11
    pytest.param(line("12.34", "02", selfpay="0.10"), "0.00", "0.00", "1.23", "11.11", "0.00",
                 id="POLICY 2.3 class-B 1.234 rounds down"),
    pytest.param(line("80.00", "02"), "0.00", "0.00", "0.00", "80.00", "0.00",
                 id="POLICY 2.3 class-B without selfpay_prop: no pre-self-pay"),
    pytest.param(line("80.00", "01", selfpay="0.10"), "0.00", "0.00", "0.00", "80.00", "0.00",
                 id="POLICY 2.3 selfpay_prop on a class-A line is not applied"),
    pytest.param(line("50.00", "03"), "50.00", "0.00", "0.00", "0.00", "0.00",
                 id="POLICY 2.1 class-C: all fulamt_ownpay"),
    pytest.param(line("50.00", "03", uplmt="10.00"), "50.00", "0.00", "0.00", "0.00", "0.00",
                 id="POLICY 2.1 class-C with a limit price: still all fulamt_ownpay, no over-limit"),
    pytest.param(line("30.00", "01", non_med="1"), "30.00", "0.00", "0.00", "0.00", "30.00",
                 id="POLICY 2.1 non_med_flag=1 class-A: all fulamt_ownpay, non-medical"),
    pytest.param(line("30.00", "02", selfpay="0.10", non_med="1"), "30.00", "0.00", "0.00", "0.00", "30.00",
                 id="POLICY 2.1 non_med_flag=1 class-B: all fulamt_ownpay, non-medical"),
    pytest.param(line("30.00", "03", non_med="1"), "30.00", "0.00", "0.00", "0.00", "30.00",
                 id="POLICY 2.1 non_med_flag=1 class-C: non-medical"),
    pytest.param(line("30.00", "01", non_med="0"), "0.00", "0.00", "0.00", "30.00", "0.00",
                 id="POLICY 2.1 non_med_flag=0: medical"),
    # pric 15.00 > limit 12.00: overlmt (15 − 12) × 3 = 9.00; base 45 − 9 = 36.00
    pytest.param(line(pric="15.00", cnt="3", uplmt="12.00"), "0.00", "9.00", "0.00", "36.00", "0.00",
                 id="POLICY 2.2 over-limit price class-A cnt 3"),
    # overlmt 9.00; base 36.00; pre 3.60; inscp 32.40
    pytest.param(line(pric="15.00", cnt="3", uplmt="12.00", lv="02", selfpay="0.10"), "0.00", "9.00", "3.60",
                 "32.40", "0.00", id="POLICY 2.2+2.3 over-limit class-B: pre-self-pay on the base"),
    # pric = limit: no over-limit
    pytest.param(line(pric="12.00", cnt="3", uplmt="12.00"), "0.00", "0.00", "0.00", "36.00", "0.00",
                 id="POLICY 2.2 price equal to the limit: no over-limit"),
    pytest.param(line(pric="10.00", cnt="3", uplmt="12.00"), "0.00", "0.00", "0.00", "30.00", "0.00",
                 id="POLICY 2.2 price under the limit: no over-limit"),
    # 10.01 × 0.5 = 5.005 → 5.01; overlmt (10.01 − 10.00) × 0.5 = 0.005 → 0.01; base 5.00
    pytest.param(line(pric="10.01", cnt="0.5", uplmt="10.00"), "0.00", "0.01", "0.00", "5.00", "0.00",
                 id="POLICY 2.2 over-limit with fractional cnt rounds half up"),
    # 6-place prices (2204): 0.0125 × 100 = 1.25, limit 0.0100: overlmt 0.0025 × 100 = 0.25; inscp 1.00
    pytest.param(line(pric="0.0125", cnt="100", uplmt="0.0100"), "0.00", "0.25", "0.00", "1.00", "0.00",
                 id="POLICY 2.2 over-limit with 6-place prices"),
    # 0.0125 × 3 = 0.0375 → 0.04; overlmt 0.0025 × 3 = 0.0075 → 0.01; base 0.03
    pytest.param(line(pric="0.0125", cnt="3", uplmt="0.0100"), "0.00", "0.01", "0.00", "0.03", "0.00",
                 id="POLICY 2.2 over-limit of a sub-fen product rounds half up"),
    # The HIS line is 29.99 (pric 10.00 × 3 = 30.00 less its own 1 fen rounding); limit 0.00:
    # (10.00 − 0.00) × 3 = 30.00 > 29.99 → overlmt capped at the line amount 29.99; inscp 0
    pytest.param(line("29.99", pric="10.00", cnt="3", uplmt="0.00"), "0.00", "29.99", "0.00", "0.00", "0.00",
                 id="POLICY 2.2 over-limit capped at the line amount"),
]


@pytest.mark.parametrize(("fee_line", "fulamt", "overlmt", "preselfpay", "inscp", "non_medical"), SPLIT_CASES)
def test_split_line(fee_line, fulamt, overlmt, preselfpay, inscp, non_medical):
    """POLICY §2 per-line split; the clause is in each case id."""
    part = split_line(fee_line)
    assert part.medfee == fee_line.det_item_fee_sumamt
    got = tuple(f"{Decimal(v) / 100:.2f}" for v in (part.fulamt_ownpay, part.overlmt, part.preselfpay, part.inscp,
                                                     part.non_medical))
    assert got == (fulamt, overlmt, preselfpay, inscp, non_medical)
    assert part.medfee == part.fulamt_ownpay + part.overlmt + part.preselfpay + part.inscp


MULTI_LINE = (
    line("100.00", "01"),  # inscp 100.00
    line("12.35", "02", selfpay="0.10"),  # pre 1.24, inscp 11.11
    line("50.00", "03"),  # fulamt 50.00
    line("30.00", "01", non_med="1"),  # fulamt 30.00, non-medical
    line(pric="15.00", cnt="3", uplmt="12.00", lv="02", selfpay="0.10"),  # 45.00: over 9.00, pre 3.60, inscp 32.40
    line(pric="10.01", cnt="0.5", uplmt="10.00"),  # 5.01: over 0.01, inscp 5.00
)


def test_split_lines_totals():
    """§2 claim totals: medfee = fulamt + overlmt + preselfpay + inscp."""
    total = split_lines(MULTI_LINE)
    # medfee 100 + 12.35 + 50 + 30 + 45 + 5.01 = 242.36
    assert (total.medfee, total.fulamt_ownpay, total.overlmt, total.preselfpay, total.inscp, total.non_medical) == (
        fen("242.36"), fen("80.00"), fen("9.01"), fen("4.84"), fen("148.51"), fen("30.00"))


def test_multi_line_claim_settlement_totals():
    """§2 totals on the settlement, then §3 at a province level-3 hospital (in-service 50%, deductible 50)."""
    s = settle(claim(*MULTI_LINE, fixmedins_code="PH3"), person(region=PROVINCE), P_H3).settlement
    # fulamt 50 + 30 = 80.00; overlmt 9.00 + 0.01 = 9.01; pre 1.24 + 3.60 = 4.84;
    # inscp 100 + 11.11 + 32.40 + 5.00 = 148.51; 80 + 9.01 + 4.84 + 148.51 = 242.36
    # hifp (148.51 − 50.00) × 0.50 = 49.255 → 49.26; psn_part 242.36 − 49.26 = 193.10
    assert_yuan(s, medfee_sumamt="242.36", fulamt_ownpay_amt="80.00", overlmt_selfpay="9.01",
                preselfpay_amt="4.84", inscp_scp_amt="148.51", act_pay_dedc="50.00", hifp_pay="49.26",
                fund_pay_sumamt="49.26", psn_part_amt="193.10", acct_pay="0.00", acct_mulaid_pay="0.00",
                psn_cash_pay="193.10")


# ================================================================ §3 Erenhot (152501)


def test_erenhot_annual_deductible_across_visits_and_next_year():
    """§3.1 annual deductible 1000 consumed over visits; a new calendar year starts afresh (level 3, 60%)."""
    p = person()
    st = PersonState()
    # visit 1: inscp 600 → deductible 600 (400 left), hifp 0
    v1 = settle(claim(line("600.00"), setl_time="2023-03-01T09:00:00+08:00"), p, E_H3, st)
    assert_yuan(v1.settlement, act_pay_dedc="600.00", hifp_pay="0.00", psn_part_amt="600.00")
    # visit 2: inscp 700 → deductible 400 (the rest), (700 − 400) × 0.60 = 180.00
    v2 = settle(claim(line("700.00"), setl_time="2023-04-01T09:00:00+08:00"), p, E_H3, v1.state)
    assert_yuan(v2.settlement, act_pay_dedc="400.00", hifp_pay="180.00", psn_part_amt="520.00")
    # visit 3: deductible used up → 200 × 0.60 = 120.00
    v3 = settle(claim(line("200.00"), setl_time="2023-05-01T09:00:00+08:00"), p, E_H3, v2.state)
    assert_yuan(v3.settlement, act_pay_dedc="0.00", hifp_pay="120.00", psn_part_amt="80.00")
    assert v3.state.year(2023) == YearTotals(deductible_used=fen("1000.00"), outpatient_pool_paid=fen("300.00"),
                                             fund_cap_used=fen("300.00"), visits=3, medfee=fen("1500.00"))
    # visit 4 in 2024: a new year, 300 all under the deductible again
    v4 = settle(claim(line("300.00"), setl_time="2024-01-05T09:00:00+08:00"), p, E_H3, v3.state)
    assert_yuan(v4.settlement, act_pay_dedc="300.00", hifp_pay="0.00")
    assert v4.state.year(2024) == YearTotals(deductible_used=fen("300.00"), visits=1, medfee=fen("300.00"))
    assert v4.state.year(2023) == v3.state.year(2023)


@pytest.mark.parametrize(
    ("setl_time", "year", "dedc", "hifp"),
    [
        # 23:30 in Shanghai on 31 Dec is still 2023: deductible used up → 200 × 0.60 = 120.00
        pytest.param("2023-12-31T23:30:00+08:00", 2023, "0.00", "120.00", id="2023-12-31T23:30+08:00 is 2023"),
        pytest.param("2023-12-31T15:59:59Z", 2023, "0.00", "120.00", id="15:59:59Z is 23:59:59 Shanghai, 2023"),
        # 17:00Z is 2024-01-01 01:00 in Shanghai: new year, 200 goes to the 2024 deductible
        pytest.param("2023-12-31T17:00:00Z", 2024, "200.00", "0.00", id="2023-12-31T17:00Z is 2024 in Shanghai"),
        pytest.param("2023-12-31T12:00:00-05:00", 2024, "200.00", "0.00", id="-05:00 evening is 2024 in Shanghai"),
        pytest.param("2024-01-01T00:30:00+09:00", 2023, "0.00", "120.00", id="Tokyo 00:30 is 23:30 Shanghai, 2023"),
    ],
)
def test_accumulator_year_is_the_shanghai_calendar_year(setl_time, year, dedc, hifp):
    """§3 accumulators are per calendar year of setl_time in Asia/Shanghai."""
    st = state(y2023=DEDUCTIBLE_USED)
    out = settle(claim(line("200.00"), setl_time=setl_time), person(), E_H3, st)
    assert_yuan(out.settlement, act_pay_dedc=dedc, hifp_pay=hifp)
    assert out.effects.year == year
    assert out.state.year(year).visits == 1


ERENHOT_RATIOS = [
    # deductible already used; inscp 2000.00 × ratio
    pytest.param(E_H3, False, "0.6000", "1200.00", id="level 3 in-service 60%"),
    pytest.param(E_H3, True, "0.6500", "1300.00", id="level 3 retired 65%"),
    pytest.param(E_H2, False, "0.7000", "1400.00", id="level 2 in-service 70%"),
    pytest.param(E_H2, True, "0.7500", "1500.00", id="level 2 retired 75%"),
    pytest.param(E_PH, False, "0.7000", "1400.00", id="pharmacy in-service 70%"),
    pytest.param(E_PH, True, "0.7500", "1500.00", id="pharmacy retired 75%"),
    pytest.param(E_G1, False, "0.7000", "1400.00", id="level 1 grassroots in-service 70%"),
    pytest.param(E_G1, True, "0.7500", "1500.00", id="level 1 grassroots retired 75%"),
]


@pytest.mark.parametrize(("inst", "retired", "ratio", "hifp"), ERENHOT_RATIOS)
def test_erenhot_ratio_by_band_and_class(inst, retired, ratio, hifp):
    """§3.2 / §5 Erenhot ratios; pool_prop_selfpay reports the ratio with 4 decimals (§3.4)."""
    out = settle(claim(line("2000.00"), fixmedins_code=inst.fixmedins_code), person(retired=retired), inst,
                 state(y2023=DEDUCTIBLE_USED))
    s = out.settlement
    assert str(s.pool_prop_selfpay) == ratio
    # psn_part 2000 − hifp
    assert_yuan(s, act_pay_dedc="0.00", hifp_pay=hifp, fund_pay_sumamt=hifp,
                psn_part_amt=f"{Decimal('2000.00') - Decimal(hifp):.2f}")


def test_erenhot_deductible_applies_at_grassroots_too():
    """§5: Erenhot's deductible is annual and has no grassroots exemption. 1500: 1000 deductible, 500 × 0.70."""
    s = settle(claim(line("1500.00")), person(), E_G1).settlement
    assert_yuan(s, act_pay_dedc="1000.00", hifp_pay="350.00", psn_part_amt="1150.00")


def test_erenhot_no_family_doctor_bonus():
    """§5: Erenhot states no family-doctor bonus, even at the contracted institution."""
    s = settle(claim(line("2000.00")), person(fd_fixmedins_code="EH3"), E_H3, state(y2023=DEDUCTIBLE_USED)).settlement
    assert str(s.pool_prop_selfpay) == "0.6000"
    assert_yuan(s, hifp_pay="1200.00")


@pytest.mark.parametrize(
    ("retired", "paid_before", "by_ratio", "hifp", "left"),
    [
        # in-service cap 4000: 3900 paid, 100 left; 500 × 0.60 = 300 by ratio → 100.00
        pytest.param(False, "3900.00", "300.00", "100.00", "100.00", id="in-service 4000 cap hit mid-claim"),
        pytest.param(False, "4000.00", "300.00", "0.00", "0.00", id="in-service cap exhausted"),
        pytest.param(False, "3500.00", "300.00", "300.00", "500.00", id="in-service under the cap"),
        # retired cap 5000: 4900 paid, 100 left; 500 × 0.65 = 325 → 100.00
        pytest.param(True, "4900.00", "325.00", "100.00", "100.00", id="retired 5000 cap hit mid-claim"),
        # retired with 4000 paid still has 1000 left: the in-service cap does not apply
        pytest.param(True, "4000.00", "325.00", "325.00", "1000.00", id="retired above the in-service cap"),
    ],
)
def test_erenhot_outpatient_cap(retired, paid_before, by_ratio, hifp, left):
    """§3.3 annual outpatient cap 4000 / 5000: hifp_pay = the remaining cap; setldetail shows it."""
    totals = YearTotals(deductible_used=fen("1000.00"), outpatient_pool_paid=fen(paid_before),
                        fund_cap_used=fen(paid_before))
    out = settle(claim(line("500.00")), person(retired=retired), E_H3, state(y2023=totals))
    s = out.settlement
    assert_yuan(s, hifp_pay=hifp, psn_part_amt=f"{Decimal('500.00') - Decimal(hifp):.2f}")
    pooling = s.setldetail[0]
    assert pooling.fund_pay_type == POOLING
    assert pooling.fund_payamt == fen(hifp)
    assert pooling.crt_payb_lmt_amt == fen(left)
    if hifp != by_ratio:
        assert "capped" in pooling.setl_proc_info
    assert out.state.year(2023).outpatient_pool_paid == fen(paid_before) + fen(hifp)
    assert out.state.year(2023).fund_cap_used == fen(paid_before) + fen(hifp)


def test_erenhot_cap_then_next_claim_pays_nothing_then_next_year_pays_again():
    """§3.3: once the 4000 cap is reached the year pays no pooling; the next year has a fresh cap."""
    st = state(y2023=YearTotals(deductible_used=fen("1000.00"), outpatient_pool_paid=fen("3900.00"),
                                fund_cap_used=fen("3900.00")))
    first = settle(claim(line("500.00")), person(), E_H3, st)
    assert_yuan(first.settlement, hifp_pay="100.00")
    second = settle(claim(line("500.00")), person(), E_H3, first.state)
    assert_yuan(second.settlement, hifp_pay="0.00", psn_part_amt="500.00")
    # 2024: 1500 → 1000 deductible + 500 × 0.60 = 300.00
    third = settle(claim(line("1500.00"), setl_time="2024-02-01T10:00:00+08:00"), person(), E_H3, second.state)
    assert_yuan(third.settlement, act_pay_dedc="1000.00", hifp_pay="300.00")


@pytest.mark.parametrize(
    ("fund_cap_used", "hifp", "left"),
    [
        # annual fund cap 150000 (sample): 149950 used → 50 left; 500 × 0.60 = 300 by ratio → 50.00
        pytest.param("149950.00", "50.00", "50.00", id="fund cap nearly used: 50 left"),
        pytest.param("150000.00", "0.00", "0.00", id="fund cap used up"),
        pytest.param("150100.00", "0.00", "0.00", id="fund cap overrun elsewhere: nothing, never negative"),
        pytest.param("149600.00", "300.00", "400.00", id="fund cap not binding: 400 left >= 300"),
    ],
)
def test_erenhot_annual_fund_cap_limits_pooling(fund_cap_used, hifp, left):
    """§3.3: the outpatient cap counts inside the annual fund cap (纳入年度最高支付限额计算)."""
    st = state(y2023=YearTotals(deductible_used=fen("1000.00"), fund_cap_used=fen(fund_cap_used)))
    out = settle(claim(line("500.00")), person(), E_H3, st)
    assert_yuan(out.settlement, hifp_pay=hifp)
    assert out.settlement.setldetail[0].crt_payb_lmt_amt == fen(left)
    assert out.state.year(2023).fund_cap_used == fen(fund_cap_used) + fen(hifp)
    assert out.state.year(2023).outpatient_pool_paid == fen(hifp)
    assert out.effects.fund_cap == fen(hifp)


# ================================================================ §3 province (990100)

PROVINCE_CASES = [
    # claim of 300.00 甲类; deductible 50 per visit (none at grassroots)
    # (300 − 50) × 0.50 = 125.00 ; × 0.60 = 150.00
    pytest.param(P_H3, False, None, "50.00", "0.5000", "125.00", id="level 3 in-service 50%, deductible 50"),
    pytest.param(P_H3, True, None, "50.00", "0.6000", "150.00", id="level 3 retired 60%"),
    # (300 − 50) × 0.55 = 137.50 ; × 0.65 = 162.50
    pytest.param(P_H2, False, None, "50.00", "0.5500", "137.50", id="level 2 in-service 55%"),
    pytest.param(P_H2, True, None, "50.00", "0.6500", "162.50", id="level 2 retired 65%"),
    pytest.param(P_PH, False, None, "50.00", "0.5500", "137.50", id="pharmacy in-service 55%"),
    pytest.param(P_PH, True, None, "50.00", "0.6500", "162.50", id="pharmacy retired 65%"),
    # grassroots: no deductible; 300 × 0.55 = 165.00 ; × 0.65 = 195.00
    pytest.param(P_G1, False, None, "0.00", "0.5500", "165.00", id="grassroots: no deductible"),
    pytest.param(P_G1, True, None, "0.00", "0.6500", "195.00", id="grassroots retired"),
    pytest.param(P_PHG, False, None, "0.00", "0.5500", "165.00", id="grassroots pharmacy: no deductible"),
    # family doctor contracted at PG1: 0.55 + 0.05 = 0.60 → 180.00 ; retired 0.70 → 210.00
    pytest.param(P_G1, False, "PG1", "0.00", "0.6000", "180.00", id="family doctor +5 at the contracted institution"),
    pytest.param(P_G1, True, "PG1", "0.00", "0.7000", "210.00", id="family doctor +5 retired"),
    # contracted at PG1 but treated at PG2: no bonus
    pytest.param(P_G2, False, "PG1", "0.00", "0.5500", "165.00", id="no bonus at another grassroots institution"),
    pytest.param(P_H3, False, "PG1", "50.00", "0.5000", "125.00", id="no bonus at a non-contracted hospital"),
    # contracted at PH3 (the rule follows the contract, whatever the level): (300 − 50) × 0.55 = 137.50
    pytest.param(P_H3, False, "PH3", "50.00", "0.5500", "137.50", id="bonus at a contracted level-3 hospital"),
]


@pytest.mark.parametrize(("inst", "retired", "fd", "dedc", "ratio", "hifp"), PROVINCE_CASES)
def test_province_deductible_ratio_and_family_doctor(inst, retired, fd, dedc, ratio, hifp):
    """§3.1 per-visit deductible, §3.2 ratio + family-doctor bonus, §5 province column."""
    p = person(region=PROVINCE, retired=retired, fd_fixmedins_code=fd)
    s = settle(claim(line("300.00"), fixmedins_code=inst.fixmedins_code), p, inst).settlement
    assert str(s.pool_prop_selfpay) == ratio
    assert_yuan(s, act_pay_dedc=dedc, hifp_pay=hifp, psn_part_amt=f"{Decimal('300.00') - Decimal(hifp):.2f}")


def test_province_deductible_is_per_visit():
    """§3.1 per visit: every visit pays its own 50; a visit under 50 pays all of it as deductible."""
    p = person(region=PROVINCE)
    first = settle(claim(line("300.00")), p, P_H3)
    second = settle(claim(line("300.00")), p, P_H3, first.state)
    assert_yuan(second.settlement, act_pay_dedc="50.00", hifp_pay="125.00")
    # 30.00 in scope < 50: deductible 30.00, nothing by ratio
    third = settle(claim(line("30.00")), p, P_H3, second.state)
    assert_yuan(third.settlement, act_pay_dedc="30.00", hifp_pay="0.00", psn_part_amt="30.00")
    # 丙类 only: nothing in scope, no deductible consumed
    fourth = settle(claim(line("80.00", "03")), p, P_H3, third.state)
    assert_yuan(fourth.settlement, inscp_scp_amt="0.00", act_pay_dedc="0.00", hifp_pay="0.00")


@pytest.mark.parametrize(
    ("retired", "paid_before", "hifp", "left"),
    [
        # in-service cap 1500: 1400 paid, 100 left; by ratio (300 − 50) × 0.50 = 125 → 100.00
        pytest.param(False, "1400.00", "100.00", "100.00", id="in-service 1500 cap hit"),
        pytest.param(False, "1500.00", "0.00", "0.00", id="in-service cap exhausted"),
        # retired cap 2000: 1900 paid; by ratio 250 × 0.60 = 150 → 100.00
        pytest.param(True, "1900.00", "100.00", "100.00", id="retired 2000 cap hit"),
        pytest.param(True, "1500.00", "150.00", "500.00", id="retired above the in-service cap"),
    ],
)
def test_province_outpatient_cap(retired, paid_before, hifp, left):
    """§3.3 / §5 province annual outpatient cap 1500 / 2000."""
    st = state(y2023=YearTotals(outpatient_pool_paid=fen(paid_before)))
    out = settle(claim(line("300.00")), person(region=PROVINCE, retired=retired), P_H3, st)
    assert_yuan(out.settlement, hifp_pay=hifp)
    assert out.settlement.setldetail[0].crt_payb_lmt_amt == fen(left)
    assert out.state.year(2023).outpatient_pool_paid == fen(paid_before) + fen(hifp)


def test_province_outpatient_pooling_is_outside_the_fund_cap():
    """§5 province: counts_in_fund_cap false. fund_cap_used is neither consumed nor limiting."""
    huge = fen("999999.00")
    st = state(y2023=YearTotals(fund_cap_used=huge))
    out = settle(claim(line("300.00")), person(region=PROVINCE), P_H3, st)
    assert_yuan(out.settlement, hifp_pay="125.00")
    assert out.state.year(2023).fund_cap_used == huge
    assert out.effects.fund_cap == 0
    fresh = settle(claim(line("300.00")), person(region=PROVINCE), P_H3)
    assert fresh.state.year(2023).fund_cap_used == 0
    assert fresh.state.year(2023).outpatient_pool_paid == fen("125.00")


# ================================================================ §3.4–3.6 reporting


@pytest.mark.parametrize(
    ("inst", "retired", "fd", "expected"),
    [(P_H3, False, None, "0.5000"), (P_G1, True, "PG1", "0.7000"), (P_PH, False, None, "0.5500")],
)
def test_pool_prop_selfpay_is_the_ratio_with_four_decimals(inst, retired, fd, expected):
    """§3.4: pool_prop_selfpay is the fund payment ratio applied, 4 decimals, even when capped to 0."""
    p = person(region=PROVINCE, retired=retired, fd_fixmedins_code=fd)
    st = state(y2023=YearTotals(outpatient_pool_paid=fen("5000.00")))  # both caps exhausted
    s = settle(claim(line("300.00")), p, inst, st).settlement
    assert s.hifp_pay == 0
    assert s.pool_prop_selfpay == Decimal(expected)
    assert s.pool_prop_selfpay.as_tuple().exponent == -4


def test_fund_pay_sumamt_and_psn_part_identities():
    """§3.5 fund_pay_sumamt = all fund payments; §3.6 psn_part = medfee − fund; CONTRACT identities."""
    s = settle(claim(*MULTI_LINE), person(), E_H2, state(y2023=DEDUCTIBLE_USED)).settlement
    # inscp 148.51 × 0.70 = 103.957 → 103.96; psn_part 242.36 − 103.96 = 138.40
    assert_yuan(s, hifp_pay="103.96", hifob_pay="0.00", cvlserv_pay="0.00", maf_pay="0.00", oth_pay="0.00",
                fund_pay_sumamt="103.96", psn_part_amt="138.40", psn_cash_pay="138.40")


def test_settlement_carries_ids_and_regions():
    """CONTRACT settlement: ids, person class and regions; setl_id deterministic from claim_id."""
    p = person(retired=True)
    c = claim(line("10.00"), claim_id="CLM-1", fixmedins_code="EH3")
    s = settle(c, p, E_H3).settlement
    assert s.claim_id == "CLM-1"
    assert s.setl_id == setl_id_for("CLM-1") == setl_id_for("CLM-1")
    assert s.setl_id != setl_id_for("CLM-2")
    assert (s.psn_no, s.mdtrt_id, s.med_type, s.psn_type) == ("P1", "M-CLM-1", "11", "1201")
    assert (s.insu_admdvs, s.mdtrtarea_admvs, s.fixmedins_code) == (ERENHOT, ERENHOT, "EH3")
    assert not s.is_reversal and s.orig_claim_id is None


def test_cross_region_uses_the_insured_regions_policy():
    """§7: an Erenhot-insured person treated at a province hospital: Erenhot's deductible and ratio."""
    s = settle(claim(line("1500.00")), person(), P_H3).settlement
    # Erenhot annual deductible 1000, level 3 in-service 60%: 500 × 0.60 = 300.00
    assert_yuan(s, act_pay_dedc="1000.00", hifp_pay="300.00")
    assert (s.insu_admdvs, s.mdtrtarea_admvs) == (ERENHOT, PROVINCE)


# ================================================================ §4 personal account

# medfee 1300.00 = 甲类 1000.00 + 丙类 200.00 + non-medical 100.00. Erenhot level 3, deductible used:
# hifp 1000 × 0.60 = 600.00; psn_part 700.00; non-medical 100.00 → eligible burden 600.00.
ACCOUNT_LINES = (line("1000.00"), line("200.00", "03"), line("100.00", non_med="1"))

ACCOUNT_CASES = [
    # (flag, own balance, has holder, holder_available, acct_pay, mulaid, cash, balc)
    pytest.param("0", "1000.00", False, None, "0.00", "0.00", "700.00", "1000.00",
                 id="flag 0: account pays nothing"),
    pytest.param("0", "1000.00", True, "1000.00", "0.00", "0.00", "700.00", "1000.00",
                 id="flag 0: no family mutual aid either"),
    # min(700 − 100, 1000) = 600; cash = the non-medical 100
    pytest.param("1", "1000.00", False, None, "600.00", "0.00", "100.00", "400.00",
                 id="flag 1: eligible burden 600, never the non-medical 100"),
    pytest.param("1", "600.00", False, None, "600.00", "0.00", "100.00", "0.00", id="balance exactly enough"),
    # min(600, 250) = 250; cash 700 − 250 = 450
    pytest.param("1", "250.00", False, None, "250.00", "0.00", "450.00", "0.00", id="balance short"),
    pytest.param("1", "0.00", False, None, "0.00", "0.00", "700.00", "0.00", id="empty account"),
    # own 250, family pays the rest of 600 up to 200 → 200; cash 700 − 250 − 200 = 250
    pytest.param("1", "250.00", True, "200.00", "250.00", "200.00", "250.00", "0.00",
                 id="family mutual aid limited by the holder's balance"),
    # own 250, family pays 600 − 250 = 350; cash = the non-medical 100
    pytest.param("1", "250.00", True, "1000.00", "250.00", "350.00", "100.00", "0.00",
                 id="family mutual aid pays what own account leaves"),
    pytest.param("1", "0.00", True, "1000.00", "0.00", "600.00", "100.00", "0.00",
                 id="family mutual aid pays all the eligible burden"),
    # own account covers everything eligible: family pays nothing
    pytest.param("1", "1000.00", True, "1000.00", "600.00", "0.00", "100.00", "400.00",
                 id="own account first, holder untouched"),
    # holder_available given but the person names no holder: nothing from a family account
    pytest.param("1", "250.00", False, "1000.00", "250.00", "0.00", "450.00", "0.00",
                 id="no mulaid_holder_psn_no: no family mutual aid"),
    # holder named but no usable holder account (None)
    pytest.param("1", "250.00", True, None, "250.00", "0.00", "450.00", "0.00", id="holder without account"),
    pytest.param("1", "250.00", True, "0.00", "250.00", "0.00", "450.00", "0.00", id="holder account empty"),
]


@pytest.mark.parametrize(("flag", "balance", "holder", "available", "acct", "mulaid", "cash", "balc"), ACCOUNT_CASES)
def test_personal_account_and_family_mutual_aid(flag, balance, holder, available, acct, mulaid, cash, balc):
    """§4 payment: acct_pay = min(psn_part − non-medical, balance); 家庭共济 for what is left of the
    eligible burden up to the holder's availability; psn_cash_pay and balc."""
    extra = {"mulaid_holder_psn_no": "P0", "mulaid_relation": "spouse"} if holder else {}
    p = person(**extra)
    st = state(balance, y2023=DEDUCTIBLE_USED)
    out = settle(claim(*ACCOUNT_LINES, acct_used_flag=flag), p, E_H3, st,
                 holder_available=None if available is None else fen(available))
    s = out.settlement
    assert_yuan(s, medfee_sumamt="1300.00", hifp_pay="600.00", psn_part_amt="700.00", acct_pay=acct,
                acct_mulaid_pay=mulaid, psn_cash_pay=cash)
    assert s.balc == fen(balc)
    assert out.state.balance == fen(balc)
    assert out.effects.acct_pay == fen(acct)
    assert out.effects.mulaid_pay == fen(mulaid)
    assert out.effects.mulaid_holder == ("P0" if fen(mulaid) else None)
    rows = [(row.fund_pay_type, row.fund_payamt) for row in s.setldetail]
    expected_rows = [(POOLING, fen("600.00"))]
    expected_rows += [(ACCOUNT, fen(acct))] if fen(acct) else []
    expected_rows += [(ACCOUNT, fen(mulaid))] if fen(mulaid) else []
    assert rows == expected_rows


def test_account_never_pays_a_non_medical_only_claim():
    """§4: public health, fitness, wellness (non_med_flag) are never payable by the account."""
    s = settle(claim(line("100.00", non_med="1"), acct_used_flag="1"), person(), E_H3, state("500.00"),
               ).settlement
    assert_yuan(s, hifp_pay="0.00", psn_part_amt="100.00", acct_pay="0.00", psn_cash_pay="100.00")
    assert s.balc == fen("500.00")


def test_account_pays_deductible_overlimit_and_class_c():
    """§4: acct_pay = min(psn_part − non-medical, balance): deductible, over-limit, 乙类 pre-self-pay and 丙类
    are all personal burden the account may pay. Fresh Erenhot year, level 2 (70%)."""
    lines = (line("1200.00"), line(pric="15.00", cnt="3", uplmt="12.00", lv="02", selfpay="0.10"), line("20.00", "03"))
    # inscp 1200 + 32.40 = 1232.40; deductible 1000; hifp 232.40 × 0.70 = 162.68
    # medfee 1265.00; psn_part 1265.00 − 162.68 = 1102.32, all eligible
    s = settle(claim(*lines, acct_used_flag="1"), person(), E_H2, state("5000.00")).settlement
    assert_yuan(s, medfee_sumamt="1265.00", act_pay_dedc="1000.00", hifp_pay="162.68", psn_part_amt="1102.32",
                acct_pay="1102.32", psn_cash_pay="0.00")
    assert s.balc == fen("3897.68")


# ---------------------------------------------------------------- §4 crediting

CREDIT_CASES = [
    # in-service: 2% × base. 5000.00 × 0.02 = 100.00
    pytest.param(ERENHOT, False, "2023-03", "5000.00", "100.00", id="Erenhot in-service 2% of base"),
    # 4321.25 × 0.02 = 86.425 → 86.43
    pytest.param(ERENHOT, False, "2023-03", "4321.25", "86.43", id="in-service 2% rounds half up"),
    # retired: average pension 3000.00 × 3% = 90.00 in 2022-12, × 2% = 60.00 from 2023-01
    pytest.param(ERENHOT, True, "2022-10", "3000.00", "90.00", id="Erenhot retired 3% from 2022-10"),
    pytest.param(ERENHOT, True, "2022-12", "3000.00", "90.00", id="Erenhot retired 3% in 2022-12"),
    pytest.param(ERENHOT, True, "2023-01", "3000.00", "60.00", id="Erenhot retired 2% in 2023-01"),
    # 3333.35 × 0.03 = 100.0005 → 100.00 ; × 0.02 = 66.667 → 66.67
    pytest.param(ERENHOT, True, "2022-11", "3333.35", "100.00", id="retired 3% rounding"),
    pytest.param(ERENHOT, True, "2024-06", "3333.35", "66.67", id="retired 2% rounding"),
    pytest.param(PROVINCE, True, "2023-05", "3000.00", "60.00", id="province retired about 2%"),
    pytest.param(PROVINCE, False, "2023-05", "6000.00", "120.00", id="province in-service 2%"),
    pytest.param(ERENHOT, False, "2023-03", "0.00", "0.00", id="zero base"),
]


@pytest.mark.parametrize(("region", "retired", "ym", "base", "amount"), CREDIT_CASES)
def test_monthly_crediting(region, retired, ym, base, amount):
    """§4 crediting, monthly and effective-dated by the month's first day."""
    out = apply_credit(credit(ym, base=base), person(region=region, retired=retired), BOOK, state("10.00"))
    assert isinstance(out, AccountCredited), out
    assert out.result.amount == fen(amount)
    assert out.result.balc == fen("10.00") + fen(amount)
    assert out.state.balance == out.result.balc
    assert out.result.ym == ym and out.result.psn_no == "P1"


def test_opening_credit_adds_the_explicit_amount():
    """§4 / CONTRACT credit 'opening': a migrated balance is added as given."""
    out = apply_credit(credit("2023-01", amount="123.45"), person(), BOOK, state("10.00"))
    assert isinstance(out, AccountCredited)
    assert out.result.amount == fen("123.45")
    assert out.result.balc == fen("133.45") == out.state.balance


def test_balance_carries_over_years_and_accumulators_untouched():
    """§4: balances carry over across years (年终结转); crediting changes no year accumulator."""
    st = state("50.00", y2022=YearTotals(visits=3))
    out = apply_credit(credit("2023-01", base="5000.00"), person(), BOOK, st)
    assert out.state.balance == fen("150.00")
    assert out.state.years == st.years


def test_credit_for_unknown_person_is_rejected():
    """§4 crediting / CONTRACT UNKNOWN_PERSON for a credit."""
    c = credit("2023-01", base="5000.00", psn_no="NOBODY", credit_id="K-X")
    out = apply_credit(c, None, BOOK, PersonState())
    assert isinstance(out, Rejection)
    assert (out.err_code, out.credit_id, out.psn_no) == ("UNKNOWN_PERSON", "K-X", "NOBODY")
    assert out.err_msg


def test_monthly_credit_before_the_policy_starts_is_rejected():
    """No policy in force for Erenhot in 2022-09: no rate to apply, so the credit is refused (not 0)."""
    out = apply_credit(credit("2022-09", base="3000.00"), person(retired=True), BOOK, PersonState())
    assert isinstance(out, Rejection) and out.err_code == "NO_POLICY"
    assert "152501" in out.err_msg and "2022-10-01" in out.err_msg


# ================================================================ §8 reversal


def _family_person():
    return person(mulaid_holder_psn_no="P0", mulaid_relation="parent")


def test_reversal_next_year_restores_the_originals_year():
    """§8: restores deductible, caps, visits, medfee of the ORIGINAL's year and the own balance,
    even when the reversal is dated in the next year; amounts negated; ids of the original."""
    p = _family_person()
    before = state("300.00", y2023=YearTotals(deductible_used=fen("400.00"), outpatient_pool_paid=fen("50.00"),
                                              fund_cap_used=fen("50.00"), visits=2, medfee=fen("900.00")),
                   y2024=YearTotals(visits=1, medfee=fen("10.00")))
    # 甲类 1000 + 丙类 100 on 2023-12-31 at level 3: deductible 600 left → 600; (1000 − 600) × 0.60 = 240.00
    # psn_part 1100 − 240 = 860; eligible 860; own 300; family 560 (holder has 1000); cash 0
    c = claim(line("1000.00"), line("100.00", "03"), claim_id="ORIG", setl_time="2023-12-31T20:00:00+08:00",
              acct_used_flag="1")
    settled = settle(c, p, E_H3, before, holder_available=fen("1000.00"))
    s = settled.settlement
    assert_yuan(s, act_pay_dedc="600.00", hifp_pay="240.00", psn_part_amt="860.00", acct_pay="300.00",
                acct_mulaid_pay="560.00", psn_cash_pay="0.00")
    assert settled.state.year(2023) == YearTotals(deductible_used=fen("1000.00"), outpatient_pool_paid=fen("290.00"),
                                                  fund_cap_used=fen("290.00"), visits=3, medfee=fen("2000.00"))

    rev = reverse_claim(reversal("ORIG", claim_id="REV", setl_time="2024-01-03T09:00:00+08:00"), record(settled),
                        settled.state)
    assert isinstance(rev, ClaimReversed), rev
    assert rev.state == before
    assert rev.state.year(2024) == before.year(2024)
    assert rev.refund_holder == "P0" and rev.refund_amount == fen("560.00")
    r = rev.settlement
    assert_identities(r)
    for name in ("medfee_sumamt", "fulamt_ownpay_amt", "overlmt_selfpay", "preselfpay_amt", "inscp_scp_amt",
                 "act_pay_dedc", "hifp_pay", "hifob_pay", "cvlserv_pay", "maf_pay", "oth_pay", "fund_pay_sumamt",
                 "psn_part_amt", "acct_pay", "acct_mulaid_pay", "psn_cash_pay"):
        assert getattr(r, name) == -getattr(s, name), name
    assert_yuan(r, medfee_sumamt="-1100.00", hifp_pay="-240.00", acct_pay="-300.00", acct_mulaid_pay="-560.00")
    assert r.balc == fen("300.00")  # own balance after the refund
    assert r.pool_prop_selfpay == s.pool_prop_selfpay == Decimal("0.6000")
    assert (r.claim_id, r.orig_claim_id, r.orig_setl_id) == ("REV", "ORIG", s.setl_id)
    assert r.setl_id == setl_id_for("REV") != s.setl_id
    assert r.is_reversal
    assert r.setl_time.startswith("2024-01-03")
    assert (r.psn_no, r.mdtrt_id, r.fixmedins_code, r.insu_admdvs) == (s.psn_no, s.mdtrt_id, s.fixmedins_code,
                                                                      s.insu_admdvs)
    assert [row.fund_payamt for row in r.setldetail] == [-row.fund_payamt for row in s.setldetail]


def test_reversal_after_later_claims_gives_back_only_its_own_consumption():
    """§8: later claims keep what they consumed; the reversal gives back exactly the original's effects."""
    p = person()
    a = settle(claim(line("600.00"), claim_id="A", acct_used_flag="1"), p, E_H3, state("1000.00"))
    # A: deductible 600, hifp 0, acct 600 → balance 400
    b = settle(claim(line("700.00"), claim_id="B", setl_time="2023-07-01T10:00:00+08:00", acct_used_flag="1"),
               p, E_H3, a.state)
    # B: deductible 400, (700 − 400) × 0.60 = 180; psn_part 520; acct min(520, 400) = 400 → balance 0
    assert_yuan(b.settlement, act_pay_dedc="400.00", hifp_pay="180.00", acct_pay="400.00")
    rev = reverse_claim(reversal("A"), record(a), b.state)
    assert isinstance(rev, ClaimReversed)
    assert rev.state.balance == fen("600.00")
    assert rev.state.year(2023) == YearTotals(deductible_used=fen("400.00"), outpatient_pool_paid=fen("180.00"),
                                              fund_cap_used=fen("180.00"), visits=1, medfee=fen("700.00"))
    assert rev.refund_holder is None and rev.refund_amount == 0


def test_reversal_restores_caps_so_the_next_claim_is_paid_again():
    """§8 + §3.3: a reversed claim's pooling no longer counts against the outpatient cap."""
    st = state(y2023=YearTotals(deductible_used=fen("1000.00"), outpatient_pool_paid=fen("3700.00"),
                                fund_cap_used=fen("3700.00")))
    a = settle(claim(line("500.00"), claim_id="A"), person(), E_H3, st)  # 300.00 → cap reached
    rev = reverse_claim(reversal("A"), record(a), a.state)
    assert rev.state == st
    again = settle(claim(line("500.00")), person(), E_H3, rev.state)
    assert_yuan(again.settlement, hifp_pay="300.00")


def test_reversal_of_unknown_claim_is_rejected():
    """§8 / CONTRACT UNKNOWN_ORIGINAL: the original was never settled."""
    out = reverse_claim(reversal("NEVER", claim_id="R-1"), None, PersonState())
    assert isinstance(out, Rejection)
    assert (out.err_code, out.claim_id, out.psn_no) == ("UNKNOWN_ORIGINAL", "R-1", "P1")
    assert "NEVER" in out.err_msg


def test_second_reversal_is_rejected_already_reversed():
    """§8 / CONTRACT ALREADY_REVERSED: the store's record names the earlier reversal."""
    a = settle(claim(line("100.00"), claim_id="A"), person(), E_H3)
    out = reverse_claim(reversal("A", claim_id="R-2"), record(a, reversed_by="R-1"), PersonState())
    assert isinstance(out, Rejection)
    assert (out.err_code, out.claim_id) == ("ALREADY_REVERSED", "R-2")
    assert "R-1" in out.err_msg


def test_reversal_of_a_reversal_is_unknown_original():
    """§8: only a settled claim can be reversed; a reversal is not an original."""
    a = settle(claim(line("100.00"), claim_id="A"), person(), E_H3)
    rev = reverse_claim(reversal("A", claim_id="R-1"), record(a), a.state)
    rev_record = ClaimRecord("fp", rev.settlement, a.effects)
    out = reverse_claim(reversal("R-1", claim_id="R-2"), rev_record, rev.state)
    assert isinstance(out, Rejection) and out.err_code == "UNKNOWN_ORIGINAL"


def test_reversal_naming_another_persons_claim_is_unknown_original():
    """§8: a reversal must name a claim of the same person."""
    a = settle(claim(line("100.00"), claim_id="A"), person(), E_H3)
    out = reverse_claim(reversal("A", psn_no="P2"), record(a), PersonState())
    assert isinstance(out, Rejection) and out.err_code == "UNKNOWN_ORIGINAL"


# ================================================================ rejections


def test_unknown_person():
    """CONTRACT UNKNOWN_PERSON: not in the person registry (yet)."""
    out = settle_claim(claim(line("10.00"), claim_id="C-U", psn_no="NOBODY"), None, E_H3, BOOK, PersonState())
    assert isinstance(out, Rejection)
    assert (out.err_code, out.claim_id, out.psn_no) == ("UNKNOWN_PERSON", "C-U", "NOBODY")
    assert out.err_msg


def test_unknown_institution():
    """CONTRACT UNKNOWN_INSTITUTION: not in the institution registry (yet)."""
    out = settle_claim(claim(line("10.00"), claim_id="C-I", fixmedins_code="NOWHERE"), person(), None, BOOK,
                       PersonState())
    assert isinstance(out, Rejection)
    assert (out.err_code, out.claim_id) == ("UNKNOWN_INSTITUTION", "C-I")
    assert "NOWHERE" in out.err_msg


@pytest.mark.parametrize(
    ("p", "c", "code"),
    [
        pytest.param(person(psn_insu_stas="2"), claim(line("10.00")), "NOT_INSURED", id="psn_insu_stas 2"),
        pytest.param(person(psn_insu_stas="2", insu_admdvs="110000"), claim(line("10.00")), "NOT_INSURED",
                     id="a suspension is NOT_INSURED wherever the person is insured"),
        pytest.param(person(), claim(line("10.00"), insutype="390"), "NO_POLICY", id="claim insutype 390"),
        pytest.param(person(insutype="390"), claim(line("10.00"), insutype="390"), "NO_POLICY",
                     id="resident insurance 390"),
        pytest.param(person(insutype="390"), claim(line("10.00")), "NO_POLICY",
                     id="a claim under 310 for a person insured under 390"),
        pytest.param(person(), claim(line("10.00"), setl_time="2022-09-30T10:00:00+08:00"), "NO_POLICY",
                     id="before the region's first policy version"),
        pytest.param(person(insu_admdvs="110000"), claim(line("10.00")), "NO_POLICY", id="region without policy"),
        pytest.param(person(), claim(line("10.00"), med_type="41"), "UNSUPPORTED_MED_TYPE",
                     id="med_type 41 not settled by these policies"),
    ],
)
def test_claim_rejections(p, c, code):
    """NOT_INSURED only for a real suspension (status not "1"); NO_POLICY for no policy for the insurance
    type, the insured region or the date; UNSUPPORTED_MED_TYPE."""
    st = state("100.00", y2023=YearTotals(visits=1))
    out = settle_claim(c, p, E_H3, BOOK, st)
    assert isinstance(out, Rejection), out
    assert out.err_code == code
    assert out.claim_id == c.claim_id and out.psn_no == p.psn_no
    assert out.err_msg


def _line_fields(**changes):
    fields = dict(feedetl_sn="1", med_list_codg="X", list_type="101", chrgitm_lv="01", det_item_fee_sumamt="30.00",
                  cnt="3", pric="10.00")
    fields.update(changes)
    return fields


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param(dict(det_item_fee_sumamt="-30.00", pric="-10.00"), id="negative amount"),
        pytest.param(dict(pric="-10.00"), id="negative price"),
        pytest.param(dict(chrgitm_lv="02", selfpay_prop="1.5"), id="selfpay_prop 1.5"),
        pytest.param(dict(chrgitm_lv="02", selfpay_prop="-0.1"), id="selfpay_prop negative"),
        pytest.param(dict(det_item_fee_sumamt="31.00"), id="amount is not pric x cnt"),
        pytest.param(dict(det_item_fee_sumamt="30.02"), id="two fen off pric x cnt"),
        pytest.param(dict(det_item_fee_sumamt=30.0), id="float money"),
        pytest.param(dict(det_item_fee_sumamt="30.001"), id="three decimals"),
        pytest.param(dict(cnt="0", det_item_fee_sumamt="0.00"), id="zero count"),
        pytest.param(dict(chrgitm_lv="04"), id="unknown chrgitm_lv"),
        pytest.param(dict(non_med_flag="2"), id="bad non_med_flag"),
        pytest.param(dict(pric_uplmt_amt="-1.00"), id="negative limit price"),
        pytest.param(dict(pric="10.0000001"), id="price with 7 decimals"),
        pytest.param(dict(pric=10.0), id="float price"),
    ],
)
def test_invalid_fee_line_raises_validation_error(changes):
    """CONTRACT INVALID_CLAIM: impossible lines fail at model construction."""
    with pytest.raises(ValidationError):
        FeeLine(**_line_fields(**changes))


def test_six_place_price_line_is_accepted():
    """2204 prices carry 6 places: 0.0125 × 100 = 1.25."""
    assert FeeLine(**_line_fields(pric="0.0125", cnt="100", det_item_fee_sumamt="1.25")).det_item_fee_sumamt == 125


def test_line_of_one_fen_slack_is_accepted():
    """A line may differ from pric × cnt by the HIS's own 1 fen rounding."""
    assert FeeLine(**_line_fields(det_item_fee_sumamt="29.99")).det_item_fee_sumamt == 2999


def _claim_fields(**changes):
    fields = dict(claim_id="C", mdtrt_id="M", psn_no="P1", fixmedins_code="EH3", med_type="11", insutype="310",
                  setl_time="2023-06-01T10:00:00+08:00", acct_used_flag="0", fee_details=[_line_fields()])
    fields.update(changes)
    return fields


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param(dict(fee_details=[]), id="empty fee list"),
        pytest.param(dict(setl_time="2023-06-01T10:00:00"), id="setl_time without offset"),
        pytest.param(dict(acct_used_flag="2"), id="bad acct_used_flag"),
        pytest.param(dict(claim_id=""), id="empty claim_id"),
        pytest.param(dict(fee_details=[_line_fields(), _line_fields()]), id="repeated feedetl_sn"),
        pytest.param(dict(fee_details=[_line_fields(det_item_fee_sumamt="-30.00", pric="-10.00")]),
                     id="negative line inside a claim"),
    ],
)
def test_invalid_claim_raises_validation_error(changes):
    """CONTRACT INVALID_CLAIM: impossible claims fail at model construction."""
    with pytest.raises(ValidationError):
        Claim(**_claim_fields(**changes))


def test_valid_claim_fields_construct():
    """The base fields used by the invalid-claim cases are valid on their own."""
    assert Claim(**_claim_fields()).fee_details[0].det_item_fee_sumamt == 3000


def test_reversal_setl_time_without_offset_is_invalid():
    """CONTRACT: setl_time is ISO 8601 with an offset."""
    with pytest.raises(ValidationError):
        reversal("A", setl_time="2024-01-03T09:00:00")


@pytest.mark.parametrize(
    ("holder", "relation", "code"),
    [
        pytest.param("P0", "spouse", None, id="spouse ok"),
        pytest.param("P0", "parent", None, id="parent ok"),
        pytest.param("P0", "child", None, id="child ok"),
        pytest.param(None, None, None, id="no binding ok"),
        pytest.param("P0", "sibling", "MULAID_NOT_ALLOWED", id="sibling refused"),
        pytest.param("P0", None, "MULAID_NOT_ALLOWED", id="holder without relation refused"),
        pytest.param(None, "spouse", "MULAID_NOT_ALLOWED", id="relation without holder refused"),
        pytest.param("P1", "spouse", "MULAID_NOT_ALLOWED", id="self-binding refused"),
    ],
)
def test_check_person_family_binding(holder, relation, code):
    """§4 家庭共济: a person may be bound to one holder who is their spouse, parent or child."""
    out = check_person(person(mulaid_holder_psn_no=holder, mulaid_relation=relation))
    if code is None:
        assert out is None
    else:
        assert isinstance(out, Rejection)
        assert (out.err_code, out.psn_no) == (code, "P1")
        assert out.err_msg
