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
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from gongji.common.fields import Fen, Ratio
from gongji.settlement.domain import SettlementError

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

    @model_validator(mode="after")
    def _complete(self) -> "Inpatient":
        for table in ("deductible", "ratio"):
            missing = [band for band in ("1", "2", "3") if band not in getattr(self, table)]
            if missing:
                raise ValueError(f"inpatient {table} missing for level(s) {', '.join(missing)}")
        return self


class Supplement(_Model):
    """A layer above basic insurance: 职工大额医疗费用补助 (hifob_pay) or 公务员医疗补助 (cvlserv_pay)."""

    annual_deductible: Fen = 0
    ratio: Ratio
    annual_cap: Fen


class AssistanceCategory(_Model):
    """One category of 医疗救助 (the 三条线: deductible, ratio, annual limit)."""

    name: str
    codes: list[str]  # psn_idet_type values of the person registry
    ratio: Ratio
    # 低保 and 特困: no deductible; 低保边缘 and 因病致贫: a share of last year's per-capita disposable income.
    deductible_share: Ratio = Decimal(0)


# 低保 (minimum living allowance) and 特困 (extremely poor): the categories the seed fixes by law.
BOTTOM_CODES = frozenset({"dibao", "tekun"})
BOTTOM_NAMES = frozenset({"低保", "特困"})
BOTTOM_MIN_RATIO = Decimal("0.70")


class Assistance(_Model):
    """医疗救助 (maf_pay), after insurance: 保险在前、救助在后.

    The "three lines" (三条线) are law, not sample data (seed 003, the National Healthcare Security
    Administration on 国办发〔2021〕42号; the seed is in English): "in principle, the starting payment
    standard for the objects of subsistence allowances and the extremely poor shall be cancelled.
    The marginal family members of subsistence allowances and seriously ill patients with difficulty
    in spending due to illness shall set different starting payment standards with reference to a
    certain proportion of the per capita disposable income in the overall planning area last year
    ... the relief proportion for the minimum living standard and the extremely poor shall not be
    less than 70%, and the relief proportion for other relief objects shall be determined by all
    localities according to the actual situation, which is slightly lower than the minimum living
    standard." So a file is refused at load unless 低保 and 特困 are both there, with no deductible
    and a ratio of at least 0.70, and every other category has a deductible share above 0 and a
    ratio below the lowest of theirs. A category is 低保/特困 when it is named so or lists the
    registry's code `dibao` or `tekun`.
    """

    per_capita_disposable_income: Fen  # last year's, for the deductible shares
    annual_limit: Fen  # shared by outpatient chronic/special and inpatient care
    categories: list[AssistanceCategory]
    med_types: list[str] = ["14", "21"]

    @model_validator(mode="after")
    def _three_lines(self) -> "Assistance":
        def where(index: int, category: AssistanceCategory, field: str) -> str:
            return f"categories[{index}] ({category.name}).{field}"

        bottom = [(i, c) for i, c in enumerate(self.categories)
                  if c.name in BOTTOM_NAMES or BOTTOM_CODES.intersection(c.codes)]
        covered = {c.name for _, c in bottom} | {code for _, c in bottom for code in c.codes}
        missing = [name for name, code in (("低保", "dibao"), ("特困", "tekun"))
                   if name not in covered and code not in covered]
        if missing:
            raise ValueError(f"categories: no {' or '.join(missing)} category; the seed's three lines start from "
                             "低保 and 特困 (no deductible, ratio at least 0.70)")
        for index, category in bottom:
            if category.deductible_share != 0:
                raise ValueError(f"{where(index, category, 'deductible_share')} is {category.deductible_share}: "
                                 "低保 and 特困 have no deductible (the seed: cancelled)")
            if category.ratio < BOTTOM_MIN_RATIO:
                raise ValueError(f"{where(index, category, 'ratio')} is {category.ratio}: "
                                 f"低保 and 特困 are assisted at no less than {BOTTOM_MIN_RATIO} (the seed: 70%)")
        floor = min(c.ratio for _, c in bottom)
        for index, category in enumerate(self.categories):
            if any(category is c for _, c in bottom):
                continue
            if category.deductible_share <= 0:
                raise ValueError(f"{where(index, category, 'deductible_share')} is {category.deductible_share}: "
                                 "categories other than 低保 and 特困 have a deductible, a share above 0 of "
                                 "last year's per-capita disposable income")
            if category.ratio >= floor:
                raise ValueError(f"{where(index, category, 'ratio')} is {category.ratio}: categories other than "
                                 f"低保 and 特困 are assisted at a lower ratio than theirs (lowest {floor})")
        return self

    def category(self, code: str | None) -> AssistanceCategory | None:
        for category in self.categories:
            if code in category.codes:
                return category
        return None


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
        if "14" in self.med_types and self.chronic is None and (self.inpatient is None
                                                                 or not self.inpatient.major_outpatient_diseases):
            raise ValueError("med_type 14 needs a [chronic] table or inpatient.major_outpatient_diseases")
        if "21" in self.med_types and self.inpatient is None:
            raise ValueError("med_type 21 needs an [inpatient] table")
        if self.inpatient is not None and self.annual_fund_cap is None:
            raise ValueError("[inpatient] needs annual_fund_cap (the basic fund's annual cap)")
        return self


class RegionPolicy(_Model):
    admdvs: str
    name: str
    sources: list[str] = []
    versions: tuple[PolicyVersion, ...]

    @field_validator("admdvs")
    @classmethod
    def _six_digits(cls, value: str) -> str:
        if len(value) != 6 or not value.isdigit():
            raise ValueError("admdvs must be a 6-digit region code")
        return value

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


class PolicyBook:
    """All regions' policies, looked up by insured region and day."""

    def __init__(self, policies: Iterable[RegionPolicy]):
        self._by_region: dict[str, RegionPolicy] = {}
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
        policy = self._by_region.get(admdvs)
        return policy.in_force(day) if policy else None


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
