"""Settlement's input events (registry entries, claims, reversals, credits) and their validation.

Pure: no import of Kafka, Redis or Avro. Every bound is checked here, once, before settlement sees an
event: what the wire can hold, the plausibility ceilings (settings), the clock. Money is integer fen
(gongji.common.money); field names are the national platform's (CONTRACT.md), so the one mapper to
the wire (codec.py) stays thin.
"""

from __future__ import annotations

import functools
import re
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from gongji.contract.wire import (
    DEFAULT_BOUNDS, ID_MAX_LENGTH, NAME_MAX_LENGTH, SHANGHAI, WIRE_MAX_COUNT, WIRE_MAX_FEN,
    WIRE_MAX_PRICE, Bounds,
)
from gongji.common.fields import Fen, Ratio
from gongji.common.money import shown, to_decimal, to_price, yuan_text, yuan_to_fen

Price = Annotated[Decimal, BeforeValidator(to_price)]


# ---------------------------------------------------------------- bounds at the edge


def validation_context(bounds: Bounds = DEFAULT_BOUNDS, now: datetime | None = None) -> dict[str, Any]:
    """The context `model_validate` needs for the bounds that are settings or depend on the clock.
    Without a context the default bounds apply and no time is judged against the present."""
    return {"bounds": bounds, "now": now}


def _bounds(info: ValidationInfo) -> Bounds:
    context = info.context
    return context.get("bounds", DEFAULT_BOUNDS) if isinstance(context, dict) else DEFAULT_BOUNDS


def _now(info: ValidationInfo) -> datetime | None:
    context = info.context
    return context.get("now") if isinstance(context, dict) else None


def _guarded(check):
    """A validator whose own failure (an arithmetic error, say) still names the field: pydantic
    reports ValueErrors against the field and lets every other exception escape."""
    @functools.wraps(check)  # keeps the signature pydantic inspects
    def run(*args):
        try:
            return check(*args)
        except ValueError:
            raise
        except Exception as error:
            raise ValueError(f"cannot be read ({type(error).__name__})") from None
    return run


# Printable (no Unicode "other" or separator character but the ASCII space: no NUL, control, format
# or line-separator character) and no surrounding spaces. Checked by pydantic's own regex engine,
# with no Python call per field; `text_problem` says in words what is wrong.
TEXT_PATTERN = r"^(?:[^\p{C}\p{Z}](?:[^\p{C}\p{Z}]|\x20)*[^\p{C}\p{Z}]|[^\p{C}\p{Z}])?$"


def text_problem(value: str, limit: int = ID_MAX_LENGTH, name: bool = False) -> str | None:
    """What makes `value` no id or code (or, with `name`, no name), or None. Refused, never
    repaired: a stripped or cleaned id would be another id."""
    if len(value) > limit:
        return f"longer than {limit} characters ({len(value)})"
    if not value.isprintable():
        bad = next(char for char in value if not char.isprintable())
        return f"contains a control or non-printable character (U+{ord(bad):04X})"
    if not name and value != value.strip():
        return f"has surrounding spaces: {shown(value)}; send it without them"
    return None


Code = Annotated[str, Field(max_length=ID_MAX_LENGTH, pattern=TEXT_PATTERN)]  # ids and codes
# A name is no key: printable and bounded, its spaces kept as sent.
NAME_PATTERN = r"^(?:[^\p{C}\p{Z}]|\x20)*$"
Name = Annotated[str, Field(max_length=NAME_MAX_LENGTH, pattern=NAME_PATTERN)]


def _ceiling(fen: int, ceiling: int, what: str, setting: str) -> int:
    if fen > WIRE_MAX_FEN:
        raise ValueError(f"{yuan_text(fen)} yuan is more than the wire's decimal(16,2) holds")
    if fen > ceiling:
        raise ValueError(f"{yuan_text(fen)} yuan is above the plausibility ceiling of {yuan_text(ceiling)} yuan "
                         f"{what} ({setting})")
    return fen


def _line_amount(fen: int, info: ValidationInfo) -> int:
    return _ceiling(fen, _bounds(info).max_line_amount, "per fee line", "GONGJI_MAX_LINE_AMOUNT")


def _opening_amount(fen: int, info: ValidationInfo) -> int:
    return _ceiling(fen, _bounds(info).max_opening_amount, "for an opening balance", "GONGJI_MAX_OPENING_AMOUNT")


def _credit_base(fen: int, info: ValidationInfo) -> int:
    return _ceiling(fen, _bounds(info).max_credit_base, "for a contribution base", "GONGJI_MAX_CREDIT_BASE")


def _wire_price(price: Decimal) -> Decimal:
    if price > WIRE_MAX_PRICE:
        raise ValueError(f"{shown(price)} is more than the wire's decimal(20,6) holds")
    return price


