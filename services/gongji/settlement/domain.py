"""Settlement domain: per-person state, what settling produces, and the context's exception root.

Pure: no import of Kafka, Redis or Avro, nor of the input events (events.py). Money is integer fen
throughout (gongji.common.money); field names are the national platform's (CONTRACT.md).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal


class SettlementError(Exception):
    """Root of the settlement context's exceptions."""


def positional(cls):
    """`cls(*values)` for a frozen slots dataclass, every field given in order, at half the cost: the
    frozen __init__ sets each field through object.__setattr__, this sets the slots themselves (as
    dataclasses does, the function is generated). The same object: equal, every field set."""
    names = [item.name for item in dataclasses.fields(cls)]
    scope = {"_new": object.__new__, "_cls": cls, **{f"_set_{name}": getattr(cls, name).__set__ for name in names}}
    body = "".join(f"    _set_{name}(self, {name})\n" for name in names)
    exec(f"def {cls.__name__}_of({', '.join(names)}):\n    self = _new(_cls)\n{body}    return self\n", scope)
    return scope[f"{cls.__name__}_of"]


# ---------------------------------------------------------------- state


# Each scalar accumulator of YearTotals, and the Effects field that adds to it.
ACCUMULATES = {
    "deductible_used": "deductible",
    "outpatient_pool_paid": "outpatient_pool",
    "fund_cap_used": "fund_cap",
    "visits": "visits",
    "medfee": "medfee",
    "major_deductible_used": "major_deductible",
    "hifob_deductible_used": "hifob_deductible",
    "hifob_paid": "hifob",
    "cvlserv_deductible_used": "cvlserv_deductible",
    "cvlserv_paid": "cvlserv",
    "maf_deductible_used": "maf_deductible",
    "maf_paid": "maf",
    "maf_pref_burden_used": "maf_pref_burden",
    "maf_pref_paid": "maf_pref",
}
CHRONIC_ACCUMULATORS = ("chronic_deductible_used", "chronic_paid")


@dataclass(frozen=True, slots=True)
class YearTotals:
    """A person's accumulators for one calendar year (Asia/Shanghai) of setl_time. All fen."""

    deductible_used: int = 0  # general outpatient 起付线 consumed
    outpatient_pool_paid: int = 0  # general outpatient pooling paid (hifp_pay, med_type 11)
    fund_cap_used: int = 0  # pooling counted against the annual fund cap (纳入年度最高支付限额)
    visits: int = 0
    medfee: int = 0
    major_deductible_used: int = 0  # 门诊大病 annual deductible
    hifob_deductible_used: int = 0  # 职工大额医疗费用补助
    hifob_paid: int = 0
    cvlserv_deductible_used: int = 0  # 公务员医疗补助
    cvlserv_paid: int = 0
    maf_deductible_used: int = 0  # 医疗救助: one annual limit for chronic/special and inpatient care
    maf_paid: int = 0  # against the annual relief limit (倾斜救助 apart, below)
    maf_pref_burden_used: int = 0  # 倾斜救助: in-scope burden left after the three layers, towards "heavy"
    maf_pref_paid: int = 0  # 倾斜救助 paid, against its own annual limit
    # 门诊慢特病, per disease group: their own deductible and annual limit
    chronic_deductible_used: dict[str, int] = field(default_factory=dict)
    chronic_paid: dict[str, int] = field(default_factory=dict)

    def plus(self, effects: "Effects", sign: int = 1) -> "YearTotals":
        """These totals with `effects` added (sign 1) or taken back (sign -1): ACCUMULATES, written out."""
        e = effects
        deductibles, paid = self.chronic_deductible_used, self.chronic_paid
        if e.chronic_group is not None:
            group = e.chronic_group
            deductibles = {**deductibles, group: deductibles.get(group, 0) + sign * e.chronic_deductible}
            paid = {**paid, group: paid.get(group, 0) + sign * e.chronic_pool}
        return new_year_totals(
            self.deductible_used + sign * e.deductible, self.outpatient_pool_paid + sign * e.outpatient_pool,
            self.fund_cap_used + sign * e.fund_cap, self.visits + sign * e.visits, self.medfee + sign * e.medfee,
            self.major_deductible_used + sign * e.major_deductible,
            self.hifob_deductible_used + sign * e.hifob_deductible, self.hifob_paid + sign * e.hifob,
            self.cvlserv_deductible_used + sign * e.cvlserv_deductible, self.cvlserv_paid + sign * e.cvlserv,
            self.maf_deductible_used + sign * e.maf_deductible, self.maf_paid + sign * e.maf,
            self.maf_pref_burden_used + sign * e.maf_pref_burden, self.maf_pref_paid + sign * e.maf_pref,
            deductibles, paid)


