"""Caps, deductibles and limits at the edge and one fen either side, where hand-made mutants of the
engine (tests/mutation.py) went unnoticed: a figure left over from a mid-year policy version that
lowered it, a ratio that a bonus would lift above 1, a group outside the fund cap, the base a
capped payment covered. Every figure is worked by hand in the comments, in yuan."""

from __future__ import annotations

import importlib.resources
from decimal import Decimal

import pytest
from tests.unit.builders import BOOK, ERENHOT, claim, fen, institution, line, person, state

from gongji.settlement.domain import Rejection, YearTotals
from gongji.settlement.rules import settle_claim
from gongji.settlement.policy import PolicyBook, parse_policy

pytestmark = pytest.mark.unit

_SHIPPED = importlib.resources.files("gongji.settlement").joinpath("policies").joinpath("152501.toml")


def _edited(text: str, *changes: tuple[str, str]) -> str:
    for old, new in changes:
        assert text.count(old) >= 1, f"fixture drift: {old!r} is no longer in the shipped file"
        text = text.replace(old, new, 1)
    return text


# Erenhot as shipped, but: general outpatient ratios 0.94 / 0.95 / 0.96 (levels 3 / 2 / 1) with a
# family-doctor bonus of 0.05; 高血压 with a 300.00 deductible; 糖尿病 outside the annual fund cap.
# From 2023-07-01 a version lowers the fund cap to 20000.00, the general deductible to 800.00, the
# 门诊大病 deductible to 600.00, 高血压's deductible to 200.00 and its limit to 1500.00, and the
# civil-servant subsidy's deductible to 800.00 and its cap to 40000.00. What a
# person used before July can then be above what July allows: nothing is left, never less than nothing.
_LOWERED = _edited(
    _SHIPPED.read_text(encoding="utf-8"),
    ('family_doctor_bonus = "0"', 'family_doctor_bonus = "0.05"'),
    ('"3" = { in_service = "0.60", retired = "0.65" }', '"3" = { in_service = "0.94", retired = "0.94" }'),
    ('"2" = { in_service = "0.70", retired = "0.75" }', '"2" = { in_service = "0.95", retired = "0.95" }'),
    ('"1" = { in_service = "0.70", retired = "0.75" }', '"1" = { in_service = "0.96", retired = "0.96" }'),
    ('annual_deductible = "0.00"', 'annual_deductible = "300.00"'),  # the first group: 高血压
    ('annual_limit = "3000.00"', 'annual_limit = "3000.00"\ncounts_in_fund_cap = false'),  # 糖尿病
) + """
[[versions]]
effective_from = 2023-07-01
annual_fund_cap = "20000.00"

[versions.general_outpatient]
annual_deductible = "800.00"

[versions.inpatient]
major_outpatient_annual_deductible = "600.00"

[versions.civil_servant]
annual_deductible = "800.00"
annual_cap = "40000.00"

[versions.chronic]
unrecognised = "general"

[[versions.chronic.groups]]
name = "高血压"
diseases = ["I10"]
annual_deductible = "200.00"
ratio = { in_service = "0.70", retired = "0.75" }
annual_limit = "1500.00"

# The groups list is restated whole: 糖尿病 stays (a version may not drop a recognised disease).
[[versions.chronic.groups]]
name = "糖尿病"
diseases = ["E11"]
ratio = { in_service = "0.70", retired = "0.75" }
annual_limit = "3000.00"
counts_in_fund_cap = false
"""
LOWERED = PolicyBook([parse_policy(_LOWERED, "tests: Erenhot lowered mid-year")])
JUNE, JULY = "2023-06-10T10:00:00+08:00", "2023-07-10T10:00:00+08:00"
H1, H2, H3 = institution("H1", "1"), institution("H2", "2"), institution("H3", "3")


def settle(c, p, st, inst=H3, book=LOWERED):
    outcome = settle_claim(c, p, inst, book, st)
    assert not isinstance(outcome, Rejection), outcome
    return outcome


