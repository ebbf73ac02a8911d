"""Regional settlement policy as data: one TOML file per insured region (统筹区), effective-dated.

Each file holds a list of versions. The first version is complete; every later version lists only
what changed from the one before (a deep merge), so a rate change on a date is a three-line
version. Every merged version is validated in full, and any problem stops start-up with the file
and the field named.

Money is written as yuan strings ("1000.00") and ratios as strings ("0.60"): TOML floats are
binary, so they are refused.
"""

from __future__ import annotations

import bisect
import functools
import importlib.resources
import tomllib
from collections.abc import Iterable, Mapping
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from gongji.common.fields import Fen, Ratio
from gongji.common.money import yuan_text
from gongji.settlement.domain import SettlementError
from gongji.settlement.relief import Assistance

# Ratio band of an institution: its level, or "pharmacy" for a retail pharmacy (fixmedins_type 2).
Band = Literal["1", "2", "3", "pharmacy"]
BANDS: tuple[str, ...] = ("1", "2", "3", "pharmacy")


class PolicyError(SettlementError, ValueError):
    """A policy file that cannot be used; the message names the file and the field."""


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class RatioByClass(_Model):
    in_service: Ratio
    retired: Ratio

    def for_person(self, retired: bool) -> Decimal:
        return self.retired if retired else self.in_service


class AmountByClass(_Model):
    in_service: Fen
    retired: Fen

    def for_person(self, retired: bool) -> int:
        return self.retired if retired else self.in_service


class GeneralOutpatient(_Model):
    """普通门诊统筹 (med_type 11): POLICY.md §3."""

    deductible_mode: Literal["annual", "per_visit"]
    annual_deductible: Fen | None = None
    per_visit_deductible: dict[Band, Fen] | None = None
    grassroots_deductible_exempt: bool = True
    ratio: dict[Band, RatioByClass]
    family_doctor_bonus: Ratio = Decimal(0)
    annual_cap: AmountByClass
    # 国办发〔2021〕14号 leaves it to the region whether the outpatient cap counts inside the
    # basic + large-amount annual cap (纳入年度最高支付限额计算).
    counts_in_fund_cap: bool

    @functools.cached_property
    def terms(self) -> dict[tuple[str, bool], tuple[Decimal, str, int, str, str]]:
        """(band, retired) → what a claim's settlement takes from these terms, worked out once: the
        ratio and its note, the annual cap, and the deductible's and the cap's notes as far as they
        do not depend on the person's year (pooling._general_outpatient)."""
        terms = {}
        for band in self.ratio:
            for retired in (False, True):
                ratio = self.ratio[band].for_person(retired)
                cap = self.annual_cap.for_person(retired)
                if self.deductible_mode == "annual":
                    deductible_note = f"annual deductible {yuan_text(self.annual_deductible)}, "
                else:
                    deductible_note = f"per-visit deductible {yuan_text(self.per_visit_deductible[band])} (band {band}), "
                terms[band, retired] = (ratio, f"ratio {ratio} (band {band}, {'retired' if retired else 'in-service'})",
                                        cap, deductible_note, f"annual outpatient cap {yuan_text(cap)}, ")
        return terms

    @model_validator(mode="after")
    def _complete(self) -> "GeneralOutpatient":
        missing = [band for band in BANDS if band not in self.ratio]
        if missing:
            raise ValueError(f"ratio missing for band(s) {', '.join(missing)}")
        if self.deductible_mode == "annual" and self.annual_deductible is None:
            raise ValueError("deductible_mode 'annual' needs annual_deductible")
        if self.deductible_mode == "per_visit":
            absent = [band for band in BANDS if band not in (self.per_visit_deductible or {})]
            if absent:
                raise ValueError(f"per_visit_deductible missing for band(s) {', '.join(absent)}")
        return self


