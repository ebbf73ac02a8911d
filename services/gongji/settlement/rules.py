"""The settlement rules: POLICY.md §2–8 as pure functions (the basic pooling fund in pooling.py).

State and event in, new state and result out. The streaming service and `gongji replay` both call
these and nothing else computes money, so there is one implementation of the arithmetic.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from gongji.common.money import mul_round, yuan_text
from gongji.contract.wire import ACCOUNT, ASSISTANCE, CIVIL_SERVANT, LARGE_AMOUNT, MULAID_RELATIONS, POOLING, SHANGHAI
from gongji.settlement.catalogue import Versions, classify
from gongji.settlement.domain import (ClaimRecord, CreditApplied, Effects, PersonState, Rejection, Settlement,
                                      new_credit_applied, new_effects, new_person_state, new_setl_detail,
                                      new_settlement, positional)
from gongji.settlement.events import Claim, Credit, Institution, Person, Reversal
from gongji.settlement.policy import PolicyBook, PolicyVersion
from gongji.settlement.pooling import basic_pooling, split_lines

COVERED_INSUTYPES = ("310",)  # 职工基本医疗保险


_FOUR_PLACES = Decimal("0.0001")  # pool_prop_selfpay: decimal(6,4) on the wire


def setl_id_for(claim_id: str) -> str:
    """Deterministic settlement id, so a resend maps to the same setl_id."""
    return "SETL" + hashlib.blake2b(claim_id.encode(), digest_size=12).hexdigest().upper()


# ---------------------------------------------------------------- outcomes


@dataclass(frozen=True, slots=True)
class ClaimSettled:
    settlement: Settlement
    state: PersonState
    effects: Effects


@dataclass(frozen=True, slots=True)
class ClaimReversed:
    settlement: Settlement
    state: PersonState
    # The original's family-account payment to give back to its holder, if any.
    refund_holder: str | None
    refund_amount: int


@dataclass(frozen=True, slots=True)
class AccountCredited:
    result: CreditApplied
    state: PersonState


new_claim_settled = positional(ClaimSettled)
new_account_credited = positional(AccountCredited)


# Credit.first_day by the credit's ym: a year's credits name twelve months (ym is yyyy-MM, so at most
# 120,000 of them ever)
_FIRST_DAYS: dict[str, date] = {}


def _reject(code, message: str, psn_no: str | None, **ids) -> Rejection:
    return Rejection(err_code=code, err_msg=message, psn_no=psn_no, **ids)


def policy_for(
    person: Person, insutype: str, day, book: PolicyBook, ids: dict, input_type: str
) -> PolicyVersion | Rejection:
    """The insured region's policy in force on `day`, or why the person cannot be settled:
    NOT_INSURED only for a real suspension (psn_insu_stas not "1"); NO_POLICY when this service
    has no policy for the insurance type, the insured region or the day."""
    if not person.active:
        return _reject("NOT_INSURED", f"person {person.psn_no} has insurance status "
                       f"{person.psn_insu_stas!r}: benefits are suspended", person.psn_no, input_type=input_type, **ids)
    if insutype not in COVERED_INSUTYPES or person.insutype != insutype:
        return _reject("NO_POLICY", f"no settlement policy for insurance type {insutype!r} (the person is insured "
                       f"under {person.insutype!r}; settled here: {', '.join(COVERED_INSUTYPES)})", person.psn_no,
                       input_type=input_type, **ids)
    version = book.in_force(person.insu_admdvs, day)
    if version is None:
        region = book.region(person.insu_admdvs)
        reason = (f"its first policy takes effect on {region.versions[0].effective_from}" if region is not None
                  else "there is no policy file for the region")
        return _reject("NO_POLICY", f"no settlement policy for insured region {person.insu_admdvs} on {day}: {reason}",
                       person.psn_no, input_type=input_type, **ids)
    return version


# ---------------------------------------------------------------- §3–6 settle a claim


def _layer(base: int, deductible_total: int, deductible_used: int, ratio: Decimal, cap: int, paid: int):
    """One layer above basic insurance on `base`: (payment, deductible now, cap left before)."""
    deductible = min(base, max(0, deductible_total - deductible_used))
    cap_left = max(0, cap - paid)
    return min(mul_round(base - deductible, ratio), cap_left), deductible, cap_left


def _preferential(rules, burden: int, totals) -> tuple[int, int, str]:
    """倾斜救助 (seed 003: "For the relief objects who still have a heavy personal burden after being
    guaranteed by the triple system, the local government shall give preferential assistance"):
    `burden`, the claim's in-scope burden left after the three layers, counts towards the year's
    heavy-burden line; above it, `ratio` up to a limit of its own (policy.Preferential). Paid by the
    assistance fund (in maf_pay and its 610100 row; maf_pref_pay says how much of it)."""
    pref, below, cap_left = _layer(burden, rules.heavy_burden, totals.maf_pref_burden_used, rules.ratio,
                                   rules.annual_limit, totals.maf_pref_paid)
    return pref, below, (f"; 倾斜救助 {yuan_text(pref)}: {yuan_text(burden)} in scope left after the three layers, heavy "
                  f"above {yuan_text(rules.heavy_burden)} a year ({yuan_text(below)} of it now); ratio {rules.ratio}; "
                  f"annual limit {yuan_text(rules.annual_limit)}, {yuan_text(cap_left)} left")


def _code_of(person: Person, category, assistance) -> str | None:
    """The psn_idet_type code the claim's assistance category came from: the standing one, else the
    one granted on application (Assistance.category_on's order); None without a category."""
    if category is None:
        return None
    return person.psn_idet_type if assistance.category(person.psn_idet_type) is category else person.aid_idet_type


def settle_claim(
    claim: Claim,
    person: Person | None,
    institution: Institution | None,
    book: PolicyBook,
    state: PersonState,
    holder_available: int | None = None,
    prescriber: Institution | None = None,
    catalogue: Versions | None = None,
) -> ClaimSettled | Rejection:
    """Settle one claim against the person's state, layer by layer (保险在前、救助在后): basic
    pooling, then the large-amount and civil-servant subsidies, then medical assistance; then the
    personal account and family mutual aid.

    `holder_available` is what the family account holder's account can give to this claim
    (their balance plus anything already held for this very claim), or None when the person has
    no usable holder. `prescriber` is the registry's entry for `claim.rx_fixmedins_code` (双通道), if
    the claim names one and the registry has it. `catalogue`: the treatment region's catalogue entries
    for the claim's items (gongji.settlement.catalogue), which classify the lines that leave it out
    and check those that carry it.
    """
    ids = {"claim_id": claim.claim_id}
    if person is None:
        return _reject("UNKNOWN_PERSON", f"person {claim.psn_no} is not in the person registry (yet); "
                       "send the person event, then resend the claim", claim.psn_no, input_type="claim", **ids)
    if institution is None:
        return _reject("UNKNOWN_INSTITUTION", f"institution {claim.fixmedins_code} is not in the institution "
                       "registry (yet); send the institution event, then resend the claim", claim.psn_no,
                       input_type="claim", **ids)
    local_time = claim.setl_time.astimezone(SHANGHAI)
    day = local_time.date()
    version = policy_for(person, claim.insutype, day, book, ids, "claim")
    if isinstance(version, Rejection):
        return version
    if claim.med_type not in version.med_types:
        return _reject("UNSUPPORTED_MED_TYPE", f"med_type {claim.med_type!r} is not settled under the policy of "
                       f"region {person.insu_admdvs} (settled: {', '.join(version.med_types)})", claim.psn_no,
                       input_type="claim", **ids)

    # 就医地目录: the treatment region's catalogue in force on the claim's date
    claim = classify(claim, institution.admdvs, catalogue or {}, day)
    if isinstance(claim, Rejection):
        return claim
    split = split_lines(claim.fee_details)
    year = local_time.year
    totals = state.year(year)
    basic = basic_pooling(claim, person, institution, version, split, totals, prescriber)
    if isinstance(basic, Rejection):
        return basic
    pooling = basic.pooling
    details = [new_setl_detail(POOLING, pooling, basic.limit_left, "; ".join(basic.notes))]
    inpatient_like = basic.kind == "inpatient" or basic.kind == "major"

    # §6 职工大额医疗费用补助 on the in-scope amount above the basic fund's cap
    hifob = hifob_deductible = 0
    if inpatient_like and version.large_amount is not None and basic.over_cap:
        rules = version.large_amount
        hifob, hifob_deductible, cap_left = _layer(basic.over_cap, rules.annual_deductible,
                                                   totals.hifob_deductible_used, rules.ratio, rules.annual_cap,
                                                   totals.hifob_paid)
        details.append(new_setl_detail(LARGE_AMOUNT, hifob, cap_left,
                                  f"职工大额医疗费用补助: {yuan_text(basic.over_cap)} in scope above the basic cap; "
                                  f"deductible {yuan_text(hifob_deductible)} now; ratio {rules.ratio}; "
                                  f"annual cap {yuan_text(rules.annual_cap)}, {yuan_text(cap_left)} left"))
    # §6 公务员医疗补助 on the in-scope burden left, for persons entitled to it
    cvlserv = cvlserv_deductible = 0
    if inpatient_like and version.civil_servant is not None and person.cvlserv_flag == "1":
        rules = version.civil_servant
        base = split.inscp - pooling - hifob
        cvlserv, cvlserv_deductible, cap_left = _layer(base, rules.annual_deductible,
                                                       totals.cvlserv_deductible_used, rules.ratio,
                                                       rules.annual_cap, totals.cvlserv_paid)
        details.append(new_setl_detail(CIVIL_SERVANT, cvlserv, cap_left,
                                  f"公务员医疗补助: {yuan_text(base)} in scope left after insurance; deductible "
                                  f"{yuan_text(cvlserv_deductible)} now; ratio {rules.ratio}; "
                                  f"annual cap {yuan_text(rules.annual_cap)}, {yuan_text(cap_left)} left"))
    # §6 医疗救助, after insurance: the in-scope burden left, including what fell under deductibles
    maf = maf_deductible = pref = pref_burden = 0
    assistance = version.assistance
    category = assistance.category_on(person, day) if assistance is not None else None
    if category is not None and basic.kind != "general" and claim.med_type in assistance.med_types:
        base = split.inscp - pooling - hifob - cvlserv
        deductible_total = mul_round(assistance.per_capita_disposable_income, category.deductible_share)
        maf, maf_deductible, cap_left = _layer(base, deductible_total, totals.maf_deductible_used, category.ratio,
                                               assistance.annual_limit, totals.maf_paid)
        tilt = ""
        if assistance.preferential is not None:
            pref, pref_burden, tilt = _preferential(assistance.preferential, base - maf, totals)
        details.append(new_setl_detail(ASSISTANCE, maf + pref, cap_left,
                                  f"医疗救助 ({category.name}): {yuan_text(base)} in scope left after insurance; "
                                  f"deductible {yuan_text(deductible_total)} a year, {yuan_text(maf_deductible)} now; ratio "
                                  f"{category.ratio}; annual relief limit {yuan_text(assistance.annual_limit)}, "
                                  f"{yuan_text(cap_left)} left" + tilt))

    fund_total = pooling + hifob + cvlserv + maf + pref
    personal = split.medfee - fund_total

    # §4 personal account, then family mutual aid (家庭共济) for what is left of the eligible burden
    acct_pay = mulaid = 0
    if claim.acct_used_flag == "1":
        eligible = max(0, personal - split.non_medical)
        acct_pay = min(eligible, state.balance)
        if holder_available is not None and person.mulaid_holder_psn_no:
            mulaid = min(eligible - acct_pay, max(0, holder_available))
    cash = personal - acct_pay - mulaid
    balance_after = state.balance - acct_pay
    if acct_pay:
        details.append(new_setl_detail(ACCOUNT, acct_pay, state.balance,
                                  f"个人账户: own account, balance {yuan_text(state.balance)} before"))
    if mulaid:
        details.append(new_setl_detail(ACCOUNT, mulaid, holder_available,
                                  f"家庭共济: account of {person.mulaid_relation} {person.mulaid_holder_psn_no}, "
                                  f"{yuan_text(holder_available)} available"))

    holder = person.mulaid_holder_psn_no if mulaid else None
    # Every field, in order (domain.positional)
    settlement = new_settlement(
        claim.claim_id, setl_id_for(claim.claim_id), claim.psn_no, claim.mdtrt_id, claim.med_type,
        person.psn_type, person.insu_admdvs, institution.admdvs, institution.fixmedins_code,
        claim.setl_time.isoformat(), split.medfee, split.fulamt_ownpay, split.overlmt, split.preselfpay,
        split.inscp, basic.deductible, pooling, basic.ratio.quantize(_FOUR_PLACES), hifob, cvlserv, maf + pref,
        0, fund_total, personal, acct_pay, mulaid, cash, balance_after,
        # clr_type, clr_optins: the treatment region's agency advances the fund payment, clears it later (§7)
        claim.med_type, institution.admdvs, tuple(details), None, None, None, holder,
        _code_of(person, category, assistance), pref,
    )
    effects = new_effects(
        year, basic.general_deductible, basic.outpatient_pool, basic.fund_cap, 1, split.medfee, acct_pay, holder,
        mulaid, basic.chronic_group, basic.chronic_deductible, basic.chronic_pool, basic.major_deductible,
        hifob_deductible, hifob, cvlserv_deductible, cvlserv, maf_deductible, maf, pref_burden, pref,
    )
    years = dict(state.years)
    years[year] = totals.plus(effects)
    return new_claim_settled(settlement, new_person_state(state.token, balance_after, years, state.pending, state.kept_from,
                                                state.first_year), effects)


# ---------------------------------------------------------------- §8 reversal


_NEGATED = (
    "medfee_sumamt", "fulamt_ownpay_amt", "overlmt_selfpay", "preselfpay_amt", "inscp_scp_amt", "act_pay_dedc",
    "hifp_pay", "hifob_pay", "cvlserv_pay", "maf_pay", "oth_pay", "fund_pay_sumamt", "psn_part_amt",
    "acct_pay", "acct_mulaid_pay", "psn_cash_pay", "maf_pref_pay",
)


def reverse_claim(reversal: Reversal, original: ClaimRecord | None, state: PersonState) -> ClaimReversed | Rejection:
    """Undo exactly what the original consumed, in the original's year (POLICY.md §8)."""
    ids = {"claim_id": reversal.claim_id}
    if original is None or original.settlement.is_reversal or original.settlement.psn_no != reversal.psn_no:
        return _reject("UNKNOWN_ORIGINAL", f"no settled claim {reversal.orig_claim_id} for person "
                       f"{reversal.psn_no} to reverse", reversal.psn_no, input_type="reversal", **ids)
    # A 2208 cannot precede its 2207 (CONTRACT.md): judged before ALREADY_REVERSED, so the answer
    # does not depend on which of two reversals arrived first.
    if reversal.setl_time < datetime.fromisoformat(original.settlement.setl_time):
        return _reject("REVERSAL_BEFORE_ORIGINAL", f"reversal dated {reversal.setl_time.isoformat()} precedes the "
                       f"claim it reverses, {reversal.orig_claim_id}, settled {original.settlement.setl_time}; "
                       "send it with the time it was made", reversal.psn_no, input_type="reversal", **ids)
    if original.reversed_by is not None:
        return _reject("ALREADY_REVERSED", f"claim {reversal.orig_claim_id} was already reversed by "
                       f"{original.reversed_by}", reversal.psn_no, input_type="reversal", **ids)
    effects = original.effects
    years = dict(state.years)
    years[effects.year] = state.year(effects.year).plus(effects, sign=-1)
    balance = state.balance + effects.acct_pay
    orig = original.settlement
    negated = {name: -getattr(orig, name) for name in _NEGATED}
    settlement = dataclasses.replace(
        orig, **negated,
        claim_id=reversal.claim_id, setl_id=setl_id_for(reversal.claim_id), setl_time=reversal.setl_time.isoformat(),
        balc=balance,
        setldetail=tuple(dataclasses.replace(row, fund_payamt=-row.fund_payamt,
                                             setl_proc_info=f"2208 reversal of {orig.setl_id}: {row.setl_proc_info}")
                         for row in orig.setldetail),
        orig_claim_id=orig.claim_id, orig_setl_id=orig.setl_id, orig_setl_time=orig.setl_time,
    )
    return ClaimReversed(settlement, dataclasses.replace(state, balance=balance, years=years),
                         effects.mulaid_holder, effects.mulaid_pay)


# ---------------------------------------------------------------- §4 crediting


def apply_credit(credit: Credit, person: Person | None, book: PolicyBook, state: PersonState) -> AccountCredited | Rejection:
    """Credit a personal account: monthly by policy, or an explicit opening balance."""
    ids = {"credit_id": credit.credit_id}
    if person is None:
        return _reject("UNKNOWN_PERSON", f"person {credit.psn_no} is not in the person registry (yet); "
                       "send the person event, then resend the credit", credit.psn_no, input_type="credit", **ids)
    if credit.crdt_type == "opening":
        amount = credit.amount
    else:
        day = _FIRST_DAYS.get(credit.ym) or _FIRST_DAYS.setdefault(credit.ym, credit.first_day)
        version = policy_for(person, person.insutype, day, book, ids, "credit")
        if isinstance(version, Rejection):
            return version
        # In-service: 2% of the own contribution base; retired: rate × last year's average pension.
        rate = version.crediting.retired_rate if person.retired else version.crediting.in_service_rate
        amount = mul_round(credit.crdt_base, rate)
    balance = state.balance + amount
    return new_account_credited(
        new_credit_applied(credit.credit_id, credit.psn_no, credit.ym, amount, balance, person.insu_admdvs),
        new_person_state(state.token, balance, state.years, state.pending, state.kept_from, state.first_year),
    )


def check_person(person: Person) -> Rejection | None:
    """A person event naming a family account holder must name a spouse, parent or child."""
    if person.mulaid_holder_psn_no is None and person.mulaid_relation is None:
        return None
    if person.mulaid_holder_psn_no is None or person.mulaid_relation not in MULAID_RELATIONS:
        return _reject("MULAID_NOT_ALLOWED", f"family mutual aid (家庭共济) binds a spouse, parent or child only; "
                       f"got relation {person.mulaid_relation!r} for holder {person.mulaid_holder_psn_no!r}",
                       person.psn_no, input_type="person")
    if person.mulaid_holder_psn_no == person.psn_no:
        return _reject("MULAID_NOT_ALLOWED", "a person cannot be their own family account holder",
                       person.psn_no, input_type="person")
    return None


def check_binding(person: Person, holder: Person | None, claim_id: str) -> Rejection | None:
    """A claim drawing on a family account (家庭共济) is refused MULAID_NOT_ALLOWED unless its binding
    holds when the money moves: the holder is known and insured in the person's own insured region,
    and is no one's dependant themselves (one level: no chains, no cycles such as A→B→A).
    Checked here rather than when the person event arrives, because the registry's partitions give
    no order between a dependant's entry and their holder's."""
    why = None
    if holder is None:
        why = "is not in the registry (yet)"
    elif not holder.active:
        why = f"has insurance status {holder.psn_insu_stas!r} (not active)"
    elif holder.insu_admdvs != person.insu_admdvs:
        why = f"is insured in region {holder.insu_admdvs}, not in {person.insu_admdvs}"
    elif holder.mulaid_holder_psn_no is not None:
        why = "is bound to a family account of their own (one level only: no chains or cycles)"
    if why is None:
        return None
    return _reject("MULAID_NOT_ALLOWED", f"the family account holder this person is bound to {why}; "
                   "fix the binding in the registry, or send the claim with acct_used_flag 0",
                   person.psn_no, input_type="claim", claim_id=claim_id)
