"""Continuity (seed 001, 三、4 政策衔接): "自治区出台新的门诊慢特病政策后,按自治区相关规定执行。不属于自治区规定
范围内的门诊慢特病病种,不再新增人员,已纳入人员可按照规定继续享受待遇" (and 实施方案 三、(二): "按照'老人老
办法、新人新办法'的原则,做好新旧政策衔接").

The region closes a disease with `recognition.closed_to_new` (diagnosis → the day it takes no new
persons). From that day a claim for it is recognised only for a person whose enrolment date
(`chronic_since`, 备案) is before it; they keep the group's terms of the version in force. A version
that drops a disease an earlier one recognised is refused at load.

The book here: Erenhot as shipped, plus a version from 2024-01-01 that closes 高血压 (I10, a 门诊慢特病
group: no deductible, 0.70 in service, annual limit 2000.00) and 重型精神病 (F20, a 门诊大病: 800.00 a
year, then 0.85 at level 3) to new persons. General outpatient (where an unrecognised diagnosis
goes in Erenhot): 1000.00 a year, then 0.60 at level 3. Figures worked by hand, in yuan.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path

import pytest
from pydantic import ValidationError
from tests.unit.builders import PROVINCE, claim, fen, institution, line, person, settled_in_batches, state

import gongji.settlement as settlement_package
from gongji.settlement.domain import Rejection, YearTotals
from gongji.settlement.policy import PolicyBook, PolicyError, load_policy_book, parse_policy
from gongji.settlement.rules import settle_claim

pytestmark = pytest.mark.unit

POLICIES = Path(settlement_package.__file__).parent / "policies"
ERENHOT_TEXT = (POLICIES / "152501.toml").read_text(encoding="utf-8")
PROVINCE_TEXT = (POLICIES / "990100.toml").read_text(encoding="utf-8")
CLOSING = """
[[versions]]
effective_from = 2024-01-01
[versions.recognition.closed_to_new]
"I10" = 2024-01-01
"F20" = 2024-01-01
"""
BOOK = PolicyBook([parse_policy(ERENHOT_TEXT + CLOSING, "tests: Erenhot closing I10 and F20"),
                   parse_policy(PROVINCE_TEXT + CLOSING, "tests: province closing I10 and F20")])
H3 = institution("H3", "3")
IN_2024 = "2024-03-01T10:00:00+08:00"


def enrolled(since: str | None, *diseases: str, **fields):
    diseases = diseases or ("I10",)
    dates = None if since is None else {code: since for code in diseases}
    return person(chronic_diseases=diseases, chronic_since=dates, **fields)


def hypertension(amount: str, setl_time: str = IN_2024, **update):
    return claim(line(amount), med_type="14", dise_codg="I10", setl_time=setl_time).model_copy(update=update)


def outcome_of(c, p, st=None, at=H3):
    return settle_claim(c, p, at, BOOK, st or state())


def settled(c, p, st=None, at=H3):
    outcome = outcome_of(c, p, st, at)
    assert not isinstance(outcome, Rejection), outcome
    return outcome.settlement


@pytest.mark.parametrize(("since", "kept"), [
    ("2023-12-31", True),  # the day before the closing day: 已纳入人员
    ("2024-01-01", False),  # on it: 不再新增人员
    ("2024-01-02", False),
])
def test_an_enrolment_before_the_closing_day_keeps_the_benefit(since, kept):
    """1000.00 for 高血压 in March 2024: kept, the group pays 1000.00 × 0.70 = 700.00; a new
    enrolment is not recognised and the visit is general outpatient: all 1000.00 deductible."""
    s = settled(hypertension("1000.00"), enrolled(since))
    if kept:
        assert (s.act_pay_dedc, s.hifp_pay) == (0, fen("700.00"))
        assert "门诊慢特病 高血压" in s.setldetail[0].setl_proc_info
        assert f"enrolled {since}: 已纳入人员继续享受待遇" in s.setldetail[0].setl_proc_info
    else:
        assert (s.act_pay_dedc, s.hifp_pay) == (fen("1000.00"), 0)
        assert "不再新增人员" in s.setldetail[0].setl_proc_info


def test_without_an_enrolment_date_a_closed_disease_is_not_recognised():
    s = settled(hypertension("1000.00"), enrolled(None))
    assert s.hifp_pay == 0 and "chronic_since" in s.setldetail[0].setl_proc_info


def test_before_the_closing_day_everyone_enrolled_is_recognised():
    """2023-12-31 23:59 in Asia/Shanghai (15:59 UTC): the 2023 version, nothing closed yet."""
    late = hypertension("1000.00", setl_time="2023-12-31T15:59:00+00:00")
    assert settled(late, enrolled(None)).hifp_pay == fen("700.00")
    assert settled(late, enrolled("2023-12-31")).hifp_pay == fen("700.00")
    # One minute later it is 2024-01-01 in Shanghai: closed.
    assert settled(hypertension("1000.00", setl_time="2023-12-31T16:00:00+00:00"), enrolled(None)).hifp_pay == 0


# 高血压's annual limit is 2000.00; 1300.00 paid: 700.00 left, which 0.70 reaches on exactly 1000.00.
NEAR_LIMIT = state(y2024=YearTotals(chronic_paid={"高血压": fen("1300.00")}))


@pytest.mark.parametrize(("amount", "pooling"), [
    ("999.99", "699.99"),  # 999.99 × 0.70 = 699.993 → 699.99
    ("1000.00", "700.00"),  # exactly the 700.00 left
    ("1000.01", "700.00"),  # 700.007 → 700.01 by ratio, capped at 700.00
])
def test_the_continued_group_keeps_its_annual_limit_one_fen_either_side(amount, pooling):
    s = settled(hypertension(amount), enrolled("2023-12-31"), NEAR_LIMIT)
    assert s.hifp_pay == fen(pooling)


@pytest.mark.parametrize(("amount", "deductible", "pooling"), [
    ("799.99", "799.99", "0.00"), ("800.00", "800.00", "0.00"), ("800.01", "800.00", "0.01")])
def test_a_continued_major_disease_keeps_its_deductible_one_fen_either_side(amount, deductible, pooling):
    """F20 (重型精神病, 门诊大病) closed too: enrolled before, paid like inpatient care (800.00 a year,
    then 0.85: 0.01 × 0.85 = 0.0085 → 0.01)."""
    c = claim(line(amount), med_type="14", dise_codg="F20", setl_time=IN_2024)
    s = settled(c, enrolled("2023-12-31", "F20"))
    assert (s.act_pay_dedc, s.hifp_pay) == (fen(deductible), fen(pooling))
    new = settled(c, enrolled("2024-01-01", "F20"))
    assert (new.act_pay_dedc, new.hifp_pay) == (fen(amount), 0)  # general outpatient: under its 1000.00


def test_other_diseases_take_new_persons_as_before():
    """糖尿病 (E11) is not closed: an enrolment of 2024 is recognised: 1000.00 × 0.70 = 700.00."""
    c = claim(line("1000.00"), med_type="14", dise_codg="E11", setl_time=IN_2024)
    assert settled(c, enrolled("2024-02-01", "E11")).hifp_pay == fen("700.00")


def test_where_unrecognised_diagnoses_are_refused_the_refusal_says_why():
    """The seed-000 province refuses med_type 14 claims for unrecognised diagnoses."""
    p = enrolled("2024-01-01", region=PROVINCE)
    h3 = institution("PH3", "3", admdvs=PROVINCE)
    outcome = settle_claim(hypertension("1000.00", fixmedins_code="PH3"), p, h3, BOOK, state())
    assert isinstance(outcome, Rejection) and outcome.err_code == "UNSUPPORTED_MED_TYPE"
    assert "不再新增人员" in outcome.err_msg and "2024-01-01" in outcome.err_msg
    kept = settle_claim(hypertension("1000.00", fixmedins_code="PH3"), enrolled("2023-12-31", region=PROVINCE),
                        h3, BOOK, state())
    assert not isinstance(kept, Rejection)


# ---------------------------------------------------------------- the policy file


def test_a_version_that_drops_a_recognised_disease_is_refused_at_load():
    """The lowered-policy mistake: restating the groups without 糖尿病 would end it for everyone enrolled."""
    dropping = ERENHOT_TEXT + """
