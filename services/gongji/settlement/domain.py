"""Settlement domain: input events, per-person state, and what settling produces.

Pure: no import of Kafka, Redis or Avro. Money is integer fen throughout (gongji.common.money);
field names are the national platform's (CONTRACT.md), so the one mapper to the wire stays thin.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from gongji.common.money import to_fen, to_price, to_ratio, yuan_to_fen

# Asia/Shanghai has been UTC+8 without daylight saving since 1991; a fixed offset needs no tz database.
SHANGHAI = timezone(timedelta(hours=8), "Asia/Shanghai")

Fen = Annotated[int, BeforeValidator(to_fen)]
Ratio = Annotated[Decimal, BeforeValidator(to_ratio)]
Price = Annotated[Decimal, BeforeValidator(to_price)]
MULAID_RELATIONS = ("spouse", "parent", "child")  # 配偶、父母、子女


class SettlementError(Exception):
    """Root of the settlement context's exceptions."""


class _Event(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", str_strip_whitespace=True)


class Institution(_Event):
    """A designated institution (定点医药机构), full current state from registry.institutions."""

    fixmedins_code: str = Field(min_length=1)
    fixmedins_name: str
    fixmedins_type: Literal["1", "2"]
    medins_lv: Literal["1", "2", "3"]
    grassroots: bool
    admdvs: str = Field(pattern=r"^\d{6}$")

    @property
    def band(self) -> str:
        """Ratio band: the institution level, or "pharmacy" for a retail pharmacy."""
        return "pharmacy" if self.fixmedins_type == "2" else self.medins_lv


class Person(_Event):
    """An insured person, full current state from registry.persons."""

    psn_no: str = Field(min_length=1)
    insutype: str
    psn_type: str = Field(pattern=r"^1[12]\d\d$")
    insu_admdvs: str = Field(pattern=r"^\d{6}$")
    psn_insu_stas: str
    fd_fixmedins_code: str | None = None
    mulaid_holder_psn_no: str | None = None
    mulaid_relation: str | None = None
    psn_idet_type: str | None = None  # medical-assistance category (医疗救助对象类别)
    chronic_diseases: tuple[str, ...] | None = None  # recognised (备案) 门诊慢特病 / 门诊大病 diagnoses
    cvlserv_flag: Literal["0", "1"] | None = None  # entitled to the civil-servant subsidy (公务员医疗补助)

    @property
    def retired(self) -> bool:
        return self.psn_type.startswith("12")

    @property
    def active(self) -> bool:
        return self.psn_insu_stas == "1"


class FeeLine(_Event):
    """One fee detail line (2204), classified by the treatment region's catalogue."""

    feedetl_sn: str = Field(min_length=1)
    med_list_codg: str
    list_type: str
    chrgitm_lv: Literal["01", "02", "03"]
    det_item_fee_sumamt: Fen = Field(ge=0)
    cnt: Decimal = Field(gt=0)
    # Prices keep the interface's 6 places (a tablet can cost 0.0125 yuan); amounts are whole fen.
    pric: Price = Field(ge=0)
    pric_uplmt_amt: Price | None = Field(default=None, ge=0)
    selfpay_prop: Ratio | None = None
    non_med_flag: Literal["0", "1"] | None = None

    @model_validator(mode="after")
    def _adds_up(self) -> "FeeLine":
        # A line must equal price × count to the fen (one fen of slack for the HIS's own rounding).
        expected = yuan_to_fen(self.pric * self.cnt)
        if abs(expected - self.det_item_fee_sumamt) > 1:
            raise ValueError(
                f"line {self.feedetl_sn}: det_item_fee_sumamt {self.det_item_fee_sumamt / 100:.2f} "
                f"is not pric × cnt = {expected / 100:.2f}"
            )
        return self


def _aware(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("setl_time needs a UTC offset, e.g. 2023-05-01T09:30:00+08:00")
    return value


class Claim(_Event):
    """One outpatient settlement request (2207). `claim_id` is the idempotency key."""

    claim_id: str = Field(min_length=1)
    mdtrt_id: str
    psn_no: str = Field(min_length=1)
    fixmedins_code: str = Field(min_length=1)
    med_type: str = Field(min_length=1)
    insutype: str
    setl_time: datetime
    acct_used_flag: Literal["0", "1"]
    fee_details: tuple[FeeLine, ...] = Field(min_length=1)
    dise_codg: str | None = None  # diagnosis (ICD-10), for med_type 14

    _check_time = field_validator("setl_time")(_aware)

    @model_validator(mode="after")
    def _unique_lines(self) -> "Claim":
        serials = [line.feedetl_sn for line in self.fee_details]
        if len(set(serials)) != len(serials):
            raise ValueError("fee_details repeat a feedetl_sn")
        return self


class Reversal(_Event):
    """A settlement reversal (2208) of an earlier claim."""

    claim_id: str = Field(min_length=1)
    orig_claim_id: str = Field(min_length=1)
    psn_no: str = Field(min_length=1)
    setl_time: datetime

    _check_time = field_validator("setl_time")(_aware)


class Credit(_Event):
    """A personal-account credit: the monthly 计入, or an explicit opening balance."""

    credit_id: str = Field(min_length=1)
    psn_no: str = Field(min_length=1)
    ym: str = Field(pattern=r"^\d{4}-(0[1-9]|1[0-2])$")
    crdt_type: Literal["monthly", "opening"]
    crdt_base: Fen | None = Field(default=None, ge=0)
    amount: Fen | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _has_its_figure(self) -> "Credit":
        if self.crdt_type == "monthly" and self.crdt_base is None:
            raise ValueError("a monthly credit needs crdt_base")
        if self.crdt_type == "opening" and self.amount is None:
            raise ValueError("an opening credit needs amount")
        return self

    @property
    def first_day(self) -> date:
        year, month = self.ym.split("-")
        return date(int(year), int(month), 1)


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
    maf_paid: int = 0
    # 门诊慢特病, per disease group: their own deductible and annual limit
    chronic_deductible_used: dict[str, int] = field(default_factory=dict)
    chronic_paid: dict[str, int] = field(default_factory=dict)

    def plus(self, effects: "Effects", sign: int = 1) -> "YearTotals":
        values = {name: getattr(self, name) + sign * getattr(effects, source) for name, source in ACCUMULATES.items()}
        deductibles, paid = self.chronic_deductible_used, self.chronic_paid
        if effects.chronic_group is not None:
            group = effects.chronic_group
            deductibles = {**deductibles, group: deductibles.get(group, 0) + sign * effects.chronic_deductible}
            paid = {**paid, group: paid.get(group, 0) + sign * effects.chronic_pool}
        return YearTotals(**values, chronic_deductible_used=deductibles, chronic_paid=paid)


ZERO_YEAR = YearTotals()


@dataclass(frozen=True, slots=True)
class PersonState:
    """Everything settlement changes for one person, versioned by an opaque token."""

    token: str = ""
    balance: int = 0  # personal account (个人账户) in fen; carried over across years
    years: dict[int, YearTotals] = field(default_factory=dict)
    # claim id → family account holder a hold was written with, until the claim commits: lets a
    # redelivery return a hold stranded by a change of holder (or of the claim) since.
    pending: dict[str, str] = field(default_factory=dict)

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
    maf: int = 0

    def to_record(self) -> dict:
        return {name: getattr(self, name) for name in self.__slots__}


# ---------------------------------------------------------------- results


@dataclass(frozen=True, slots=True)
class SetlDetail:
    fund_pay_type: str  # 310100 pooling, 310200 personal account, 330100, 320100, 610100
    fund_payamt: int
    crt_payb_lmt_amt: int  # the limit left before this claim
    setl_proc_info: str


MONEY_FIELDS = (
    "medfee_sumamt", "fulamt_ownpay_amt", "overlmt_selfpay", "preselfpay_amt", "inscp_scp_amt",
    "act_pay_dedc", "hifp_pay", "hifob_pay", "cvlserv_pay", "maf_pay", "oth_pay", "fund_pay_sumamt",
    "psn_part_amt", "acct_pay", "acct_mulaid_pay", "psn_cash_pay",
)


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


@dataclass(frozen=True, slots=True)
class CreditApplied:
    credit_id: str
    psn_no: str
    ym: str
    amount: int
    balc: int
    insu_admdvs: str | None = None  # whose personal-account fund credited it


RejectCode = Literal[
    "UNKNOWN_PERSON", "UNKNOWN_INSTITUTION", "NOT_INSURED", "NO_POLICY", "INVALID_CLAIM", "UNSUPPORTED_MED_TYPE",
    "UNKNOWN_ORIGINAL", "ALREADY_REVERSED", "DUPLICATE_CONFLICT", "MULAID_NOT_ALLOWED",
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