class ChronicGroup(_Model):
    """门诊慢特病: one disease or group of diseases with its own deductible, ratio and annual limit."""

    name: str = Field(pattern=r"^[^:]+$")  # no ":" (it separates the parts of a Redis field name)
    diseases: list[str]  # diagnosis codes (dise_codg) of the group
    annual_deductible: Fen = 0
    ratio: RatioByClass
    annual_limit: Fen
    counts_in_fund_cap: bool = True


class Chronic(_Model):
    """Outpatient chronic and special diseases (med_type 14), enjoyed alongside general outpatient."""

    groups: list[ChronicGroup]
    # A med_type 14 claim for a disease the person is not recognised for (not on their 备案 list):
    # settled as general outpatient, or refused, as the region says.
    unrecognised: Literal["general", "reject"] = "general"

    @model_validator(mode="after")
    def _disjoint(self) -> "Chronic":
        seen: dict[str, str] = {}
        for group in self.groups:
            for disease in group.diseases:
                if disease in seen:
                    raise ValueError(f"disease {disease} is in groups {seen[disease]!r} and {group.name!r}")
                seen[disease] = group.name
        return self


class Inpatient(_Model):
    """普通住院 (med_type 21), and 门诊大病 settled 参照住院待遇 (major outpatient diseases)."""

    deductible: dict[Band, Fen]  # per admission, by institution level (pharmacies: not used)
    ratio: dict[Band, RatioByClass]
    # 门诊大病: med_type 14 claims for these diagnoses are paid like inpatient care, with the
    # deductible below once per year instead of per admission.
    major_outpatient_diseases: list[str] = []
    major_outpatient_annual_deductible: Fen = 0
    # 日间手术 (seed 001, 门诊大病): recognised by the procedure, not a 备案: the operation codes
    # (oprn_oprt_code) that make a med_type 14 claim day surgery.
    day_surgery_procedures: list[str] = []

    @model_validator(mode="after")
    def _complete(self) -> "Inpatient":
        for table in ("deductible", "ratio"):
            missing = [band for band in ("1", "2", "3") if band not in getattr(self, table)]
            if missing:
                raise ValueError(f"inpatient {table} missing for level(s) {', '.join(missing)}")
        return self


class Recognition(_Model):
    """Who is recognised for a 备案 disease beyond the registry's list (seed 001).

    `closed_to_new`: diagnosis → the day from which it takes no new persons: "不属于自治区规定范围内的
    门诊慢特病病种,不再新增人员,已纳入人员可按照规定继续享受待遇". From that day a claim for it is
    recognised only for a person whose enrolment (Person.chronic_since) is dated before it; they keep
    the terms of the version in force, as everyone does. A closed disease stays in its group or in
    the 门诊大病 list: a version may not drop a disease an earlier one recognised (RegionPolicy).
    `age_below`: diagnosis → age in full years (周岁) at the claim's date from which it is no longer
    recognised (儿童脑瘫), when the registry gives the birth date (Person.brdy); without it the
    备案 alone decides.
    """

    closed_to_new: dict[str, date] = {}
    age_below: dict[str, Annotated[int, Field(gt=0, le=150)]] = {}


class Supplement(_Model):
    """A layer above basic insurance: 职工大额医疗费用补助 (hifob_pay) or 公务员医疗补助 (cvlserv_pay)."""

    annual_deductible: Fen = 0
    ratio: Ratio
    annual_cap: Fen


class Crediting(_Model):
    """Personal-account crediting (个人账户计入), POLICY.md §4."""

    in_service_rate: Ratio  # of the person's own contribution base
    retired_rate: Ratio  # of last year's regional average basic pension


