"""双通道 (seed 001, 实施方案 三、3, 完善门诊双通道管理): "支持参保人员持定点医疗机构外配处方在定点零售药店结算和配药".

A recognised 门诊大病 claim at a retail pharmacy settles under the disease's rules (paid like
inpatient care: the annual 门诊大病 deductible, the ratio of the prescribing institution's level,
the annual fund cap, then the large-amount subsidy) when it names the prescribing institution
(`rx_fixmedins_code`); without it, it is refused as before. Erenhot as shipped: 门诊大病 deductible
800.00 a year, inpatient ratios in service 0.90 / 0.88 / 0.85 (levels 1 / 2 / 3), annual fund cap
150000.00, large-amount subsidy 0.90 without deductible. Figures worked by hand, in yuan.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest
from tests.unit.builders import BOOK, claim, fen, institution, line, person, settled_in_batches, state

from gongji.settlement.domain import Rejection, YearTotals
from gongji.settlement.rules import settle_claim

pytestmark = pytest.mark.unit

PHARMACY = institution("RX-P", pharmacy=True)
H1, H3 = institution("H1", "1"), institution("H3", "3")
PATIENT = person(chronic_diseases=("N18.5",))  # 尿毒症透析, recognised (备案)


def at_pharmacy(amount: str, rx: str | None = "H1"):
    c = claim(line(amount), fixmedins_code="RX-P", med_type="14", dise_codg="N18.5")
    return c.model_copy(update={"rx_fixmedins_code": rx})


def settled(c, st=None, prescriber=H1, at=PHARMACY):
    outcome = settle_claim(c, PATIENT, at, BOOK, st or state(), None, prescriber=prescriber)
    assert not isinstance(outcome, Rejection), outcome
    return outcome.settlement


def test_without_the_prescribing_institution_the_refusal_stays():
    outcome = settle_claim(at_pharmacy("1800.00", rx=None), PATIENT, PHARMACY, BOOK, state())
    assert isinstance(outcome, Rejection) and outcome.err_code == "INVALID_CLAIM"
    assert "rx_fixmedins_code" in outcome.err_msg and "RX-P" in outcome.err_msg


def test_with_it_the_disease_rules_apply_at_the_prescribers_level():
    """1800.00: deductible 800.00, then (1800.00 − 800.00) × 0.90 = 900.00 for a level-1 prescriber,
    × 0.85 = 850.00 for a level-3 one; the pharmacy stays the treating institution."""
    s = settled(at_pharmacy("1800.00"))
    assert (s.act_pay_dedc, s.hifp_pay, s.psn_part_amt) == (fen("800.00"), fen("900.00"), fen("900.00"))
    assert s.fixmedins_code == "RX-P" and s.med_type == "14"
    assert "双通道" in s.setldetail[0].setl_proc_info
    assert settled(at_pharmacy("1800.00", rx="H3"), prescriber=H3).hifp_pay == fen("850.00")


@pytest.mark.parametrize(("amount", "deductible", "pooling"), [
    ("799.99", "799.99", "0.00"),  # all of it under the 800.00 annual deductible
    ("800.00", "800.00", "0.00"),  # exactly the deductible
    ("800.01", "800.00", "0.01"),  # 0.01 × 0.90 = 0.009, rounded half-up to 0.01
])
def test_the_diseases_annual_deductible_one_fen_either_side(amount, deductible, pooling):
    s = settled(at_pharmacy(amount))
    assert (s.act_pay_dedc, s.hifp_pay) == (fen(deductible), fen(pooling))


# The deductible is used up and 149100.00 of the 150000.00 fund cap: 900.00 left, which a level-1
# prescriber's 0.90 reaches on exactly 1000.00.
NEAR_CAP = state(y2023=YearTotals(major_deductible_used=fen("800.00"), fund_cap_used=fen("149100.00")))


@pytest.mark.parametrize(("amount", "pooling", "hifob"), [
    ("999.99", "899.99", "0.00"),  # 999.99 × 0.90 = 899.991 → 899.99, under the cap
    ("1000.00", "900.00", "0.00"),  # exactly the 900.00 left
    ("1000.01", "900.00", "0.01"),  # capped at 900.00; 1000.01 − 900.00 / 0.90 = 0.01 above, × 0.90 → 0.01 大额
])
def test_the_annual_fund_cap_one_fen_either_side(amount, pooling, hifob):
    s = settled(at_pharmacy(amount), NEAR_CAP)
    assert (s.act_pay_dedc, s.hifp_pay, s.hifob_pay) == (0, fen(pooling), fen(hifob))
    assert s.fund_pay_sumamt == fen(pooling) + fen(hifob)


@pytest.mark.parametrize("amount", ["799.99", "1800.00", "160000.00"])
def test_the_money_is_what_the_prescriber_itself_would_settle(amount):
    at_hospital = claim(line(amount), fixmedins_code="H1", med_type="14", dise_codg="N18.5")
    fields = ("act_pay_dedc", "hifp_pay", "hifob_pay", "maf_pay", "fund_pay_sumamt", "psn_part_amt")
    pharmacy, hospital = settled(at_pharmacy(amount)), settled(at_hospital, at=H1, prescriber=None)
    assert [getattr(pharmacy, f) for f in fields] == [getattr(hospital, f) for f in fields]


def test_an_unknown_prescriber_waits_for_the_registry():
    outcome = settle_claim(at_pharmacy("1800.00", rx="H9"), PATIENT, PHARMACY, BOOK, state(), None, prescriber=None)
    assert isinstance(outcome, Rejection) and outcome.err_code == "UNKNOWN_INSTITUTION" and "H9" in outcome.err_msg


def test_a_pharmacy_cannot_be_the_prescriber():
    other = institution("RX-Q", pharmacy=True)
    outcome = settle_claim(at_pharmacy("1800.00", rx="RX-Q"), PATIENT, PHARMACY, BOOK, state(), None, prescriber=other)
    assert isinstance(outcome, Rejection) and outcome.err_code == "INVALID_CLAIM"
    assert "rx_fixmedins_code" in outcome.err_msg


def test_the_field_changes_nothing_elsewhere():
    """A general outpatient claim at the pharmacy, or a 门诊大病 at a hospital, naming a prescriber
    settles as it does without it."""
    general = claim(line("1500.00"), fixmedins_code="RX-P")
    assert settled(general.model_copy(update={"rx_fixmedins_code": "H1"})) == settled(general, prescriber=None)
    major = claim(line("1800.00"), fixmedins_code="H3", med_type="14", dise_codg="N18.5")
    assert settled(major.model_copy(update={"rx_fixmedins_code": "H1"}), at=H3) == settled(major, at=H3, prescriber=None)


def _stream():
    """The prescriber's registry entry arrives between two dual-channel claims: the first is refused
    (UNKNOWN_INSTITUTION), the second settles at level 1."""
    return [PHARMACY, PATIENT, at_pharmacy("1800.00").model_copy(update={"claim_id": "D1"}), H1,
            at_pharmacy("1800.00").model_copy(update={"claim_id": "D2"})]


@pytest.mark.parametrize("size", [2, 3, 5])
def test_the_service_reads_the_prescriber_alike_in_any_batch(size):
    events = _stream()
    one = asyncio.run(settled_in_batches(events, 1, BOOK))
    kinds = [(kind, wire.get("err_code"), wire.get("hifp_pay")) for kind, wire in one]
    assert kinds == [("rejection", "UNKNOWN_INSTITUTION", None), ("settlement", None, Decimal("900.00"))]
    assert asyncio.run(settled_in_batches(events, size, BOOK)) == one
