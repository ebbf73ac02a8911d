"""Property tests of the settlement core: random persons, institutions, fee lines, balances, and random
sequences of claims and reversals for one person folded through the engine, as a store would.

Checked for every step: the CONTRACT.md identities, POLICY §2–4 bounds (no negative payment, hifp_pay
within the by-ratio amount and the caps, deductible within the annual deductible, account within the
eligible burden and the balance), POLICY §8 (reversing everything, in any order, gives back exactly the
initial state), and determinism.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from tests.unit.builders import BOOK, ERENHOT, PROVINCE, institution
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from gongji.common.money import mul_round, to_yuan, yuan_to_fen
from gongji.contract.wire import MONEY_FIELDS
from gongji.settlement.domain import ZERO_YEAR, ClaimRecord, PersonState, Rejection, Settlement, YearTotals
from gongji.settlement.events import Claim, Credit, FeeLine, Institution, Person, Reversal
from gongji.settlement.pooling import split_line, split_lines
from gongji.settlement.rules import (
    AccountCredited,
    ClaimReversed,
    ClaimSettled,
    apply_credit,
    reverse_claim,
    settle_claim,
)

pytestmark = pytest.mark.unit

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Every kind of institution: the engine takes the policy from the person's insured region, so one set
# serves both regions (and makes some claims cross-region, POLICY §7).
INSTITUTIONS: tuple[Institution, ...] = (
    institution("I3", "3"),
    institution("I3B", "3", admdvs=PROVINCE),
    institution("I2", "2"),
    institution("I1", "1", admdvs=PROVINCE),
    institution("G1", "1", grassroots=True, admdvs=PROVINCE),
    institution("G2", "2", grassroots=True),
    institution("PH", "1", pharmacy=True),
    institution("PHG", "1", pharmacy=True, grassroots=True, admdvs=PROVINCE),
)
CODES = tuple(inst.fixmedins_code for inst in INSTITUTIONS)
HOLDER = "H0"
ZONES = (timezone(timedelta(hours=8)), timezone.utc, timezone(timedelta(hours=-5)), timezone(timedelta(hours=9)))


def _policy(region: str, day: date = date(2023, 6, 1)):
    return BOOK.in_force(region, day)


def _cap(p: Person) -> int:
    return _policy(p.insu_admdvs).general_outpatient.annual_cap.for_person(p.retired)


def _fund_cap(p: Person) -> int | None:
    version = _policy(p.insu_admdvs)
    return version.annual_fund_cap if version.general_outpatient.counts_in_fund_cap else None


# ---------------------------------------------------------------- strategies


@st.composite
def fee_lines(draw, sn: str = "1") -> FeeLine:
    lv = draw(st.sampled_from(["01", "01", "02", "02", "03"]))
    # Unit price (positive): whole fen up to 2000 yuan, or a 2204 price with 6 places under 0.20 yuan.
    if draw(st.booleans()):
        price = Decimal(draw(st.integers(1, 200_000))).scaleb(-2)
    else:
        price = Decimal(draw(st.integers(1, 200_000))).scaleb(-6)
    cnt = Decimal(draw(st.sampled_from(["1", "1", "2", "3", "5", "10", "100", "0.5", "1.5", "0.25"])))
    exact = yuan_to_fen(price * cnt)
    # The HIS may be one fen off its own product (allowed slack).
    amount = max(0, exact + draw(st.sampled_from([0, 0, 0, 1, -1])))
    limit = None
    if draw(st.booleans()):
        limit = Decimal(draw(st.integers(0, int(price.scaleb(6)) * 2 + 1))).scaleb(-6)
    selfpay = None
    if lv == "02":
        selfpay = draw(st.sampled_from([None, "0", "0.05", "0.10", "0.15", "0.20", "0.3333", "1"]))
    non_med = draw(st.sampled_from([None, None, None, "0", "1"]))
    return FeeLine(
        feedetl_sn=sn, med_list_codg="X", list_type="101", chrgitm_lv=lv, det_item_fee_sumamt=to_yuan(amount),
        cnt=cnt, pric=price, pric_uplmt_amt=limit, selfpay_prop=selfpay, non_med_flag=non_med,
    )


@st.composite
def line_lists(draw) -> tuple[FeeLine, ...]:
    n = draw(st.integers(1, 5))
    return tuple(draw(fee_lines(sn=str(i + 1))) for i in range(n))


@st.composite
def persons(draw) -> Person:
    region = draw(st.sampled_from([ERENHOT, PROVINCE]))
    bound = draw(st.booleans())
    return Person(
        psn_no="P1", insutype="310", psn_type=draw(st.sampled_from(["1101", "1102", "1201", "1202"])),
        insu_admdvs=region, psn_insu_stas="1",
        fd_fixmedins_code=draw(st.sampled_from((None,) + CODES)),
        mulaid_holder_psn_no=HOLDER if bound else None,
        mulaid_relation=draw(st.sampled_from(["spouse", "parent", "child"])) if bound else None,
    )


@st.composite
def year_totals(draw, p: Person) -> YearTotals:
    cap = _cap(p)
    fund_cap = _fund_cap(p)
    # Often near a cap, so claims hit it mid-claim.
    pool = draw(st.one_of(st.just(0), st.integers(0, cap), st.integers(max(0, cap - 50_000), cap), st.just(cap)))
    if p.insu_admdvs == ERENHOT:
        deductible = draw(st.one_of(st.just(0), st.integers(0, 100_000), st.just(100_000), st.just(100_000)))
    else:
        deductible = draw(st.integers(0, 200_000))
    if fund_cap is not None:
        # fund_cap_used ≥ outpatient pooling (it includes it), often within a few hundred yuan of the cap
        near_fund_cap = st.integers(max(pool, fund_cap - 60_000), fund_cap)
        fund = draw(st.one_of(st.just(pool), st.integers(pool, fund_cap), near_fund_cap, near_fund_cap))
    else:
        fund = draw(st.integers(0, 20_000_000))
    return YearTotals(deductible_used=deductible, outpatient_pool_paid=pool, fund_cap_used=fund,
                      visits=draw(st.integers(0, 40)), medfee=draw(st.integers(0, 5_000_000)))


@st.composite
def person_states(draw, p: Person) -> PersonState:
    years = {}
    # Claims fall in 2023–2024 (usually with prior totals); a year outside must stay untouched.
    for year in (2022, 2023, 2024, 2025):
        if draw(st.integers(0, 3)) >= (1 if year in (2023, 2024) else 3):
            years[year] = draw(year_totals(p))
    return PersonState(token="t0", balance=draw(st.integers(0, 300_000)), years=years)


# Settlement times cluster in 2023–2024 so caps fill up within a year and year ends are crossed.
setl_times = st.datetimes(min_value=datetime(2023, 1, 1), max_value=datetime(2024, 12, 31, 23, 59),
                          timezones=st.sampled_from(ZONES))
year_end_times = st.sampled_from(["2023-12-31T23:30:00+08:00", "2023-12-31T17:00:00+00:00",
                                  "2024-01-01T00:30:00+09:00", "2023-12-31T12:00:00-05:00"])


@dataclass(frozen=True)
class ClaimOp:
    lines: tuple[FeeLine, ...]
    setl_time: str
    inst: Institution
    acct_used_flag: str
    med_type: str


@dataclass(frozen=True)
class ReverseOp:
    pick: int  # index into the claim ids sent so far
    unknown: bool  # name a claim that was never sent
    of_reversal: bool  # name an earlier reversal instead of a claim
    setl_time: str


@dataclass(frozen=True)
class Case:
    person: Person
    initial: PersonState
    holder_balance: int
    stray_available: int | None  # holder_available passed for a person without a holder
    ops: tuple[ClaimOp | ReverseOp, ...]


claim_ops = st.builds(
    ClaimOp,
    lines=line_lists(),
    setl_time=st.one_of(setl_times.map(datetime.isoformat), year_end_times),
    inst=st.sampled_from(INSTITUTIONS),
    acct_used_flag=st.sampled_from(["0", "1", "1"]),
    med_type=st.sampled_from(["11"] * 12 + ["41"]),  # 41: a type no shipped policy settles
)
reverse_ops = st.builds(
    ReverseOp,
    pick=st.integers(0, 30),
    unknown=st.sampled_from([False] * 6 + [True]),
    of_reversal=st.sampled_from([False] * 6 + [True]),
    setl_time=st.one_of(setl_times.map(datetime.isoformat), st.just("2026-02-01T08:00:00+08:00")),
)


@st.composite
def cases(draw, max_ops: int = 12) -> Case:
    p = draw(persons())
    ops = draw(st.lists(st.one_of(claim_ops, claim_ops, reverse_ops), min_size=1, max_size=max_ops))
    return Case(
        person=p, initial=draw(person_states(p)), holder_balance=draw(st.integers(0, 300_000)),
        stray_available=draw(st.one_of(st.none(), st.integers(0, 300_000))), ops=tuple(ops),
    )


# ---------------------------------------------------------------- checks


def assert_identities(s: Settlement) -> None:
    """CONTRACT.md: the identities every settlement (and reversal) satisfies."""
    assert s.medfee_sumamt == s.fulamt_ownpay_amt + s.overlmt_selfpay + s.preselfpay_amt + s.inscp_scp_amt
    assert s.medfee_sumamt == s.fund_pay_sumamt + s.psn_part_amt
    assert s.psn_part_amt == s.acct_pay + s.acct_mulaid_pay + s.psn_cash_pay
    # POLICY §3.5: fund_pay_sumamt = all fund payments
    assert s.fund_pay_sumamt == s.hifp_pay + s.hifob_pay + s.cvlserv_pay + s.maf_pay + s.oth_pay


def expected_ratio(p: Person, inst: Institution, day: date) -> Decimal:
    rules = BOOK.in_force(p.insu_admdvs, day).general_outpatient
    ratio = rules.ratio[inst.band].for_person(p.retired)
    if rules.family_doctor_bonus and p.fd_fixmedins_code == inst.fixmedins_code:
        ratio = min(Decimal(1), ratio + rules.family_doctor_bonus)
    return ratio


def check_settlement(op: ClaimOp, c: Claim, p: Person, before: PersonState, available: int | None,
                     out: ClaimSettled) -> None:
    s = out.settlement
    assert_identities(s)
    for name in MONEY_FIELDS:
        assert getattr(s, name) >= 0, name
    assert s.balc >= 0

    # POLICY §2: the totals are the sums of the per-line split
    split = split_lines(c.fee_details)
    assert (s.medfee_sumamt, s.fulamt_ownpay_amt, s.overlmt_selfpay, s.preselfpay_amt, s.inscp_scp_amt) == (
        split.medfee, split.fulamt_ownpay, split.overlmt, split.preselfpay, split.inscp)
    non_medical = sum(line.det_item_fee_sumamt for line in c.fee_details if line.non_med_flag == "1")

    local = c.setl_time.astimezone(timezone(timedelta(hours=8)))
    year = local.year
    assert out.effects.year == year
    totals = before.year(year)
    version = BOOK.in_force(p.insu_admdvs, local.date())
    rules = version.general_outpatient

    # POLICY §3.1 deductible
    assert 0 <= s.act_pay_dedc <= s.inscp_scp_amt
    if rules.deductible_mode == "annual":
        left = max(0, rules.annual_deductible - totals.deductible_used)
        assert s.act_pay_dedc == min(s.inscp_scp_amt, left)
    elif op.inst.grassroots:
        assert s.act_pay_dedc == 0
    else:
        assert s.act_pay_dedc == min(s.inscp_scp_amt, rules.per_visit_deductible[op.inst.band])

    # POLICY §3.2–3.4 ratio, by-ratio amount, caps
    ratio = expected_ratio(p, op.inst, local.date())
    assert s.pool_prop_selfpay == ratio and s.pool_prop_selfpay.as_tuple().exponent == -4
    by_ratio = mul_round(s.inscp_scp_amt - s.act_pay_dedc, s.pool_prop_selfpay)
    assert s.hifp_pay <= by_ratio
    cap_left = max(0, rules.annual_cap.for_person(p.retired) - totals.outpatient_pool_paid)
    assert s.hifp_pay <= cap_left
    limit = min(by_ratio, cap_left)
    if rules.counts_in_fund_cap:
        fund_left = max(0, version.annual_fund_cap - totals.fund_cap_used)
        assert s.hifp_pay <= fund_left
        limit = min(limit, fund_left)
        if fund_left < min(by_ratio, cap_left):
            event("annual fund cap binding")
    assert s.hifp_pay == limit
    if s.hifp_pay < by_ratio:
        event("pooling capped" + (" at zero" if s.hifp_pay == 0 else " mid-claim"))

    # POLICY §4 account and family mutual aid
    eligible = s.psn_part_amt - non_medical
    assert eligible >= 0
    assert s.acct_pay + s.acct_mulaid_pay <= eligible
    assert s.acct_pay <= before.balance
    assert s.balc == before.balance - s.acct_pay == out.state.balance
    if op.acct_used_flag == "0":
        assert s.acct_pay == 0 and s.acct_mulaid_pay == 0
    else:
        assert s.acct_pay == min(eligible, before.balance)
    if p.mulaid_holder_psn_no is None or available is None:
        assert s.acct_mulaid_pay == 0
    else:
        assert s.acct_mulaid_pay <= available
        if op.acct_used_flag == "1":
            assert s.acct_mulaid_pay == min(eligible - s.acct_pay, available)
    if s.acct_mulaid_pay:
        event("family mutual aid paid")

    # accumulators of the claim's year move by exactly what the claim consumed; other years stay
    after = out.state.year(year)
    assert after.deductible_used == totals.deductible_used + s.act_pay_dedc
    assert after.outpatient_pool_paid == totals.outpatient_pool_paid + s.hifp_pay
    assert after.fund_cap_used == totals.fund_cap_used + (s.hifp_pay if rules.counts_in_fund_cap else 0)
    assert after.visits == totals.visits + 1
    assert after.medfee == totals.medfee + s.medfee_sumamt
    for other in set(before.years) | set(out.state.years):
        if other != year:
            assert out.state.year(other) == before.year(other)


def check_state(case: Case, state: PersonState) -> None:
    """Bounds that hold after every step, given an initial state within them."""
    p = case.person
    assert state.balance >= 0
    cap = _cap(p)
    fund_cap = _fund_cap(p)
    for year, totals in state.years.items():
        for name in ("deductible_used", "outpatient_pool_paid", "fund_cap_used", "visits", "medfee"):
            assert getattr(totals, name) >= 0, (year, name)
        assert totals.outpatient_pool_paid <= cap
        if p.insu_admdvs == ERENHOT:
            assert totals.deductible_used <= 100_000  # 1000.00 annual deductible
            assert totals.fund_cap_used <= fund_cap
        else:
            # counts_in_fund_cap false: outpatient pooling never consumes the fund cap
            assert totals.fund_cap_used == case.initial.year(year).fund_cap_used


def normalised(state: PersonState) -> tuple:
    """A state as a value: a year whose totals are all zero is the same as an absent year."""
    return state.balance, {year: totals for year, totals in state.years.items() if totals != ZERO_YEAR}


# ---------------------------------------------------------------- the fold


@dataclass
class Run:
    outcomes: list
    state: PersonState
    store: dict[str, ClaimRecord]
    holder_balance: int
    live: list[str]  # settled and not reversed, in settlement order


def _claim(op: ClaimOp, claim_id: str, p: Person) -> Claim:
    return Claim(claim_id=claim_id, mdtrt_id="M" + claim_id, psn_no=p.psn_no, fixmedins_code=op.inst.fixmedins_code,
                 med_type=op.med_type, insutype="310", setl_time=op.setl_time, acct_used_flag=op.acct_used_flag,
                 fee_details=op.lines)


def reverse(run: Run, case: Case, target: str, reversal_id: str, setl_time: str) -> None:
    """Send a reversal of `target`, check it against what the store knows, and apply it."""
    original = run.store.get(target)
    r = Reversal(claim_id=reversal_id, orig_claim_id=target, psn_no=case.person.psn_no, setl_time=setl_time)
    before = run.state
    out = reverse_claim(r, original, before)
    run.outcomes.append(out)
    event(f"reversal: {out.err_code if isinstance(out, Rejection) else 'done'}")
    if original is None or original.settlement.is_reversal:
        assert isinstance(out, Rejection) and out.err_code == "UNKNOWN_ORIGINAL", out
        assert out.claim_id == reversal_id
        return
    if datetime.fromisoformat(setl_time) < datetime.fromisoformat(original.settlement.setl_time):
        # A 2208 cannot precede its 2207, whether or not the claim is reversed already.
        assert isinstance(out, Rejection) and out.err_code == "REVERSAL_BEFORE_ORIGINAL", out
        return
    if original.reversed_by is not None:
        assert isinstance(out, Rejection) and out.err_code == "ALREADY_REVERSED", out
        return
    assert isinstance(out, ClaimReversed), out
    s, o = out.settlement, original.settlement
    assert_identities(s)
    for name in MONEY_FIELDS:
        assert getattr(s, name) == -getattr(o, name), name
    assert (s.orig_claim_id, s.orig_setl_id, s.claim_id) == (o.claim_id, o.setl_id, reversal_id)
    assert s.pool_prop_selfpay == o.pool_prop_selfpay
    # POLICY §8: the original's year gives back exactly what the original consumed; other years untouched
    effects = original.effects
    assert out.state.year(effects.year) == before.year(effects.year).plus(effects, sign=-1)
    for other in set(before.years) | set(out.state.years):
        if other != effects.year:
            assert out.state.year(other) == before.year(other)
    assert out.state.balance == before.balance + o.acct_pay == s.balc
    assert out.refund_amount == o.acct_mulaid_pay
    assert out.refund_holder == (HOLDER if o.acct_mulaid_pay else None)
    run.holder_balance += out.refund_amount
    run.store[target] = dataclasses.replace(original, reversed_by=reversal_id)
    run.store[reversal_id] = ClaimRecord("fp-" + reversal_id, s, effects)
    run.live.remove(target)
    run.state = out.state


def fold(case: Case) -> Run:
    p = case.person
    run = Run(outcomes=[], state=case.initial, store={}, holder_balance=case.holder_balance, live=[])
    claims_sent: list[str] = []
    reversals_sent: list[str] = []
    for index, op in enumerate(case.ops):
        if isinstance(op, ClaimOp):
            claim_id = f"C{index}"
            claims_sent.append(claim_id)
            c = _claim(op, claim_id, p)
            available = run.holder_balance if p.mulaid_holder_psn_no else case.stray_available
            before = run.state
            out = settle_claim(c, p, op.inst, BOOK, before, available)
            run.outcomes.append(out)
            if op.med_type != "11":
                assert isinstance(out, Rejection) and out.err_code == "UNSUPPORTED_MED_TYPE", out
                assert run.state == before
                continue
            assert isinstance(out, ClaimSettled), out
            check_settlement(op, c, p, before, available, out)
            run.store[claim_id] = ClaimRecord("fp-" + claim_id, out.settlement, out.effects)
            run.live.append(claim_id)
            run.state = out.state
            if p.mulaid_holder_psn_no:
                run.holder_balance -= out.settlement.acct_mulaid_pay
        else:
            reversal_id = f"R{index}"
            pool = reversals_sent if op.of_reversal and reversals_sent else claims_sent
            target = f"NEVER{index}" if op.unknown or not pool else pool[op.pick % len(pool)]
            reversals_sent.append(reversal_id)
            reverse(run, case, target, reversal_id, op.setl_time)
        check_state(case, run.state)
        assert run.holder_balance >= 0
        check_model(case, run)
    return run


def check_model(case: Case, run: Run) -> None:
    """The state is the initial state plus the effects of the claims still standing, per year."""
    expected_years = {year: totals for year, totals in case.initial.years.items()}
    balance = case.initial.balance
    holder = case.holder_balance
    for claim_id in run.live:
        effects = run.store[claim_id].effects
        expected_years[effects.year] = expected_years.get(effects.year, ZERO_YEAR).plus(effects)
        balance -= effects.acct_pay
        if case.person.mulaid_holder_psn_no:
            holder -= effects.mulaid_pay
    assert normalised(run.state) == normalised(PersonState(balance=balance, years=expected_years))
    assert run.holder_balance == holder


# ---------------------------------------------------------------- properties


@SETTINGS
@given(lines=line_lists())
def test_line_split_identities(lines):
    """POLICY §2: every part non-negative; medfee = fulamt + overlmt + preselfpay + inscp per line and claim;
    overlmt never above the line amount; non-medical and 丙类 lines wholly fulamt_ownpay."""
    total = split_lines(lines)
    assert total.medfee == sum(line.det_item_fee_sumamt for line in lines)
    assert total.medfee == total.fulamt_ownpay + total.overlmt + total.preselfpay + total.inscp
    for line in lines:
        part = split_line(line)
        assert min(part.fulamt_ownpay, part.overlmt, part.preselfpay, part.inscp, part.non_medical) >= 0
        assert part.medfee == part.fulamt_ownpay + part.overlmt + part.preselfpay + part.inscp
        assert part.overlmt <= line.det_item_fee_sumamt
        if line.non_med_flag == "1" or line.chrgitm_lv == "03":
            assert part.fulamt_ownpay == line.det_item_fee_sumamt
            assert part.non_medical == (line.det_item_fee_sumamt if line.non_med_flag == "1" else 0)
        else:
            base = line.det_item_fee_sumamt - part.overlmt
            prop = line.selfpay_prop if line.chrgitm_lv == "02" and line.selfpay_prop is not None else Decimal(0)
            assert part.preselfpay == mul_round(base, prop)
            assert part.inscp == base - part.preselfpay


@SETTINGS
@given(data=st.data(), case=cases())
def test_folded_sequences_keep_every_invariant_and_reverse_to_the_initial_state(data, case):
    """Claims and reversals folded in order: every settlement checked (see check_settlement), every state
    within the caps; then reversing every standing claim, in any order, restores the initial state
    (POLICY §8), the holder's account included."""
    run = fold(case)
    order = data.draw(st.permutations(run.live), label="reversal order")
    for index, target in enumerate(order):
        reverse(run, case, target, f"UNDO{index}", "2026-03-01T09:00:00+08:00")
        check_state(case, run.state)
    assert run.live == []
    assert normalised(run.state) == normalised(case.initial)
    assert run.state.balance == case.initial.balance
    assert run.holder_balance == case.holder_balance
    # Every reversed claim now refuses a second reversal.
    for claim_id, kept in list(run.store.items()):
        if not kept.settlement.is_reversal:
            again = reverse_claim(Reversal(claim_id="AGAIN", orig_claim_id=claim_id, psn_no="P1",
                                           setl_time="2026-04-01T09:00:00+08:00"), kept, run.state)
            assert isinstance(again, Rejection) and again.err_code == "ALREADY_REVERSED"


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=cases())
def test_folding_twice_gives_identical_results(case):
    """Determinism: the same sequence from the same state gives the same settlements and state."""
    first, second = fold(case), fold(case)
    assert first.outcomes == second.outcomes
    assert first.state == second.state
    assert first.store == second.store
    assert first.holder_balance == second.holder_balance


