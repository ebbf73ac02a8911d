"""The gateway's questions, answered from the state without writing anything, pure: a pre-settlement
(2206) is a claim priced by the same rules as a 2207, on the person's state as the events before it
leave it; an accumulator query (5206) reads a person's year and the policy's annual limits.

Planning (gongji.settlement.planning) hands each question the pass's overlay and takes back only an
answer: no commit, no hold, no change to the overlay, so nothing after it in the batch sees it.
"""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING

from gongji.common.money import mul_round
from gongji.settlement.domain import Accumulators, Cumulative, Output, PersonState, Rejection
from gongji.settlement.events import AccumulatorQuery, Person, PreSettlement

if TYPE_CHECKING:
    from gongji.settlement.policy import PolicyBook, PolicyVersion


def answer(event: PreSettlement | AccumulatorQuery, links: tuple[str | None, str | None] | None, pass_) -> Output:
    """The answer to a question, on `pass_` (planning's overlay: the states, registry and family
    accounts as the events before it in the batch leave them), which it does not change."""
    person = pass_.snap.persons.get(event.psn_no)
    state = pass_.states[event.psn_no]
    if isinstance(event, AccumulatorQuery):
        return Output(event.psn_no, accumulators(event, person, pass_.book, state))
    holder = links[0] if links else None
    account = (holder, event.psn_no, event.claim_id)
    holds = pass_.holds
    family = holder is not None and holds.known(account)
    refused = pass_.rules.check_binding(person, holds.views[account].person, event.claim_id) \
        if family and person.active else None
    outcome = refused or pass_.rules.settle_claim(
        event, person, pass_.snap.institutions.get(event.fixmedins_code), pass_.book, state,
        holds.available(account) if family else None,
        prescriber=pass_.snap.institutions.get(event.rx_fixmedins_code) if event.rx_fixmedins_code else None)
    if isinstance(outcome, Rejection):
        return Output(event.psn_no, outcome)
    return Output(event.psn_no, outcome.settlement)


def _row(code: str, name: str, used: int, limit: int | None) -> Cumulative:
    return Cumulative(code, name, used, limit, None if limit is None else max(0, limit - used))


def accumulators(query: AccumulatorQuery, person: Person | None, book: PolicyBook,
                 state: PersonState) -> Accumulators | Rejection:
    """A person's accumulators for `query.year`, with the annual limits of the insured region's policy
    in force on 31 December of that year (the latest version for the current year): one row per
    accumulator the engine keeps, a layer's rows where the policy has the layer (or something was
    accumulated in it)."""
    if person is None:
        return Rejection("UNKNOWN_PERSON", f"person {query.psn_no} is not in the person registry (yet)",
                         query.psn_no, claim_id=query.query_id, input_type="accumulator-query")
    totals = state.year(query.year)
    version = book.in_force(person.insu_admdvs, date(query.year, 12, 31))
    rows = _rows(person, version, totals)
    return Accumulators(query.query_id, person.psn_no, query.year, person.insutype, person.insu_admdvs,
                        state.balance, totals.visits, tuple(rows))


def _rows(person: Person, version: PolicyVersion | None, totals) -> list[Cumulative]:
    general = version.general_outpatient if version else None
    annual = general.annual_deductible if general and general.deductible_mode == "annual" else None
    rows = [
        _row("deductible", "普通门诊统筹起付线", totals.deductible_used, annual),
        _row("outpatient_pool", "普通门诊统筹基金支付", totals.outpatient_pool_paid,
             general.annual_cap.for_person(person.retired) if general else None),
        _row("fund_cap", "统筹基金年度最高支付限额", totals.fund_cap_used, version.annual_fund_cap if version else None),
        _row("medfee", "医疗费总额", totals.medfee, None),
    ]
    inpatient = version.inpatient if version else None
    if (inpatient and inpatient.major_outpatient_diseases) or totals.major_deductible_used:
        rows.append(_row("major_deductible", "门诊大病起付线", totals.major_deductible_used,
                         inpatient.major_outpatient_annual_deductible if inpatient else None))
    layers = (("hifob", "职工大额医疗费用补助", version.large_amount if version else None, True),
              ("cvlserv", "公务员医疗补助", version.civil_servant if version else None, person.cvlserv_flag == "1"))
    for code, name, rules, entitled in layers:
        used, paid = getattr(totals, f"{code}_deductible_used"), getattr(totals, f"{code}_paid")
        if (rules is not None and entitled) or used or paid:
            rows.append(_row(f"{code}_deductible", f"{name}起付线", used, rules.annual_deductible if rules else None))
            rows.append(_row(code, name, paid, rules.annual_cap if rules else None))
    assistance = version.assistance if version else None
    category = assistance.category(person.psn_idet_type) if assistance else None
    if category is not None or totals.maf_deductible_used or totals.maf_paid:
        deductible = mul_round(assistance.per_capita_disposable_income, category.deductible_share) if category else None
        rows.append(_row("maf_deductible", "医疗救助起付线", totals.maf_deductible_used, deductible))
        rows.append(_row("maf", "医疗救助", totals.maf_paid, assistance.annual_limit if category else None))
    groups = {group.name: group for group in (version.chronic.groups if version and version.chronic else ())}
    for name in [*groups, *sorted((set(totals.chronic_deductible_used) | set(totals.chronic_paid)) - set(groups))]:
        group = groups.get(name)
        rows.append(_row(f"chronic_deductible:{name}", f"门诊慢特病起付线 ({name})",
                         totals.chronic_deductible_used.get(name, 0), group.annual_deductible if group else None))
        rows.append(_row(f"chronic:{name}", f"门诊慢特病统筹基金支付 ({name})", totals.chronic_paid.get(name, 0),
                         group.annual_limit if group else None))
    return rows