def test_the_lowered_policy_is_what_the_comments_say():
    june, july = (LOWERED.in_force(ERENHOT, day) for day in (claim(setl_time=JUNE).setl_time.date(),
                                                               claim(setl_time=JULY).setl_time.date()))
    assert june.general_outpatient.family_doctor_bonus == Decimal("0.05")
    assert [(g.name, g.annual_deductible, g.counts_in_fund_cap) for g in june.chronic.groups] == [
        ("高血压", fen("300.00"), True), ("糖尿病", 0, False)]
    assert (july.annual_fund_cap, july.general_outpatient.annual_deductible) == (fen("20000.00"), fen("800.00"))
    assert (july.inpatient.major_outpatient_annual_deductible, july.chronic.groups[0].annual_limit) == (
        fen("600.00"), fen("1500.00"))
    assert (july.civil_servant.annual_deductible, july.civil_servant.annual_cap, july.civil_servant.ratio) == (
        fen("800.00"), fen("40000.00"), Decimal("0.80"))


@pytest.mark.parametrize(("inst", "ratio", "paid"), [
    (H3, "0.99", "99.00"),  # 0.94 + 0.05 = 0.99: 100.00 × 0.99
    (H2, "1.00", "100.00"),  # 0.95 + 0.05 = 1.00, at the cap
    (H1, "1.00", "100.00"),  # 0.96 + 0.05 = 1.01, capped at 1: never more than the in-scope amount
])
def test_a_family_doctor_bonus_lifts_the_ratio_to_one_and_no_further(inst, ratio, paid):
    """§3.2: ratio + family-doctor bonus, at most 100%. The annual deductible is used up."""
    p = person(fd_fixmedins_code=inst.fixmedins_code)
    outcome = settle(claim(line("100.00"), fixmedins_code=inst.fixmedins_code, setl_time=JUNE), p,
                     state(y2023=YearTotals(deductible_used=fen("1000.00"))), inst=inst)
    assert outcome.settlement.pool_prop_selfpay == Decimal(ratio)
    assert outcome.settlement.hifp_pay == fen(paid)


@pytest.mark.parametrize(("june", "deductible", "paid"), [
    ("799.99", "0.01", "93.99"),  # 800.00 − 799.99 = 0.01 left; 99.99 × 0.94 = 93.9906
    ("800.00", "0.00", "94.00"),  # none left: 100.00 × 0.94
    ("800.01", "0.00", "94.00"),  # 800.01 used is above July's 800.00: none left, not −0.01
    ("1500.00", "0.00", "94.00"),  # June used its whole 1000.00; July's deductible is 800.00
])
def test_a_general_deductible_lowered_mid_year_leaves_nothing_below_zero(june, deductible, paid):
    """§3.1 annual deductible: what June used (up to June's 1000.00) counts against July's 800.00."""
    p = person()
    first = settle(claim(line(june), setl_time=JUNE), p, state())
    assert first.state.year(2023).deductible_used == min(fen(june), fen("1000.00"))
    second = settle(claim(line("100.00"), setl_time=JULY), p, first.state)
    assert (second.settlement.act_pay_dedc, second.settlement.hifp_pay) == (fen(deductible), fen(paid))


def test_a_chronic_groups_deductible_accumulates_and_a_lower_one_leaves_nothing_below_zero():
    """§6 门诊慢特病 高血压 (in-service 70%): 300.00 deductible a year until July, 200.00 from July."""
    p = person(chronic_diseases=("I10",))
    first = settle(claim(line("299.99"), med_type="14", dise_codg="I10", setl_time=JUNE), p, state())
    assert (first.settlement.act_pay_dedc, first.settlement.hifp_pay) == (fen("299.99"), 0)  # all deductible
    second = settle(claim(line("100.00"), med_type="14", dise_codg="I10", setl_time=JUNE), p, first.state)
    # 300.00 − 299.99 = 0.01 left; 99.99 × 0.70 = 69.993
    assert (second.settlement.act_pay_dedc, second.settlement.hifp_pay) == (fen("0.01"), fen("69.99"))
    assert second.state.year(2023).chronic_deductible_used == {"高血压": fen("300.00")}
    # July: 300.00 used against 200.00, none left (not −100.00); 100.00 × 0.70
    third = settle(claim(line("100.00"), med_type="14", dise_codg="I10", setl_time=JULY), p, second.state)
    assert (third.settlement.act_pay_dedc, third.settlement.hifp_pay) == (0, fen("70.00"))