ZERO_YEAR = YearTotals()
new_year_totals = positional(YearTotals)


@dataclass(frozen=True, slots=True)
class PersonState:
    """Everything settlement changes for one person, versioned by an opaque token."""

    token: str = ""
    balance: int = 0  # personal account (个人账户) in fen; carried over across years
    years: dict[int, YearTotals] = field(default_factory=dict)
    # claim id → family account holder a hold was written with, until the claim commits: lets a
    # redelivery return a hold stranded by a change of holder (or of the claim) since.
    pending: dict[str, str] = field(default_factory=dict)
    # The first year whose records and accumulators are kept: the reversal window closed the ones
    # before (settlement/window.py); 0 while none is closed.
    kept_from: int = 0
    first_year: int = 0  # no record kept is of an earlier year (0: none kept yet)

    def year(self, year: int) -> YearTotals:
        return self.years.get(year, ZERO_YEAR)


@dataclass(frozen=True, slots=True)
class Effects:
    """What one settled claim consumed, so a reversal can restore exactly that."""

    year: int
    deductible: int = 0
    outpatient_pool: int = 0
    fund_cap: int = 0
    visits: int = 0
    medfee: int = 0
    acct_pay: int = 0
    mulaid_holder: str | None = None
    mulaid_pay: int = 0
    chronic_group: str | None = None
    chronic_deductible: int = 0
    chronic_pool: int = 0
    major_deductible: int = 0
    hifob_deductible: int = 0
    hifob: int = 0
    cvlserv_deductible: int = 0
    cvlserv: int = 0
    maf_deductible: int = 0
    maf: int = 0  # 医疗救助 within the relief limit; maf_pay is this plus maf_pref (倾斜救助)
    maf_pref_burden: int = 0
    maf_pref: int = 0

    def to_record(self) -> dict:
        return {name: getattr(self, name) for name in self.__slots__}


new_person_state = positional(PersonState)
new_effects = positional(Effects)


# ---------------------------------------------------------------- results


@dataclass(frozen=True, slots=True)
class SetlDetail:
    fund_pay_type: str  # 310100 pooling, 310200 personal account, 330100, 320100, 610100 (倾斜救助 in it)
    fund_payamt: int
    crt_payb_lmt_amt: int  # the limit left before this claim
    setl_proc_info: str




@dataclass(frozen=True, slots=True)
class Settlement:
    """A settled claim (2207 setlinfo), or its reversal when `orig_claim_id` is set."""

    claim_id: str
    setl_id: str
    psn_no: str
    mdtrt_id: str
    med_type: str
    psn_type: str
    insu_admdvs: str
    mdtrtarea_admvs: str
    fixmedins_code: str
    setl_time: str
    medfee_sumamt: int
    fulamt_ownpay_amt: int
    overlmt_selfpay: int
    preselfpay_amt: int
    inscp_scp_amt: int
    act_pay_dedc: int
    hifp_pay: int
    pool_prop_selfpay: Decimal
    hifob_pay: int
    cvlserv_pay: int
    maf_pay: int
    oth_pay: int
    fund_pay_sumamt: int
    psn_part_amt: int
    acct_pay: int
    acct_mulaid_pay: int
    psn_cash_pay: int
    balc: int
    clr_type: str
    clr_optins: str
    setldetail: tuple[SetlDetail, ...]
    orig_claim_id: str | None = None
    orig_setl_id: str | None = None
    orig_setl_time: str | None = None
    mulaid_holder_psn_no: str | None = None  # whose account paid acct_mulaid_pay
    psn_idet_type: str | None = None  # the assistance category settled under (seed 003's people in difficulty)
    maf_pref_pay: int = 0  # of maf_pay, the part paid as 倾斜救助 (preferential assistance)

    @property
    def is_reversal(self) -> bool:
        return self.orig_claim_id is not None

    def to_record(self) -> dict:
        """Plain JSON-able form, for the store (dataclasses.asdict is ten times slower)."""
        data = {name: getattr(self, name) for name in _SETTLEMENT_SLOTS}
        data["pool_prop_selfpay"] = str(self.pool_prop_selfpay)
        data["setldetail"] = [[row.fund_pay_type, row.fund_payamt, row.crt_payb_lmt_amt, row.setl_proc_info]
                              for row in self.setldetail]
        return data

    @classmethod
    def from_record(cls, data: dict) -> "Settlement":
        data = dict(data)
        data["pool_prop_selfpay"] = Decimal(data["pool_prop_selfpay"])
        data["setldetail"] = tuple(SetlDetail(*row) for row in data["setldetail"])
        return cls(**data)