[[versions]]
effective_from = 2024-01-01
[[versions.chronic.groups]]
name = "高血压"
diseases = ["I10"]
ratio = { in_service = "0.70", retired = "0.75" }
annual_limit = "2000.00"
"""
    with pytest.raises(PolicyError, match=r"tests: dropping: .*versions\.2: drops E11.*已纳入人员"):
        parse_policy(dropping, "tests: dropping")


def test_a_disease_may_move_between_a_group_and_the_major_list():
    moving = ERENHOT_TEXT + """
[[versions]]
effective_from = 2024-01-01
[versions.inpatient]
major_outpatient_diseases = ["Z51.1", "Z51.0", "Z94.0", "N18.5", "F20", "D66", "A15.0", "E11",
                             "G80", "G80.0", "G80.1", "G80.2", "G80.3", "G80.4", "G80.8", "G80.9"]
[[versions.chronic.groups]]
name = "高血压"
diseases = ["I10"]
ratio = { in_service = "0.70", retired = "0.75" }
annual_limit = "2000.00"
"""
    parse_policy(moving, "tests: moving")


@pytest.mark.parametrize("table", ["closed_to_new", "age_below"])
def test_a_condition_on_a_disease_the_version_does_not_list_is_refused(table):
    value = "2024-01-01" if table == "closed_to_new" else "18"
    text = ERENHOT_TEXT + f"""