class PolicyVersion(_Model):
    effective_from: date
    sample_values: list[str] = []  # dotted names of numbers the seeds do not give (POLICY.md: **sample**)
    med_types: list[str]
    annual_fund_cap: Fen | None = None
    general_outpatient: GeneralOutpatient
    chronic: Chronic | None = None
    inpatient: Inpatient | None = None
    large_amount: Supplement | None = None  # 职工大额医疗费用补助, 330100
    civil_servant: Supplement | None = None  # 公务员医疗补助, 320100
    assistance: Assistance | None = None  # 医疗救助, 610100
    crediting: Crediting
    recognition: Recognition = Recognition()

    @property
    def recognised_diseases(self) -> frozenset[str]:
        """Every diagnosis a 备案 can be for: the chronic groups' and the 门诊大病 list's."""
        chronic = [d for g in (self.chronic.groups if self.chronic else ()) for d in g.diseases]
        return frozenset(chronic + (self.inpatient.major_outpatient_diseases if self.inpatient else []))

    @field_validator("med_types")
    @classmethod
    def _settled_types_known(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - {"11", "14", "21"})
        if unknown:
            raise ValueError(f"this engine settles med_type 11, 14 and 21; remove {unknown}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> "PolicyVersion":
        if self.general_outpatient.counts_in_fund_cap and self.annual_fund_cap is None:
            raise ValueError("general_outpatient.counts_in_fund_cap needs annual_fund_cap")
        if "14" in self.med_types and self.chronic is None and (self.inpatient is None or not (
                self.inpatient.major_outpatient_diseases or self.inpatient.day_surgery_procedures)):
            raise ValueError("med_type 14 needs a [chronic] table, inpatient.major_outpatient_diseases or "
                             "inpatient.day_surgery_procedures")
        for table in ("closed_to_new", "age_below"):
            unknown = sorted(set(getattr(self.recognition, table)) - self.recognised_diseases)
            if unknown:
                raise ValueError(f"recognition.{table}: {', '.join(unknown)} is in no chronic group and not in "
                                 "inpatient.major_outpatient_diseases")
        if "21" in self.med_types and self.inpatient is None:
            raise ValueError("med_type 21 needs an [inpatient] table")
        if self.inpatient is not None and self.annual_fund_cap is None:
            raise ValueError("[inpatient] needs annual_fund_cap (the basic fund's annual cap)")
        return self


class RegionPolicy(_Model):
    admdvs: str
    name: str
    sources: list[str] = []
    # A settled claim can be reversed (and is recognised when sent again) until the end of this many
    # years after its year (settlement/window.py); the national rule is set per region.
    reversal_window_years: int = Field(default=1, ge=0, le=50)
    versions: tuple[PolicyVersion, ...]

    @field_validator("admdvs")
    @classmethod
    def _six_digits(cls, value: str) -> str:
        if len(value) != 6 or not value.isdigit():
            raise ValueError("admdvs must be a 6-digit region code")
        return value

    @model_validator(mode="after")
    def _enrolled_keep_their_diseases(self) -> "RegionPolicy":
        """Seed 001: "不属于自治区规定范围内的门诊慢特病病种,不再新增人员,已纳入人员可按照规定继续享受
        待遇". A version that drops a disease an earlier one recognised would end the benefit of the
        persons enrolled for it; it is refused: keep it and close it (recognition.closed_to_new)."""
        for index in range(1, len(self.versions)):
            dropped = sorted(self.versions[index - 1].recognised_diseases - self.versions[index].recognised_diseases)
            if dropped:
                raise ValueError(
                    f"versions.{index}: drops {', '.join(dropped)}, recognised by the version before; persons "
                    "enrolled for it keep the benefit (seed 001: 已纳入人员可按照规定继续享受待遇): keep it in its "
                    "group or the 门诊大病 list and close it to new persons in recognition.closed_to_new")
        return self

    @functools.cached_property
    def _starts(self) -> list[date]:
        return [version.effective_from for version in self.versions]

    def in_force(self, day: date) -> PolicyVersion | None:
        """The version in force on `day`, or None before the first one."""
        index = bisect.bisect_right(self._starts, day) - 1
        return self.versions[index] if index >= 0 else None


def _deep_merge(base: Mapping[str, Any], change: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in change.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _reject_floats(value: Any, source: str, where: str = "") -> None:
    if isinstance(value, float):
        raise PolicyError(f"{source}: field '{where}': {value!r} is a float; "
                          "write money and ratios as strings, e.g. \"0.60\"")
    if isinstance(value, Mapping):
        for key, item in value.items():
            _reject_floats(item, source, f"{where}.{key}" if where else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _reject_floats(item, source, f"{where}[{index}]")


def _field(loc: Iterable[Any]) -> str:
    return ".".join(str(part) for part in loc) or "(top level)"


def parse_policy(text: str, source: str) -> RegionPolicy:
    """Parse one policy file's text; `source` names it in every error."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise PolicyError(f"{source}: not valid TOML: {error}") from None
    return policy_from_raw(raw, source)


def policy_from_raw(raw: Mapping[str, Any], source: str) -> RegionPolicy:
    """A policy file's parsed TOML as a RegionPolicy (gongji simulate lays a study's change over it)."""
    raw_versions = raw.get("versions")
    if not isinstance(raw_versions, list) or not raw_versions:
        raise PolicyError(f"{source}: field 'versions': at least one [[versions]] table is required")
    _reject_floats(raw, source)
    merged: list[dict[str, Any]] = []
    for raw_version in raw_versions:
        merged.append(_deep_merge(merged[-1], raw_version) if merged else dict(raw_version))
    try:
        policy = RegionPolicy.model_validate({**raw, "versions": merged})
    except ValidationError as error:
        first = error.errors()[0]
        raise PolicyError(
            f"{source}: field '{_field(first['loc'])}': {first['msg']}"
            + (f" ({error.error_count() - 1} more problem(s))" if error.error_count() > 1 else "")
        ) from None
    starts = [version.effective_from for version in policy.versions]
    if starts != sorted(set(starts)):
        raise PolicyError(f"{source}: field 'versions': effective_from dates must strictly increase")
    return policy


_DAYS_REMEMBERED = 100_000  # (region, day) pairs: decades of days for every region of a province


class PolicyBook:
    """All regions' policies, looked up by insured region and day."""

    def __init__(self, policies: Iterable[RegionPolicy]):
        self._by_region: dict[str, RegionPolicy] = {}
        # (region, day) → the version in force: every claim asks, for a few hundred days a year
        self._in_force: dict[tuple[str, date], PolicyVersion | None] = {}
        for policy in policies:
            if policy.admdvs in self._by_region:
                raise PolicyError(f"two policy files for region {policy.admdvs}")
            self._by_region[policy.admdvs] = policy

    @property
    def regions(self) -> list[str]:
        return sorted(self._by_region)

    def region(self, admdvs: str) -> RegionPolicy | None:
        return self._by_region.get(admdvs)

    def region_names(self) -> dict[str, str]:
        """Region code → its name, for labels."""
        return {code: self._by_region[code].name for code in self.regions}

    def in_force(self, admdvs: str, day: date) -> PolicyVersion | None:
        key = (admdvs, day)
        try:
            return self._in_force[key]
        except KeyError:
            pass
        policy = self._by_region.get(admdvs)
        version = policy.in_force(day) if policy else None
        if len(self._in_force) >= _DAYS_REMEMBERED:
            self._in_force.clear()
        self._in_force[key] = version
        return version


def load_policy_book(directory: Path | None = None) -> PolicyBook:
    """Load every *.toml in `directory`, or the policies shipped with the package."""
    if directory is not None:
        files = sorted(Path(directory).glob("*.toml"))
        if not files:
            raise PolicyError(f"{directory}: no *.toml policy files")
        return PolicyBook(parse_policy(path.read_text(encoding="utf-8"), str(path)) for path in files)
    shipped = importlib.resources.files("gongji.settlement").joinpath("policies")
    entries = sorted((entry for entry in shipped.iterdir() if entry.name.endswith(".toml")), key=lambda e: e.name)
    return PolicyBook(parse_policy(entry.read_text(encoding="utf-8"), f"policies/{entry.name}") for entry in entries)