_SETTLEMENT_SLOTS = tuple(field.name for field in dataclasses.fields(Settlement))
new_settlement = positional(Settlement)
new_setl_detail = positional(SetlDetail)


@dataclass(frozen=True, slots=True)
class CreditApplied:
    credit_id: str
    psn_no: str
    ym: str
    amount: int
    balc: int
    insu_admdvs: str | None = None  # whose personal-account fund credited it


RejectCode = Literal[
    "UNKNOWN_PERSON", "UNKNOWN_INSTITUTION", "UNKNOWN_ITEM", "NOT_INSURED", "NO_POLICY", "INVALID_CLAIM",
    "UNSUPPORTED_MED_TYPE", "UNKNOWN_ORIGINAL", "ALREADY_REVERSED", "REVERSAL_BEFORE_ORIGINAL", "DUPLICATE_CONFLICT",
    "MULAID_NOT_ALLOWED",
    "REVERSAL_WINDOW_CLOSED",
]


@dataclass(frozen=True, slots=True)
class Rejection:
    """A refused input: `err_msg` is a sentence a person can act on."""

    err_code: RejectCode
    err_msg: str
    psn_no: str | None
    claim_id: str | None = None
    credit_id: str | None = None
    input_type: str | None = None


@dataclass(frozen=True, slots=True)
class ClaimRecord:
    """What the store keeps per settled claim or reversal: idempotency and reversal both read it."""

    fingerprint: str
    settlement: Settlement
    effects: Effects
    reversed_by: str | None = None


@dataclass(frozen=True, slots=True)
class CreditRecord:
    fingerprint: str
    result: CreditApplied


@dataclass(frozen=True, slots=True)
class Cumulative:
    """One accumulator of a year (5206 cuminfo): what is used, and the policy's limit and what is
    left of it (None: no limit)."""

    cum_type_code: str
    cum_type_name: str
    cum: int
    payb_lmt_amt: int | None = None
    crt_payb_lmt_amt: int | None = None


@dataclass(frozen=True, slots=True)
class Accumulators:
    """A person's year as settlement holds it: the answer to an AccumulatorQuery."""

    query_id: str
    psn_no: str
    year: int
    insutype: str
    insu_admdvs: str
    balc: int
    visits: int
    cuminfo: tuple[Cumulative, ...]


Result = Settlement | Rejection | CreditApplied | Accumulators
new_claim_record = positional(ClaimRecord)
new_credit_record = positional(CreditRecord)
new_credit_applied = positional(CreditApplied)


@dataclass(frozen=True, slots=True)
class Output:
    """One result to publish, keyed by the person."""

    key: str
    value: Result

    @property
    def kind(self) -> str:
        if isinstance(self.value, Settlement):
            return "reversal" if self.value.is_reversal else "settlement"
        if isinstance(self.value, Accumulators):
            return "accumulators"
        return "rejection" if isinstance(self.value, Rejection) else "credit"


new_output = positional(Output)