@pytest.mark.parametrize(("june", "june_paid", "july_paid"), [
    ("2442.84", "1499.99", "0.01"),  # (2442.84 − 300) × 0.70 = 1499.988; 1500.00 − 1499.99 = 0.01 left
    ("2442.86", "1500.00", "0.00"),  # 2142.86 × 0.70 = 1500.002: at July's limit
    ("2442.87", "1500.01", "0.00"),  # 2142.87 × 0.70 = 1500.009: above July's limit, nothing (not −0.01)
    ("2585.72", "1600.00", "0.00"),  # 2285.72 × 0.70 = 1600.004
])
def test_a_chronic_limit_lowered_mid_year_pays_nothing_once_reached(june, june_paid, july_paid):
    """§6 门诊慢特病 高血压: annual limit 2000.00 until July, 1500.00 from July (deductible met in June)."""
    p = person(chronic_diseases=("I10",))
    first = settle(claim(line(june), med_type="14", dise_codg="I10", setl_time=JUNE), p, state())
    assert first.settlement.hifp_pay == fen(june_paid)
    second = settle(claim(line("100.00"), med_type="14", dise_codg="I10", setl_time=JULY), p, first.state)
    assert second.settlement.hifp_pay == fen(july_paid)  # by ratio 70.00, capped by what is left
    assert second.state.year(2023).chronic_paid == {"高血压": fen(june_paid) + fen(july_paid)}


# June inpatient claims at level 3 (deductible 800.00, 85%) that use the fund cap to July's 20000.00
# and one fen either side: (24329.40 − 800) × 0.85 = 19999.99; 23529.41 × 0.85 = 19999.9985 → 20000.00;
# 23529.42 × 0.85 = 20000.007 → 20000.01.
FUND_CAP_EDGE = [("24329.40", "19999.99", "0.01"), ("24329.41", "20000.00", "0.00"), ("24329.42", "20000.01", "0.00")]


@pytest.mark.parametrize(("june", "used", "left"), FUND_CAP_EDGE)
def test_a_chronic_group_in_a_fund_cap_lowered_mid_year_pays_nothing_once_reached(june, used, left):
    """§6: 高血压 counts inside the annual fund cap. July: 300.00, 200.00 of it deductible, 100.00 × 0.70
    = 70.00 by ratio, capped at what is left of the 20000.00 fund cap."""
    p = person(chronic_diseases=("I10",))
    first = settle(claim(line(june), med_type="21", setl_time=JUNE), p, state())
    assert first.state.year(2023).fund_cap_used == fen(used)
    second = settle(claim(line("300.00"), med_type="14", dise_codg="I10", setl_time=JULY), p, first.state)
    assert (second.settlement.act_pay_dedc, second.settlement.hifp_pay) == (fen("200.00"), fen(left))


@pytest.mark.parametrize(("june", "used", "left", "hifob"), [
    # 0.01 paid covers 0.01 ÷ 0.85 = 0.0118 → 0.01 of the base; 1000.00 − 0.01 = 999.99 above the cap,
    # 999.99 × 0.90 = 899.991 large-amount subsidy
    (*FUND_CAP_EDGE[0], "899.99"),
    (*FUND_CAP_EDGE[1], "900.00"),  # nothing paid: the whole 1000.00 is above the cap, × 0.90
    (*FUND_CAP_EDGE[2], "900.00"),  # nothing left (not −0.01): as at the cap
])
def test_inpatient_care_in_a_fund_cap_lowered_mid_year_pays_nothing_once_reached(june, used, left, hifob):
    """§6 inpatient: July, 1800.00 at level 3: 800.00 deductible, 1000.00 × 0.85 = 850.00 by ratio,
    capped at what is left of the 20000.00 fund cap; the rest of the base goes to the large-amount
    subsidy (no deductible, 90%)."""
    p = person()
    first = settle(claim(line(june), med_type="21", setl_time=JUNE), p, state())
    assert first.state.year(2023).fund_cap_used == fen(used)
    second = settle(claim(line("1800.00"), med_type="21", setl_time=JULY), p, first.state)
    assert (second.settlement.hifp_pay, second.settlement.hifob_pay) == (fen(left), fen(hifob))


