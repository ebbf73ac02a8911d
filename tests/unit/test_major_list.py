"""门诊大病 list (seed 001, 实施方案 二、(一) 2): "将恶性肿瘤放化疗、器官移植术后抗排异治疗、尿毒症透析治疗等
治疗周期长、对健康损害大、费用负担重的疾病以及重型精神病、儿童脑瘫、耐多药结核、血友病、日间手术等适合在门诊开展,
比住院更经济方便的疾病治疗门诊费用纳入职工统筹保障,参照住院待遇进行管理".

儿童脑瘫 (G80, G80.0–G80.9) is a 备案 diagnosis with an age condition: recognised below 18 full years
(周岁, Erenhot's **sample**) on the claim's Asia/Shanghai date, when the registry gives the birth
date (`brdy`). 日间手术 is recognised by the procedure (`oprn_oprt_code`), with no 备案 and no
diagnosis; the seed keeps it out of general outpatient pooling ("日间手术、特殊慢性病、门诊特殊用药不纳入
职工医保门诊共济统筹范围"), so a med_type 11 claim naming a listed procedure is refused. Erenhot as
shipped: 门诊大病 deductible 800.00 a year, inpatient ratios in service 0.90 / 0.85 (levels 1 / 3),
annual fund cap 150000.00, large-amount subsidy 0.90 without deductible. Figures worked by hand, in yuan.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest
from pydantic import ValidationError
from tests.unit.builders import BOOK, PROVINCE, claim, fen, institution, line, person, settled_in_batches, state

from gongji.settlement.domain import Rejection, YearTotals
from gongji.settlement.rules import settle_claim

pytestmark = pytest.mark.unit

H1, H3 = institution("H1", "1"), institution("H3", "3")
PHARMACY = institution("RX-P", pharmacy=True)
CHILD = person(chronic_diseases=("G80.1",), brdy="2015-03-10")  # 8 on 2023-06-01, recognised (备案)
ANYONE = person()  # no 备案 at all


def palsy(amount: str, **update):
    return claim(line(amount), med_type="14", dise_codg="G80.1").model_copy(update=update)


def day_surgery(amount: str, code: str = "13.41", med_type: str = "14", **update):
    return claim(line(amount), med_type=med_type).model_copy(update={"oprn_oprt_code": code, **update})


def outcome_of(c, p, st=None, at=H3):
    return settle_claim(c, p, at, BOOK, st or state())


def settled(c, p, st=None, at=H3):
    outcome = outcome_of(c, p, st, at)
    assert not isinstance(outcome, Rejection), outcome
    return outcome.settlement


def proc_info(s) -> str:
    return s.setldetail[0].setl_proc_info


# ---------------------------------------------------------------- 儿童脑瘫


def test_childrens_cerebral_palsy_is_paid_like_inpatient_care():
    """1800.00 at level 3: deductible 800.00, (1800.00 − 800.00) × 0.85 = 850.00."""
    s = settled(palsy("1800.00"), CHILD)
    assert (s.act_pay_dedc, s.hifp_pay, s.psn_part_amt) == (fen("800.00"), fen("850.00"), fen("950.00"))
    assert "门诊大病" in proc_info(s)


@pytest.mark.parametrize(("amount", "deductible", "pooling"), [
    ("799.99", "799.99", "0.00"),
    ("800.00", "800.00", "0.00"),
    ("800.01", "800.00", "0.01"),  # 0.01 × 0.85 = 0.0085 → 0.01 half-up
])
def test_its_annual_deductible_one_fen_either_side(amount, deductible, pooling):
    s = settled(palsy(amount), CHILD)
    assert (s.act_pay_dedc, s.hifp_pay) == (fen(deductible), fen(pooling))


# The deductible is used and 149150.00 of the 150000.00 fund cap: 850.00 left, which level 3's 0.85
# reaches on exactly 1000.00.
NEAR_CAP = state(y2023=YearTotals(major_deductible_used=fen("800.00"), fund_cap_used=fen("149150.00")))


@pytest.mark.parametrize(("amount", "pooling", "hifob"), [
    ("999.99", "849.99", "0.00"),  # 999.99 × 0.85 = 849.9915 → 849.99
    ("1000.00", "850.00", "0.00"),  # exactly the 850.00 left
    ("1000.01", "850.00", "0.01"),  # capped; 1000.01 − 850.00 / 0.85 = 0.01 above, × 0.90 → 0.01 大额
])
def test_the_annual_fund_cap_one_fen_either_side(amount, pooling, hifob):
    s = settled(palsy(amount), CHILD, NEAR_CAP)
    assert (s.act_pay_dedc, s.hifp_pay, s.hifob_pay) == (0, fen(pooling), fen(hifob))


@pytest.mark.parametrize(("brdy", "recognised"), [
    ("2005-06-02", True),  # 17 on 2023-06-01: the day before the 18th birthday
    ("2005-06-01", False),  # 18 on the claim's day
    ("2005-05-31", False),  # 18 and a day
])
def test_the_age_limit_one_day_either_side(brdy, recognised):
    """儿童: below 18 full years on the claim's date; from then the diagnosis is not recognised and
    the visit is general outpatient (Erenhot: unrecognised = general; 1800.00 − 1000.00 deductible,
    × 0.60 at level 3 = 480.00)."""
    s = settled(palsy("1800.00"), person(chronic_diseases=("G80.1",), brdy=brdy))
    if recognised:
        assert (s.act_pay_dedc, s.hifp_pay) == (fen("800.00"), fen("850.00"))
    else:
        assert (s.act_pay_dedc, s.hifp_pay) == (fen("1000.00"), fen("480.00"))
        assert "below age 18; this person is 18" in proc_info(s) and "general outpatient" in proc_info(s)


def test_the_age_is_taken_on_the_claims_shanghai_date():
    """2023-05-31T17:00Z is 2023-06-01 01:00 in Asia/Shanghai: the 18th birthday there."""
    at_midnight = palsy("1800.00", setl_time=palsy("1.00").setl_time.fromisoformat("2023-05-31T17:00:00+00:00"))
    s = settled(at_midnight, person(chronic_diseases=("G80.1",), brdy="2005-06-01"))
    assert s.hifp_pay == fen("480.00")


@pytest.mark.parametrize(("day", "age_note"), [("2026-02-28", None), ("2026-03-01", "is 18")])
def test_a_leap_day_birthday_comes_of_age_on_the_first_of_march(day, age_note):
    c = palsy("1800.00", setl_time=palsy("1.00").setl_time.fromisoformat(f"{day}T10:00:00+08:00"))
    s = settled(c, person(chronic_diseases=("G80.1",), brdy="2008-02-29"))
    assert (age_note is None) == ("below age 18" not in proc_info(s))


def test_without_a_birth_date_the_beian_decides():
    s = settled(palsy("1800.00"), person(chronic_diseases=("G80.1",)))
    assert s.hifp_pay == fen("850.00")


def test_not_enrolled_it_is_general_outpatient_as_before():
    s = settled(palsy("1800.00"), person(brdy="2015-03-10"))
    assert s.hifp_pay == fen("480.00") and "not a recognised (备案)" in proc_info(s)


@pytest.mark.parametrize("bad", ["2015-02-30", "2015-3-10", "20150310"])
def test_a_birth_date_that_is_no_date_is_refused(bad):
    with pytest.raises(ValidationError, match="brdy"):
        person(brdy=bad)


# ---------------------------------------------------------------- 日间手术


def test_day_surgery_is_recognised_by_the_procedure_alone():
    """No 备案 and no diagnosis: 13.41 (白内障超声乳化, on the sample list) at level 3, 1800.00:
    deductible 800.00, (1800.00 − 800.00) × 0.85 = 850.00; at level 1 × 0.90 = 900.00."""
    s = settled(day_surgery("1800.00"), ANYONE)
    assert (s.act_pay_dedc, s.hifp_pay, s.med_type) == (fen("800.00"), fen("850.00"), "14")
    assert "日间手术 13.41" in proc_info(s)
    assert settled(day_surgery("1800.00"), ANYONE, at=H1).hifp_pay == fen("900.00")


@pytest.mark.parametrize(("amount", "deductible", "pooling"), [
    ("799.99", "799.99", "0.00"),
    ("800.00", "800.00", "0.00"),
    ("800.01", "800.00", "0.01"),
])
def test_day_surgery_deductible_one_fen_either_side(amount, deductible, pooling):
    s = settled(day_surgery(amount), ANYONE)
    assert (s.act_pay_dedc, s.hifp_pay) == (fen(deductible), fen(pooling))


@pytest.mark.parametrize(("amount", "pooling", "hifob"), [
    ("999.99", "849.99", "0.00"), ("1000.00", "850.00", "0.00"), ("1000.01", "850.00", "0.01")])
def test_day_surgery_fund_cap_one_fen_either_side(amount, pooling, hifob):
    s = settled(day_surgery(amount), ANYONE, NEAR_CAP)
    assert (s.act_pay_dedc, s.hifp_pay, s.hifob_pay) == (0, fen(pooling), fen(hifob))


def test_day_surgery_shares_the_major_diseases_annual_deductible():
    """参照住院待遇: one 门诊大病 deductible a year, whichever disease or procedure used it."""
    first = settle_claim(palsy("800.00"), CHILD, H3, BOOK, state())
    then = settled(day_surgery("1000.00"), CHILD, first.state)
    assert (then.act_pay_dedc, then.hifp_pay) == (0, fen("850.00"))


def test_a_listed_procedure_on_a_general_outpatient_claim_is_refused():
    outcome = outcome_of(day_surgery("1800.00", med_type="11"), ANYONE)
    assert isinstance(outcome, Rejection) and outcome.err_code == "INVALID_CLAIM"
    assert "oprn_oprt_code 13.41" in outcome.err_msg and "med_type 14" in outcome.err_msg


def test_day_surgery_at_a_pharmacy_is_refused():
    outcome = outcome_of(day_surgery("1800.00"), ANYONE, at=PHARMACY)
    assert isinstance(outcome, Rejection) and outcome.err_code == "INVALID_CLAIM" and "RX-P" in outcome.err_msg


def test_an_unlisted_procedure_changes_nothing():
    general = claim(line("1800.00"))
    assert settled(general.model_copy(update={"oprn_oprt_code": "99.99"}), ANYONE) == settled(general, ANYONE)
    major = palsy("1800.00")
    assert settled(major.model_copy(update={"oprn_oprt_code": "99.99"}), CHILD) == settled(major, CHILD)
    bare = outcome_of(day_surgery("1800.00", code="99.99"), ANYONE)
    assert isinstance(bare, Rejection) and "dise_codg" in bare.err_msg


def test_a_procedure_on_an_inpatient_claim_changes_nothing():
    """An admission (med_type 21) is inpatient care whatever it names: 800.00 per admission at level 3."""
    stay = claim(line("1800.00"), med_type="21")
    with_code = settled(stay.model_copy(update={"oprn_oprt_code": "13.41"}), ANYONE)
    assert with_code == settled(stay, ANYONE) and with_code.med_type == "21"


def test_a_region_without_a_day_surgery_list_settles_the_diagnosis():
    """Seed 000's province names day surgery only as a way of paying (按病种付费): no list, so the
    code is inert and the diagnosis decides (N18.5 dialysis: the province's 门诊大病)."""
    p = person(region=PROVINCE, chronic_diseases=("N18.5",))
    h3 = institution("PH3", "3", admdvs=PROVINCE)
    with_code = claim(line("1800.00"), fixmedins_code="PH3", med_type="14", dise_codg="N18.5")
    assert (settled(with_code.model_copy(update={"oprn_oprt_code": "13.41"}), p, at=h3)
            == settled(with_code, p, at=h3))


# ---------------------------------------------------------------- batches


def _stream():
    """A child's palsy claims, a day surgery, the child's registry entry gaining a birth date that
    makes them 18 mid-stream, and the same claim again under a new id."""
    child = person("C", chronic_diseases=("G80.1",), brdy="2015-03-10")
    grown = person("C", chronic_diseases=("G80.1",), brdy="2005-06-01")
    c = palsy("1800.00", psn_no="C")
    return [H3, child, c.model_copy(update={"claim_id": "D1"}),
            day_surgery("1000.00", psn_no="C", claim_id="D2"), grown,
            c.model_copy(update={"claim_id": "D3"})]


@pytest.mark.parametrize("size", [2, 3, 6])
def test_the_service_settles_it_alike_in_any_batch(size):
    events = _stream()
    one = asyncio.run(settled_in_batches(events, 1, BOOK))
    assert [(kind, wire.get("hifp_pay")) for kind, wire in one] == [
        ("settlement", Decimal("850.00")),  # palsy: 800.00 deductible, 1000.00 × 0.85
        ("settlement", Decimal("850.00")),  # day surgery, deductible used: 1000.00 × 0.85
        ("settlement", Decimal("480.00")),  # 18 now: general outpatient, 800.00 × 0.60
    ]
    assert asyncio.run(settled_in_batches(events, size, BOOK)) == one
