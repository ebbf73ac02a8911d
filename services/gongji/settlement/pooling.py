"""What basic insurance pays for a claim, POLICY.md §2–3 and §6 as pure functions: the fee lines
split by the catalogue (§2), then the basic pooling fund by kind of care: general outpatient (§3),
outpatient chronic and special diseases, inpatient care and the major outpatient diseases paid like
it (§6). The layers above it, the accounts and the result are gongji.settlement.rules.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import NamedTuple

from gongji.contract.wire import SHANGHAI
from gongji.common.money import div_round, mul_round, yuan_text, yuan_to_fen
from gongji.settlement.domain import Rejection
from gongji.settlement.events import Claim, FeeLine


# ---------------------------------------------------------------- §2 line split


@dataclass(frozen=True, slots=True)
class LineSplit:
    medfee: int = 0  # medfee_sumamt
    fulamt_ownpay: int = 0  # 全自费: 丙类 and non-medical lines
    overlmt: int = 0  # 超限价自付
    preselfpay: int = 0  # 先行自付 of 乙类
    inscp: int = 0  # 符合政策范围金额
    non_medical: int = 0  # public health, fitness, wellness: never payable by fund or account


def _split(line: FeeLine) -> tuple[int, int, int, int, int, int]:
    """One line's split, in LineSplit's order (a tuple: a claim's lines are summed, not kept)."""
    amount = line.det_item_fee_sumamt
    if line.non_med_flag == "1":
        return amount, amount, 0, 0, 0, amount
    level = line.chrgitm_lv
    if level == "03":
        return amount, amount, 0, 0, 0, 0
    overlmt = 0
    limit = line.pric_uplmt_amt
    if limit is not None and line.pric > limit:
        overlmt = min(amount, yuan_to_fen((line.pric - limit) * line.cnt))
    base = amount - overlmt
    preselfpay = mul_round(base, line.selfpay_prop) if level == "02" and line.selfpay_prop else 0
    return amount, 0, overlmt, preselfpay, base - preselfpay, 0


def split_line(line: FeeLine) -> LineSplit:
    return LineSplit(*_split(line))


def split_lines(lines: tuple[FeeLine, ...]) -> LineSplit:
    if len(lines) == 1:
        return LineSplit(*_split(lines[0]))
    medfee = ownpay = overlmt = preselfpay = inscp = non_medical = 0
    for line in lines:
        part = _split(line)
        medfee += part[0]
        ownpay += part[1]
        overlmt += part[2]
        preselfpay += part[3]
        inscp += part[4]
        non_medical += part[5]
    return LineSplit(medfee, ownpay, overlmt, preselfpay, inscp, non_medical)


# ---------------------------------------------------------------- §3, §6 the basic pooling fund


class Basic(NamedTuple):
    """What the basic pooling fund pays for one claim, and what it consumed (Effects' fields of it)."""

    kind: str  # "general", "chronic", "inpatient", "major" (门诊大病, 参照住院)
    pooling: int
    deductible: int
    ratio: Decimal
    limit_left: int  # what the binding cap still allowed before this claim
    over_cap: int  # in-scope base above the basic fund's annual cap: the large-amount subsidy's base
    notes: list[str]
    # consumed, as Effects names them
    general_deductible: int = 0  # Effects.deductible
    outpatient_pool: int = 0
    fund_cap: int = 0
    chronic_group: str | None = None
    chronic_deductible: int = 0
    chronic_pool: int = 0
    major_deductible: int = 0


def _invalid(claim: Claim, message: str) -> Rejection:
    return Rejection(err_code="INVALID_CLAIM", err_msg=message, psn_no=claim.psn_no, input_type="claim",
                     claim_id=claim.claim_id)


def _general_outpatient(person, institution, version, split, totals, notes) -> Basic:
    """POLICY §3: 普通门诊统筹."""
    notes.insert(0, "普通门诊统筹")
    rules = version.general_outpatient
    retired = person.retired
    band = institution.band
    ratio, ratio_note, outpatient_cap, deductible_note, cap_note = rules.terms[band, retired]
    # §3.1 起付线
    if rules.deductible_mode == "annual":
        left = max(0, rules.annual_deductible - totals.deductible_used)
        deductible = min(split.inscp, left)
        notes.append(f"{deductible_note}{yuan_text(left)} left, {yuan_text(deductible)} now")
    elif institution.grassroots and rules.grassroots_deductible_exempt:
        deductible = 0
        notes.append("no deductible at a grassroots institution")
    else:
        deductible = min(split.inscp, rules.per_visit_deductible[band])
        notes.append(f"{deductible_note}{yuan_text(deductible)} now")
    # §3.2 ratio: band × person class, + family-doctor bonus at the contracted institution
    if rules.family_doctor_bonus and person.fd_fixmedins_code == institution.fixmedins_code:
        ratio = min(Decimal(1), ratio + rules.family_doctor_bonus)
        ratio_note += f" + family doctor {rules.family_doctor_bonus}"
    notes.append(ratio_note)
    # §3.3 caps
    by_ratio = mul_round(split.inscp - deductible, ratio)
    limit_left = max(0, outpatient_cap - totals.outpatient_pool_paid)
    limit_note = f"{cap_note}{yuan_text(limit_left)} left"
    if rules.counts_in_fund_cap:
        # 国办发〔2021〕14号: the outpatient cap counts inside the annual fund cap where the region says so
        fund_left = max(0, version.annual_fund_cap - totals.fund_cap_used)
        if fund_left < limit_left:
            limit_left = fund_left
            limit_note += f"; annual fund cap {yuan_text(version.annual_fund_cap)}, {yuan_text(fund_left)} left"
    pooling = min(by_ratio, limit_left)
    notes.append(limit_note)
    if pooling < by_ratio:
        notes.append(f"capped: {yuan_text(by_ratio)} by ratio, {yuan_text(pooling)} paid")
    return Basic("general", pooling, deductible, ratio, limit_left, 0, notes, deductible, pooling,
                 pooling if rules.counts_in_fund_cap else 0)


def _chronic(person, group, version, split, totals, notes) -> Basic:
    """POLICY §3 (last paragraph), §6: 门诊慢特病, the group's own deductible, ratio and limit."""
    left = max(0, group.annual_deductible - totals.chronic_deductible_used.get(group.name, 0))
    deductible = min(split.inscp, left)
    ratio = group.ratio.for_person(person.retired)
    by_ratio = mul_round(split.inscp - deductible, ratio)
    limit_left = max(0, group.annual_limit - totals.chronic_paid.get(group.name, 0))
    notes += [f"门诊慢特病 {group.name}: deductible {yuan_text(group.annual_deductible)}, {yuan_text(left)} left, "
              f"{yuan_text(deductible)} now", f"ratio {ratio}",
              f"annual limit {yuan_text(group.annual_limit)}, {yuan_text(limit_left)} left"]
    if group.counts_in_fund_cap and version.annual_fund_cap is not None:
        fund_left = max(0, version.annual_fund_cap - totals.fund_cap_used)
        if fund_left < limit_left:
            limit_left = fund_left
            notes.append(f"annual fund cap {yuan_text(version.annual_fund_cap)}, {yuan_text(fund_left)} left")
    pooling = min(by_ratio, limit_left)
    if pooling < by_ratio:
        notes.append(f"capped: {yuan_text(by_ratio)} by ratio, {yuan_text(pooling)} paid")
    return Basic("chronic", pooling, deductible, ratio, limit_left, 0, notes,
                 fund_cap=pooling if group.counts_in_fund_cap else 0, chronic_group=group.name,
                 chronic_deductible=deductible, chronic_pool=pooling)


def _inpatient(person, institution, version, split, totals, notes, major: bool) -> Basic:
    """POLICY §6: inpatient care (med_type 21), and 门诊大病 paid like it (参照住院待遇). `institution`
    gives the level: where the care was given, or for 双通道 the prescribing institution."""
    rules = version.inpatient
    band = institution.medins_lv
    if major:  # 门诊大病: the deductible once a year, not per admission
        left = max(0, rules.major_outpatient_annual_deductible - totals.major_deductible_used)
        deductible = min(split.inscp, left)
        notes.append(f"门诊大病, paid like inpatient care: annual deductible "
                     f"{yuan_text(rules.major_outpatient_annual_deductible)}, {yuan_text(left)} left, "
                     f"{yuan_text(deductible)} now")
    else:
        deductible = min(split.inscp, rules.deductible[band])
        notes.append(f"inpatient deductible {yuan_text(rules.deductible[band])} per admission (level {band}), "
                     f"{yuan_text(deductible)} now")
    ratio = rules.ratio[band].for_person(person.retired)
    base = split.inscp - deductible
    by_ratio = mul_round(base, ratio)
    limit_left = max(0, version.annual_fund_cap - totals.fund_cap_used)
    notes += [f"ratio {ratio} (level {band})",
              f"annual fund cap {yuan_text(version.annual_fund_cap)}, {yuan_text(limit_left)} left"]
    pooling = min(by_ratio, limit_left)
    over_cap = 0
    if pooling < by_ratio:
        # The in-scope base the fund did not reach: what it paid, divided back by the ratio.
        over_cap = max(0, base - div_round(pooling, ratio))
        notes.append(f"capped: {yuan_text(by_ratio)} by ratio, {yuan_text(pooling)} paid, "
                     f"{yuan_text(over_cap)} in scope above the cap")
    return Basic("major" if major else "inpatient", pooling, deductible, ratio, limit_left, over_cap, notes,
                 fund_cap=pooling, major_deductible=deductible if major else 0)


def _dual_channel(claim, institution, prescriber) -> Rejection | None:
    """双通道 (seed 001, 实施方案 三、3): "支持参保人员持定点医疗机构外配处方在定点零售药店结算和配药".
    A recognised 门诊大病 claim at a retail pharmacy settles under the disease's rules, at the ratio
    of the prescribing institution's level, when it names that institution (`rx_fixmedins_code`), a
    designated medical institution in the registry; without it, it is refused as before."""
    if not claim.rx_fixmedins_code:
        return _invalid(claim, f"门诊大病 treatment at retail pharmacy {institution.fixmedins_code}: name the "
                               "designated medical institution whose prescription it fills (rx_fixmedins_code, 双通道)")
    if prescriber is None:
        return Rejection(err_code="UNKNOWN_INSTITUTION", psn_no=claim.psn_no, input_type="claim",
                         claim_id=claim.claim_id,
                         err_msg=f"prescribing institution {claim.rx_fixmedins_code} (rx_fixmedins_code) is not in the "
                                 "institution registry (yet); send the institution event, then resend the claim")
    if prescriber.fixmedins_type != "1":
        return _invalid(claim, f"rx_fixmedins_code: {prescriber.fixmedins_code} is a retail pharmacy, not the "
                               "designated medical institution that wrote the prescription (双通道)")
    return None


def _age(brdy: str, day: date) -> int:
    """Full years (周岁) on `day` of a person born on `brdy` ("yyyy-MM-dd")."""
    born = date.fromisoformat(brdy)
    return day.year - born.year - ((day.month, day.day) < (born.month, born.day))


def recognition(claim, person, version, notes) -> str | None:
    """Why the person is not recognised (备案) for the claim's diagnosis on the claim's day, or None
    when they are (a continued enrolment noted in `notes`): on their registry list, and past the
    policy's rules (policy.Recognition):
    - continuity (seed 001): "不属于自治区规定范围内的门诊慢特病病种,不再新增人员,已纳入人员可按照规定
      继续享受待遇": from a disease's closing day, only a person enrolled before it;
    - 儿童脑瘫 (seed 001, 门诊大病): below the policy's age on the claim's day, when the registry
      gives the birth date."""
    disease = claim.dise_codg
    if disease not in (person.chronic_diseases or ()):
        return f"diagnosis {disease} is not a recognised (备案) 门诊慢特病 of this person"
    rules, day = version.recognition, claim.setl_time.astimezone(SHANGHAI).date()
    closed = rules.closed_to_new.get(disease)
    if closed is not None and day >= closed:
        since = (person.chronic_since or {}).get(disease)
        if since is None or since >= closed.isoformat():
            return (f"diagnosis {disease} takes no new persons from {closed} (不再新增人员) and this person's "
                    f"enrolment is dated {since or 'nowhere (chronic_since)'}, not before it")
        notes.append(f"{disease} takes no new persons from {closed}; enrolled {since}: 已纳入人员继续享受待遇")
    limit = rules.age_below.get(disease)
    if limit is not None and person.brdy is not None and _age(person.brdy, day) >= limit:
        return f"diagnosis {disease} is recognised below age {limit}; this person is {_age(person.brdy, day)}"
    return None


def _day_surgery(claim, institution, version) -> bool | Rejection:
    """日间手术 (seed 001, 实施方案 二、(一) 2, 门诊大病 "参照住院待遇进行管理"), recognised by the
    procedure: a med_type 14 claim whose oprn_oprt_code the policy lists. The seed keeps it out of
    general outpatient pooling ("日间手术、特殊慢性病、门诊特殊用药不纳入职工医保门诊共济统筹范围"), so a
    med_type 11 claim naming a listed procedure is refused, as is one at a retail pharmacy."""
    code, inpatient = claim.oprn_oprt_code, version.inpatient
    if not code or inpatient is None or code not in inpatient.day_surgery_procedures:
        return False
    if claim.med_type == "11":
        return _invalid(claim, f"oprn_oprt_code {code} is day surgery (日间手术), outside general outpatient pooling; send the claim as med_type 14")
    if institution.fixmedins_type == "2":
        return _invalid(claim, f"day surgery (oprn_oprt_code {code}) at retail pharmacy {institution.fixmedins_code}")
    return claim.med_type == "14"


def basic_pooling(claim, person, institution, version, split, totals, prescriber=None) -> Basic | Rejection:
    """What the basic pooling fund pays for `claim` by kind of care (med_type 11, 21, 14), or why
    the claim cannot be settled. `prescriber`: the institution `rx_fixmedins_code` names, if any."""
    notes = [f"policy {person.insu_admdvs} from {version.effective_from}; 政策范围内 {yuan_text(split.inscp)}"]
    day_surgery = _day_surgery(claim, institution, version)
    if isinstance(day_surgery, Rejection):
        return day_surgery
    if day_surgery:
        notes.append(f"日间手术 {claim.oprn_oprt_code}: 门诊大病")
        return _inpatient(person, institution, version, split, totals, notes, major=True)
    if claim.med_type == "11":
        return _general_outpatient(person, institution, version, split, totals, notes)
    if claim.med_type == "21":
        if institution.fixmedins_type == "2":
            return _invalid(claim, f"inpatient care (med_type 21) at retail pharmacy {institution.fixmedins_code}")
        return _inpatient(person, institution, version, split, totals, notes, major=False)
    # med_type 14: 门诊慢特病, or 门诊大病 paid like inpatient care, for a recognised (备案) diagnosis
    disease = claim.dise_codg
    if not disease:
        return _invalid(claim, "a med_type 14 claim needs dise_codg, the diagnosis it is for "
                               "(or oprn_oprt_code, a day surgery)")
    refused = recognition(claim, person, version, notes)
    recognised = refused is None
    inpatient, chronic = version.inpatient, version.chronic
    if recognised and inpatient is not None and disease in inpatient.major_outpatient_diseases:
        if institution.fixmedins_type == "2":
            refused = _dual_channel(claim, institution, prescriber)
            if refused is not None:
                return refused
            notes.append(f"双通道: 外配处方 of {prescriber.fixmedins_code} filled at retail pharmacy "
                         f"{institution.fixmedins_code}")
            return _inpatient(person, prescriber, version, split, totals, notes, major=True)
        return _inpatient(person, institution, version, split, totals, notes, major=True)
    group = next((g for g in (chronic.groups if chronic else ()) if disease in g.diseases), None)
    if recognised and group is not None:
        return _chronic(person, group, version, split, totals, notes)
    if refused is None:
        refused = f"diagnosis {disease} is in no 门诊慢特病 group of region {person.insu_admdvs}"
    if chronic is not None and chronic.unrecognised == "reject":
        return Rejection(
            err_code="UNSUPPORTED_MED_TYPE", psn_no=claim.psn_no, input_type="claim", claim_id=claim.claim_id,
            err_msg=f"{refused}, and region {person.insu_admdvs} settles such claims only for recognised diseases; "
                    "register the disease, or send the visit as general outpatient (med_type 11)")
    notes.append(f"{refused}: settled as general outpatient")
    return _general_outpatient(person, institution, version, split, totals, notes)
