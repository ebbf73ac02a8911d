"""The centre's catalogue (就医地目录): how each region classifies an item, and when. Pure.

On the national platform the HIS sends the item code and the centre classifies it from its medical
insurance catalogue: 甲/乙/丙 (chrgitm_lv 01/02/03), the 乙类 self-pay share, the limit price; for
cross-region care (异地就医) by the catalogue of the region where the care was given. Each version
of an item arrives on the compacted `registry.catalogue` topic (`gongji catalogue load`), is stored
beside the other registries and read per pass, and `classify` settles a claim's lines by it:

- a line that leaves `chrgitm_lv` out takes the classification in force on the claim's date
  (Asia/Shanghai) in the treatment region (the institution's `admdvs`); a `selfpay_prop` or
  `pric_uplmt_amt` it carries all the same must agree;
- a line that carries `chrgitm_lv` carries the whole classification (no `selfpay_prop`: none, no
  `pric_uplmt_amt`: no limit, as before version 4 of the claim) and is checked against the entry:
  any difference that would settle differently is INVALID_CLAIM naming the line;
- an item the catalogue does not have on that day: a line that carries its classification settles
  by it (a region whose catalogue is not loaded works as before), one that does not is refused
  UNKNOWN_ITEM, to be resent once the catalogue has it (as UNKNOWN_INSTITUTION);
- non-medical goods (`non_med_flag` "1") are outside the catalogue: paid by no fund whatever their class.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import date
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from gongji.common.fields import Ratio
from gongji.common.money import shown
from gongji.contract.wire import SHANGHAI
from gongji.settlement.domain import Rejection
from gongji.settlement.events import Claim, Code, FeeLine, Name, RegionCode, WirePrice

#: Every stored version of an item, by (treatment region, med_list_codg).
Versions = Mapping[tuple[str, str], Sequence["CatalogueItem"]]
LEVELS = {"01": "甲类", "02": "乙类", "03": "丙类"}
_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", re.ASCII)


def _day(value: object) -> object:
    """yyyy-MM-dd, as the wire and the CSV carry it (no timestamps, no other forms)."""
    if isinstance(value, date):
        return value
    if not isinstance(value, str) or not _DAY.fullmatch(value):
        raise ValueError(f"must be a date as yyyy-MM-dd, not {shown(value)}")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{shown(value)} is no date") from None


def _four_places(ratio: Decimal) -> Decimal:
    if ratio != ratio.quantize(Decimal("0.0001")):
        raise ValueError(f"at most 4 decimals, as decimal(6,4) on the wire: {shown(ratio)}")
    return ratio


Day = Annotated[date, BeforeValidator(_day)]


class CatalogueItem(BaseModel):
    """One version of an item in a region's catalogue, from registry.catalogue."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    admdvs: RegionCode
    med_list_codg: Code = Field(min_length=1)
    begndate: Day
    enddate: Day | None = None
    chrgitm_lv: Literal["01", "02", "03"]
    selfpay_prop: Annotated[Ratio, AfterValidator(_four_places)] | None = None
    pric_uplmt_amt: Annotated[WirePrice, Field(ge=0)] | None = None
    vali_flag: Literal["0", "1"] = "1"
    hilist_name: Name | None = None

    @model_validator(mode="after")
    def _consistent(self) -> "CatalogueItem":
        if self.enddate is not None and self.enddate < self.begndate:
            raise ValueError(f"enddate {self.enddate} is before begndate {self.begndate}")
        if self.selfpay_prop is not None and self.chrgitm_lv != "02":
            raise ValueError(f"selfpay_prop is the 乙类 (02) self-pay share; a {LEVELS[self.chrgitm_lv]} "
                             f"({self.chrgitm_lv}) item has none")
        if self.pric_uplmt_amt is not None and self.chrgitm_lv == "03":
            raise ValueError("a 丙类 (03) item is paid by the person in full: it has no limit price")
        return self

    @property
    def key(self) -> str:
        """The record's key on registry.catalogue: one per region, item and first day."""
        return record_key(self.admdvs, self.med_list_codg, self.begndate.isoformat())

    def in_force(self, day: date) -> bool:
        return self.vali_flag == "1" and self.begndate <= day and (self.enddate is None or day <= self.enddate)


def record_key(admdvs: str, med_list_codg: str, begndate: str) -> str:
    return f"{admdvs}:{med_list_codg}:{begndate}"


def stored_item(data: dict) -> CatalogueItem:
    """A version as it was accepted when written, not validated again (a rule added since must not
    make a stored entry unreadable; see redis_store.stored_person)."""
    values = dict(data)
    for name in ("begndate", "enddate"):
        if values.get(name) is not None:
            values[name] = date.fromisoformat(values[name])
    for name in ("selfpay_prop", "pric_uplmt_amt"):
        if values.get(name) is not None:
            values[name] = Decimal(values[name])
    return CatalogueItem.model_construct(**values)