@pytest.mark.parametrize(("june", "deductible", "paid"), [
    ("599.99", "0.01", "84.99"),  # 600.00 − 599.99 = 0.01 left; 99.99 × 0.85 = 84.9915
    ("600.00", "0.00", "85.00"),  # none left: 100.00 × 0.85
    ("600.01", "0.00", "85.00"),  # above July's 600.00: none left, not −0.01
])
def test_a_major_disease_deductible_lowered_mid_year_leaves_nothing_below_zero(june, deductible, paid):
    """§6 门诊大病 (N18.5 dialysis, 参照住院, level 3 85%): its annual deductible is 800.00 until July,
    600.00 from July. June's claim is all deductible."""
    p = person(chronic_diseases=("N18.5",))
    first = settle(claim(line(june), med_type="14", dise_codg="N18.5", setl_time=JUNE), p, state())
    assert (first.settlement.act_pay_dedc, first.settlement.hifp_pay) == (fen(june), 0)
    second = settle(claim(line("100.00"), med_type="14", dise_codg="N18.5", setl_time=JULY), p, first.state)
    assert (second.settlement.act_pay_dedc, second.settlement.hifp_pay) == (fen(deductible), fen(paid))


def test_a_chronic_group_outside_the_fund_cap_does_not_use_it():
    """§6: 糖尿病 here has counts_in_fund_cap = false: its payments use its own limit only."""
    p = person(chronic_diseases=("E11", "I10"))
    outside = settle(claim(line("1000.00"), med_type="14", dise_codg="E11", setl_time=JUNE), p, state())
    assert outside.settlement.hifp_pay == fen("700.00")  # no deductible, 1000.00 × 0.70
    assert outside.effects.fund_cap == 0 and outside.state.year(2023).fund_cap_used == 0
    assert outside.state.year(2023).chronic_paid == {"糖尿病": fen("700.00")}
    # 高血压 counts: (1000.00 − 300.00 deductible) × 0.70 = 490.00, in the fund cap too
    inside = settle(claim(line("1000.00"), med_type="14", dise_codg="I10", setl_time=JUNE), p, outside.state)
    assert inside.state.year(2023).fund_cap_used == fen("490.00")


@pytest.mark.parametrize(("left", "hifob"), [
    # 11000.10 ÷ 0.88 = 12500.1136 → 12500.11 covered; 19500.00 − 12500.11 = 6999.89 above the cap;
    # 6999.89 × 0.90 = 6299.901
    ("11000.10", "6299.90"),
    # 11000.11 ÷ 0.88 = 12500.125 → 12500.13 (half up; half-even would keep 12500.12); 6999.87 above;
    # 6999.87 × 0.90 = 6299.883
    ("11000.11", "6299.88"),
    # 11000.12 ÷ 0.88 = 12500.136 → 12500.14; 6999.86 above; × 0.90 = 6299.874
    ("11000.12", "6299.87"),
])
def test_the_base_a_capped_inpatient_payment_covered_is_rounded_half_up(left, hifob):
    """§6 (shipped Erenhot): an in-service inpatient at level 2 (deductible 500.00, 88%), 20000.00, with
    `left` of the 150000.00 fund cap: 19500.00 × 0.88 = 17160.00 by ratio, capped at `left`. The base
    the payment covered is left ÷ 0.88, rounded half up; the rest goes to the large-amount subsidy."""
    st = state(y2023=YearTotals(fund_cap_used=fen("150000.00") - fen(left)))
    outcome = settle(claim(line("20000.00"), med_type="21", fixmedins_code="H2"), person(), st, inst=H2, book=BOOK)
    assert (outcome.settlement.hifp_pay, outcome.settlement.hifob_pay) == (fen(left), fen(hifob))