def _count(value: object) -> Decimal:
    """A quantity (cnt): at most 4 decimals and below 10^8, as decimal(12,4) on the wire."""
    count = to_decimal(value, "count")
    if count != count.quantize(Decimal("0.0001")):
        raise ValueError(f"count must have at most 4 decimals: {shown(value)}")
    if count > WIRE_MAX_COUNT:
        raise ValueError(f"count {shown(value)} is more than the wire's decimal(12,4) holds")
    return count


def _four_places(ratio: Decimal) -> Decimal:
    if ratio != ratio.quantize(Decimal("0.0001")):
        raise ValueError(f"at most 4 decimals, as decimal(6,4) on the wire: {shown(ratio)}")
    return ratio


# The national platform's local time, "yyyy-MM-dd HH:mm:ss", read in Asia/Shanghai.
NATIONAL_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}", re.ASCII)


def _time_text(value: object) -> object:
    # ISO 8601 text with an offset, the national "yyyy-MM-dd HH:mm:ss" (Asia/Shanghai), or a
    # datetime already; never a number of seconds.
    if isinstance(value, str):
        if len(value) > ID_MAX_LENGTH:
            raise ValueError(f"longer than {ID_MAX_LENGTH} characters")
        if NATIONAL_TIME.fullmatch(value):
            try:
                return datetime.strptime(value, "%Y-%m-%d %H:%M:%S").replace(tzinfo=SHANGHAI)
            except ValueError:
                raise ValueError(f"{shown(value)} is no date and time") from None
        return value
    if isinstance(value, datetime):
        return value
    raise ValueError(f"must be ISO 8601 text with an offset or \"yyyy-MM-dd HH:mm:ss\" (Asia/Shanghai), "
                     f"not {type(value).__name__}")


def _setl_time(value: datetime, info: ValidationInfo) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("setl_time needs a UTC offset, e.g. 2023-05-01T09:30:00+08:00, or the national "
                         "form 2023-05-01 09:30:00 (Asia/Shanghai)")
    try:
        value.astimezone(SHANGHAI)
    except OverflowError:
        raise ValueError(f"{value.isoformat()} is out of range in Asia/Shanghai") from None
    now = _now(info)
    if now is not None:
        tolerance = _bounds(info).setl_time_tolerance
        if value > now + tolerance:
            raise ValueError(f"{value.isoformat()} is later than the present ({now.isoformat(timespec='seconds')}) "
                             f"plus {int(tolerance.total_seconds())} s (GONGJI_SETL_TIME_TOLERANCE_SECONDS)")
    return value


LineAmount = Annotated[Fen, Field(ge=0), AfterValidator(_line_amount)]
WirePrice = Annotated[Price, AfterValidator(_wire_price)]
Count = Annotated[Decimal, BeforeValidator(_guarded(_count)), Field(gt=0)]
SetlTime = Annotated[datetime, BeforeValidator(_time_text), AfterValidator(_setl_time)]
RegionCode = Annotated[str, Field(pattern=r"^[0-9]{6}$")]


class _Event(BaseModel):
    # No str_strip_whitespace: ids and codes with surrounding spaces are refused, not repaired.
    model_config = ConfigDict(frozen=True, extra="ignore")


