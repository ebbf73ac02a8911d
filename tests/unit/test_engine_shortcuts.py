"""The engine's shortcuts (issue 12) give what the plain spelling gives: the generated positional
constructors, YearTotals.plus written out, to_yuan by scaleb, the policy book's day cache and the
assistance category index. The whole engine's sameness is the replay's (test_replay_identical) and
the hand-worked cases'; these pin each shortcut on its own."""

from __future__ import annotations

import dataclasses
from datetime import date, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings, strategies as st

from gongji.common.money import CENT, to_yuan
from gongji.settlement import policy as policy_module
from gongji.settlement import rules
from gongji.settlement.domain import (ACCUMULATES, ClaimRecord, CreditApplied, CreditRecord, Effects, Output,
                                      PersonState, SetlDetail, Settlement, YearTotals, new_claim_record,
                                      new_credit_applied, new_credit_record, new_effects, new_output, new_person_state,
                                      new_setl_detail, new_settlement, new_year_totals, positional)
from gongji.settlement.policy import load_policy_book
from gongji.settlement.relief import BOTTOM_CODES, BOTTOM_NAMES, Assistance
from tests.unit.builders import BOOK, claim, institution, line, person, state

SETTINGS = settings(max_examples=300, deadline=None, derandomize=True)
BUILT = [(Settlement, new_settlement), (Effects, new_effects), (YearTotals, new_year_totals),
         (PersonState, new_person_state), (SetlDetail, new_setl_detail), (Output, new_output),
         (ClaimRecord, new_claim_record), (CreditRecord, new_credit_record), (CreditApplied, new_credit_applied),
         (rules.ClaimSettled, rules.new_claim_settled), (rules.AccountCredited, rules.new_account_credited)]


@pytest.mark.parametrize("cls, build", BUILT, ids=lambda item: getattr(item, "__name__", ""))
def test_positional_builds_what_the_constructor_builds(cls, build):
    names = [field.name for field in dataclasses.fields(cls)]
    values = [f"v{index}" if index % 3 else index for index in range(len(names))]
    built, plain = build(*values), cls(*values)
    assert type(built) is cls and built == plain and repr(built) == repr(plain)
    assert [getattr(built, name) for name in names] == values
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(built, names[0], "changed")
    with pytest.raises(TypeError):  # every field, no default: a missing one is an error, not a hole
        build(*values[:-1])


def test_positional_of_a_fresh_class():
    @dataclasses.dataclass(frozen=True, slots=True)
    class Pair:
        left: int
        right: int = 5

    assert positional(Pair)(1, 2) == Pair(1, 2) and positional(Pair)(1, 5) == Pair(1)


def _plus(totals: YearTotals, effects: Effects, sign: int) -> YearTotals:
    """YearTotals.plus as it was spelled before: ACCUMULATES, field by field."""
    values = {name: getattr(totals, name) + sign * getattr(effects, source) for name, source in ACCUMULATES.items()}
    deductibles, paid = dict(totals.chronic_deductible_used), dict(totals.chronic_paid)
    if effects.chronic_group is not None:
        group = effects.chronic_group
        deductibles[group] = deductibles.get(group, 0) + sign * effects.chronic_deductible
        paid[group] = paid.get(group, 0) + sign * effects.chronic_pool
    return YearTotals(**values, chronic_deductible_used=deductibles, chronic_paid=paid)


_amount = st.integers(min_value=-10**9, max_value=10**9)
_counts = st.dictionaries(st.sampled_from(["高血压", "糖尿病", "恶性肿瘤"]), _amount, max_size=2)


@SETTINGS
@given(totals=st.builds(YearTotals, *[_amount] * len(ACCUMULATES), _counts, _counts),
       effects=st.builds(Effects, st.integers(2000, 2100), *[_amount] * 6, st.none(), _amount,
                         st.sampled_from([None, "高血压", "糖尿病"]), *[_amount] * 11),
       sign=st.sampled_from([1, -1]))
def test_plus_is_the_field_by_field_sum(totals, effects, sign):
    assert totals.plus(effects, sign) == _plus(totals, effects, sign)


@SETTINGS
@given(st.one_of(st.integers(-10**6, 10**6), st.integers(-(10**20 - 1), 10**20 - 1)))
def test_to_yuan_is_the_division_quantized(fen):
    expected = (Decimal(fen) / Decimal(100)).quantize(CENT)
    assert to_yuan(fen).as_tuple() == expected.as_tuple() and str(to_yuan(fen)) == str(expected)


def test_to_yuan_of_zero_has_two_places():
    assert str(to_yuan(0)) == "0.00" and to_yuan(0).as_tuple().exponent == -2


def test_the_book_remembers_the_version_of_each_day(monkeypatch):
    book = load_policy_book()
    monkeypatch.setattr(policy_module, "_DAYS_REMEMBERED", 50)  # cleared many times over below
    for offset in range(-400, 1200, 7):
        day = date(2023, 1, 1) + timedelta(days=offset)
        for _ in range(2):  # the second time from what it remembered
            for region in (*book.regions, "110000"):
                policy = book.region(region)
                assert book.in_force(region, day) is (policy.in_force(day) if policy is not None else None)
    assert len(book._in_force) <= 50


def test_a_code_listed_twice_belongs_to_the_first_category():
    version = load_policy_book().in_force("152501", date(2023, 6, 1))
    data = version.assistance.model_dump()
    others = [index for index, category in enumerate(data["categories"])
              if category["name"] not in BOTTOM_NAMES and not BOTTOM_CODES.intersection(category["codes"])]
    first, later = others[0], others[-1]
    code = data["categories"][first]["codes"][0]
    data["categories"][later]["codes"].append(code)
    assistance = Assistance.model_validate(data)
    assert assistance.category(code) is assistance.categories[first]
    assert assistance.category(None) is None and assistance.category("no-such-code") is None


@pytest.mark.parametrize("balance, held, paid_by_holder", [("500.00", 30000, 0), ("20.00", 30000, 8000),
                                                          ("0.00", 0, 0)])
def test_the_holder_is_named_only_when_their_account_paid(balance, held, paid_by_holder):
    """mulaid_holder_psn_no (settlement and effects) names the family account holder only when the
    claim drew on their account: a dependant whose own account covers the claim, or whose holder has
    nothing, pays no family aid and names nobody."""
    dependant = person("P1", mulaid_holder_psn_no="H1", mulaid_relation="spouse")
    out = rules.settle_claim(claim(line("100.00"), acct_used_flag="1"), dependant, institution(), BOOK,
                             state(balance), holder_available=held)
    assert out.settlement.acct_mulaid_pay == out.effects.mulaid_pay == paid_by_holder
    named = "H1" if paid_by_holder else None
    assert out.settlement.mulaid_holder_psn_no == out.effects.mulaid_holder == named