[[versions]]
effective_from = 2024-01-01
[versions.recognition.{table}]
"I11" = {value}
"""
    with pytest.raises(PolicyError, match=rf"recognition\.{table}: I11 is in no chronic group"):
        parse_policy(text, "tests: typo")


def test_the_shipped_files_close_nothing():
    book = load_policy_book()
    for region in book.regions:
        for version in book.region(region).versions:
            assert version.recognition.closed_to_new == {}


# ---------------------------------------------------------------- the registry


def test_an_enrolment_date_for_a_disease_not_recognised_is_refused():
    with pytest.raises(ValidationError, match="chronic_since: E11 not in chronic_diseases"):
        person(chronic_diseases=("I10",), chronic_since={"E11": "2023-01-01"})


@pytest.mark.parametrize("bad", ["2023-02-29", "2023-1-01", "yesterday"])
def test_an_enrolment_date_that_is_no_date_is_refused(bad):
    with pytest.raises(ValidationError, match="chronic_since"):
        person(chronic_diseases=("I10",), chronic_since={"I10": bad})


# ---------------------------------------------------------------- batches


def _stream():
    """The registry learns a person's enrolment date mid-stream: the same closed-disease claim is
    general outpatient before it and the continued group after it."""
    undated, dated = enrolled(None, psn_no="Q"), enrolled("2023-05-01", psn_no="Q")
    c = hypertension("1000.00", psn_no="Q")
    return [H3, undated, c.model_copy(update={"claim_id": "K1"}), dated, c.model_copy(update={"claim_id": "K2"}),
            c.model_copy(update={"claim_id": "K3"})]


@pytest.mark.parametrize("size", [2, 3, 6])
def test_the_service_settles_it_alike_in_any_batch(size):
    events = _stream()
    one = asyncio.run(settled_in_batches(events, 1, BOOK))
    assert [(wire["act_pay_dedc"], wire["hifp_pay"]) for _, wire in one] == [
        (Decimal("1000.00"), Decimal("0.00")),  # not recognised: general outpatient's deductible
        (Decimal("0.00"), Decimal("700.00")),  # continued: 1000.00 × 0.70
        (Decimal("0.00"), Decimal("700.00")),
    ]
    assert asyncio.run(settled_in_batches(events, size, BOOK)) == one