class Institution(_Event):
    """A designated institution (定点医药机构), full current state from registry.institutions."""

    fixmedins_code: Code = Field(min_length=1)
    fixmedins_name: Name
    fixmedins_type: Literal["1", "2"]
    # A retail pharmacy has no hospital level on the national platform: none, null or "" (the wire's
    # field is a plain string); its claims settle in the policy's pharmacy band.
    medins_lv: Literal["1", "2", "3"] | None = None
    grassroots: bool
    admdvs: RegionCode

    @field_validator("medins_lv", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if value == "" else value

    @model_validator(mode="after")
    def _level_for_hospitals(self) -> "Institution":
        if self.fixmedins_type == "1" and self.medins_lv is None:
            raise ValueError("medins_lv: a medical institution (fixmedins_type 1) needs its level, 1, 2 or 3")
        return self

    @property
    def band(self) -> str:
        """Ratio band: the institution level, or "pharmacy" for a retail pharmacy."""
        return "pharmacy" if self.fixmedins_type == "2" else self.medins_lv


class Person(_Event):
    """An insured person, full current state from registry.persons."""

    psn_no: Code = Field(min_length=1)
    insutype: Code
    psn_type: str = Field(pattern=r"^1[12][0-9][0-9]$")
    insu_admdvs: RegionCode
    psn_insu_stas: Code
    fd_fixmedins_code: Code | None = None
    mulaid_holder_psn_no: Code | None = None
    mulaid_relation: Code | None = None
    psn_idet_type: Code | None = None  # medical-assistance category (医疗救助对象类别)
    chronic_diseases: tuple[Code, ...] | None = None  # recognised (备案) 门诊慢特病 / 门诊大病 diagnoses
    cvlserv_flag: Literal["0", "1"] | None = None  # entitled to the civil-servant subsidy (公务员医疗补助)

    @property
    def retired(self) -> bool:
        return self.psn_type.startswith("12")

    @property
    def active(self) -> bool:
        return self.psn_insu_stas == "1"


class FeeLine(_Event):
    """One fee detail line (2204), classified by the treatment region's catalogue."""

    feedetl_sn: Code = Field(min_length=1)
    med_list_codg: Code
    list_type: Code
    chrgitm_lv: Literal["01", "02", "03"]
    det_item_fee_sumamt: LineAmount
    cnt: Count
    # Prices keep the interface's 6 places (a tablet can cost 0.0125 yuan); amounts are whole fen.
    pric: Annotated[WirePrice, Field(gt=0)]
    pric_uplmt_amt: Annotated[WirePrice, Field(ge=0)] | None = None  # a limit, 0 included
    selfpay_prop: Annotated[Ratio, AfterValidator(_four_places)] | None = None
    non_med_flag: Literal["0", "1"] | None = None

    @model_validator(mode="after")
    @_guarded
    def _adds_up(self) -> "FeeLine":
        # A line must equal price × count to the fen (one fen of slack for the HIS's own rounding).
        expected = yuan_to_fen(self.pric * self.cnt)
        if abs(expected - self.det_item_fee_sumamt) > 1:
            raise ValueError(
                f"line {self.feedetl_sn}: det_item_fee_sumamt {self.det_item_fee_sumamt / 100:.2f} "
                f"is not pric × cnt = {expected / 100:.2f}"
            )
        return self


class Claim(_Event):
    """One outpatient settlement request (2207). `claim_id` is the idempotency key."""

    claim_id: Code = Field(min_length=1)
    mdtrt_id: Code
    psn_no: Code = Field(min_length=1)
    fixmedins_code: Code = Field(min_length=1)
    med_type: Code = Field(min_length=1)
    insutype: Code
    setl_time: SetlTime
    acct_used_flag: Literal["0", "1"]
    fee_details: tuple[FeeLine, ...]
    dise_codg: Code | None = None  # diagnosis (ICD-10), for med_type 14
    # 双通道: the designated medical institution whose prescription a retail pharmacy fills (外配处方)
    rx_fixmedins_code: Code | None = None

    @field_validator("fee_details")
    @classmethod
    def _claim_ceiling(cls, lines: tuple[FeeLine, ...], info: ValidationInfo) -> tuple[FeeLine, ...]:
        if not lines:
            raise ValueError("a claim needs at least one fee line")
        total = sum(line.det_item_fee_sumamt for line in lines)
        _ceiling(total, _bounds(info).max_claim_amount, "per claim (its lines together)", "GONGJI_MAX_CLAIM_AMOUNT")
        return lines

    @model_validator(mode="after")
    def _unique_lines(self) -> "Claim":
        serials = [line.feedetl_sn for line in self.fee_details]
        if len(set(serials)) != len(serials):
            raise ValueError("fee_details repeat a feedetl_sn")
        return self


class PreSettlement(Claim):
    """A pre-settlement (2206): a claim priced against the person's state as it stands, never settled.
    `claim_id` is the question's own id: no record, accumulator, balance or id is touched."""


class AccumulatorQuery(_Event):
    """A question (5206): a person's accumulators for a calendar year, changing nothing."""

    query_id: Code = Field(min_length=1)
    psn_no: Code = Field(min_length=1)
    year: int = Field(ge=1, le=9999)  # "yyyy" on the wire


class Reversal(_Event):
    """A settlement reversal (2208) of an earlier claim."""

    claim_id: Code = Field(min_length=1)
    orig_claim_id: Code = Field(min_length=1)
    psn_no: Code = Field(min_length=1)
    setl_time: SetlTime


class Credit(_Event):
    """A personal-account credit: the monthly 计入, or an explicit opening balance."""

    credit_id: Code = Field(min_length=1)
    psn_no: Code = Field(min_length=1)
    ym: str = Field(pattern=r"^[0-9]{4}-(0[1-9]|1[0-2])$")
    crdt_type: Literal["monthly", "opening"]
    crdt_base: Annotated[Fen, Field(ge=0), AfterValidator(_credit_base)] | None = None
    amount: Annotated[Fen, Field(ge=0), AfterValidator(_opening_amount)] | None = None

    @field_validator("ym")
    @classmethod
    def _real_month(cls, ym: str, info: ValidationInfo) -> str:
        if ym.startswith("0000"):
            raise ValueError("there is no year 0000")
        now = _now(info)
        if now is not None:
            present = (now + _bounds(info).setl_time_tolerance).astimezone(SHANGHAI)
            if ym > f"{present.year:04d}-{present.month:02d}":
                raise ValueError(f"{ym} is a month still to come (the present is {present:%Y-%m} in Asia/Shanghai)")
        return ym

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


Event = Person | Institution | Claim | Reversal | Credit | AccumulatorQuery
#: The questions settlement answers from the state without writing anything.
INQUIRIES = (PreSettlement, AccumulatorQuery)