def in_force(versions: Iterable[CatalogueItem], day: date) -> CatalogueItem | None:
    """The version in force on `day`: of the valid ones whose period holds it, the latest begun."""
    found = None
    for item in versions:
        if item.in_force(day) and (found is None or item.begndate > found.begndate):
            found = item
    return found


def wanted(claim: Claim, region: str) -> set[tuple[str, str]]:
    """The (region, item) pairs `classify` reads for `claim` treated in `region`."""
    return {(region, line.med_list_codg) for line in claim.fee_details if line.non_med_flag != "1"}


def pass_wants(events: Iterable[object], institutions: Mapping[str, object]) -> set[tuple[str, str]]:
    """The entries a settlement pass reads: for each claim (or pre-settlement) among `events`, its
    medical lines' items in its treatment region, the region of its institution in `institutions`
    (the pass's snapshot; a claim whose institution is unknown reads nothing, it is refused anyway)."""
    found: set[tuple[str, str]] = set()
    for event in events:
        if isinstance(event, Claim):
            institution = institutions.get(event.fixmedins_code)
            if institution is not None:
                found |= wanted(event, institution.admdvs)
    return found


def _disagreement(line: FeeLine, entry: CatalogueItem) -> str | None:
    """What in the line would settle otherwise than the catalogue's entry says (None: nothing)."""
    if line.chrgitm_lv is not None and line.chrgitm_lv != entry.chrgitm_lv:
        return (f"chrgitm_lv {line.chrgitm_lv} ({LEVELS[line.chrgitm_lv]}), but the catalogue classifies it "
                f"{entry.chrgitm_lv} ({LEVELS[entry.chrgitm_lv]})")
    whole = line.chrgitm_lv is not None  # a classified line says "none" by leaving a field out
    if entry.chrgitm_lv == "02" and (whole or line.selfpay_prop is not None) \
            and (line.selfpay_prop or 0) != (entry.selfpay_prop or 0):
        return (f"selfpay_prop {'none' if line.selfpay_prop is None else line.selfpay_prop}, but the catalogue's "
                f"乙类 self-pay share is {'none' if entry.selfpay_prop is None else entry.selfpay_prop}")
    if entry.chrgitm_lv != "03" and (whole or line.pric_uplmt_amt is not None) \
            and line.pric_uplmt_amt != entry.pric_uplmt_amt:
        return (f"pric_uplmt_amt {'none' if line.pric_uplmt_amt is None else line.pric_uplmt_amt}, but the "
                f"catalogue's limit price is {'none' if entry.pric_uplmt_amt is None else entry.pric_uplmt_amt}")
    return None


def classify(claim: Claim, region: str, catalogue: Versions, day: date | None = None) -> Claim | Rejection:
    """`claim` with every medical line classified by `region`'s catalogue in force on its date (`day`,
    when the caller has it), or the refusal of the first line that cannot be (module doc). The claim
    itself when nothing was filled in (so its fingerprint, taken from the claim as sent, is never in question)."""
    if day is None:
        day = claim.setl_time.astimezone(SHANGHAI).date()
    lines: list[FeeLine] = []
    filled = False
    for position, line in enumerate(claim.fee_details):
        if line.non_med_flag == "1":
            lines.append(line)
            continue
        entry = in_force(catalogue.get((region, line.med_list_codg), ()), day) if catalogue else None
        if entry is None:
            if line.chrgitm_lv is None:
                return _refuse(claim, "UNKNOWN_ITEM", f"{_where(position, line)}: not in region {region}'s catalogue "
                               f"on {day} (yet), and the line carries no chrgitm_lv; load the catalogue entry "
                               "(gongji catalogue load), then resend the claim, or send the line classified")
            lines.append(line)
            continue
        problem = _disagreement(line, entry)
        if problem is not None:
            return _refuse(claim, "INVALID_CLAIM", f"{_where(position, line)}: {problem} in region {region} on "
                           f"{day} (version from {entry.begndate}); send the catalogue's classification or leave it out")
        if line.chrgitm_lv is None:
            line = line.model_copy(update={"chrgitm_lv": entry.chrgitm_lv, "selfpay_prop": entry.selfpay_prop,
                                           "pric_uplmt_amt": entry.pric_uplmt_amt})
            filled = True
        lines.append(line)
    return claim.model_copy(update={"fee_details": tuple(lines)}) if filled else claim


def _where(position: int, line: FeeLine) -> str:
    return f"fee_details.{position} (feedetl_sn {line.feedetl_sn}, item {line.med_list_codg})"


def _refuse(claim: Claim, code, message: str) -> Rejection:
    return Rejection(err_code=code, err_msg=message, psn_no=claim.psn_no, claim_id=claim.claim_id, input_type="claim")