@SETTINGS
@given(
    p=persons(),
    ym=st.sampled_from(["2022-10", "2022-12", "2023-01", "2023-07", "2024-12"]),
    base=st.integers(0, 5_000_000),
    balance=st.integers(0, 10_000_000),
    opening=st.one_of(st.none(), st.integers(0, 1_000_000)),
)
def test_crediting(p, ym, base, balance, opening):
    """POLICY §4 crediting: monthly = round(rate × base) by class and month; opening adds its amount;
    balc = balance + amount; no year accumulator changes."""
    years = {2023: YearTotals(visits=2, medfee=100)}
    before = PersonState(balance=balance, years=years)
    if opening is None:
        c = Credit(credit_id="K", psn_no="P1", ym=ym, crdt_type="monthly", crdt_base=to_yuan(base))
    else:
        c = Credit(credit_id="K", psn_no="P1", ym=ym, crdt_type="opening", amount=to_yuan(opening))
    out = apply_credit(c, p, BOOK, before)
    assert isinstance(out, AccountCredited), out
    if opening is None:
        crediting = BOOK.in_force(p.insu_admdvs, c.first_day).crediting
        rate = crediting.retired_rate if p.retired else crediting.in_service_rate
        if p.insu_admdvs == ERENHOT and p.retired:
            assert rate == (Decimal("0.03") if ym < "2023-01" else Decimal("0.02"))
        assert out.result.amount == mul_round(base, rate)
    else:
        assert out.result.amount == opening
    assert out.result.balc == balance + out.result.amount == out.state.balance
    assert out.state.years == years