# July, a civil servant's inpatient claim at level 3: 1800.00, 800.00 deductible, 1000.00 × 0.85 = 850.00
# pooling; 1800.00 − 850.00 = 950.00 in scope left for the civil-servant subsidy (80%). What June left
# in the year's totals was accumulated under June's 1000.00 deductible and 50000.00 cap.
CIVIL_SERVANT = person(cvlserv_flag="1")


@pytest.mark.parametrize(("used", "deductible", "paid"), [
    ("799.99", "0.01", "759.99"),  # 0.01 left; 949.99 × 0.80 = 759.992
    ("800.00", "0.00", "760.00"),  # none left; 950.00 × 0.80
    ("800.01", "0.00", "760.00"),  # above July's 800.00: none left, not −0.01
])
def test_a_layers_deductible_lowered_mid_year_leaves_nothing_below_zero(used, deductible, paid):
    """§6 公务员医疗补助: its deductible, 1000.00 until July and 800.00 from July."""
    st = state(y2023=YearTotals(cvlserv_deductible_used=fen(used)))
    outcome = settle(claim(line("1800.00"), med_type="21", setl_time=JULY), CIVIL_SERVANT, st)
    assert outcome.settlement.hifp_pay == fen("850.00")
    assert (outcome.effects.cvlserv_deductible, outcome.settlement.cvlserv_pay) == (fen(deductible), fen(paid))


@pytest.mark.parametrize(("paid_before", "paid"), [
    ("39999.99", "0.01"),  # 760.00 by ratio, 0.01 of the cap left
    ("40000.00", "0.00"),  # at the cap
    ("40000.01", "0.00"),  # above July's 40000.00: nothing, not −0.01
])
def test_a_layers_cap_lowered_mid_year_pays_nothing_once_reached(paid_before, paid):
    """§6 公务员医疗补助: its annual cap, 50000.00 until July and 40000.00 from July (deductible met)."""
    st = state(y2023=YearTotals(cvlserv_deductible_used=fen("1000.00"), cvlserv_paid=fen(paid_before)))
    outcome = settle(claim(line("1800.00"), med_type="21", setl_time=JULY), CIVIL_SERVANT, st)
    assert outcome.settlement.cvlserv_pay == fen(paid)


def test_an_uncapped_inpatient_payment_leaves_nothing_above_the_cap():
    """§6 (shipped Erenhot, level 3, 85%): 810.17, 800.00 deductible, 10.17 × 0.85 = 8.6445 → 8.64 paid,
    not capped. Dividing back, 8.64 ÷ 0.85 = 10.16 would leave 0.01 "above the cap": the large-amount
    subsidy pays only when the basic fund was capped."""
    outcome = settle(claim(line("810.17"), med_type="21"), person(), state(), book=BOOK)
    assert (outcome.settlement.hifp_pay, outcome.settlement.hifob_pay) == (fen("8.64"), 0)


def test_medical_assistance_follows_chronic_care_not_a_visit_settled_as_general_outpatient():
    """§6 医疗救助 (shipped Erenhot, 低保: no deductible, 70%) pays on chronic/special and inpatient care.
    A med_type 14 visit for a diagnosis the person has not registered is settled as general outpatient,
    and assistance does not follow it."""
    p = person(chronic_diseases=("I10",), psn_idet_type="dibao")
    general = settle(claim(line("1200.00"), med_type="14", dise_codg="E11"), p, state(), book=BOOK)
    # 1000.00 annual deductible, (1200.00 − 1000.00) × 0.60 = 120.00; no assistance
    assert (general.settlement.hifp_pay, general.settlement.maf_pay) == (fen("120.00"), 0)
    chronic = settle(claim(line("1200.00"), med_type="14", dise_codg="I10"), p, state(), book=BOOK)
    # 高血压: 1200.00 × 0.70 = 840.00; assistance on the 360.00 left: 360.00 × 0.70 = 252.00
    assert (chronic.settlement.hifp_pay, chronic.settlement.maf_pay) == (fen("840.00"), fen("252.00"))
