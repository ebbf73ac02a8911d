"""The medical-assistance terms of a region's policy (医疗救助, POLICY.md §6): the categories under
the seed's three lines, 倾斜救助 above the annual relief limit, and which category a person is in on
a day (standing, or granted on application). Part of gongji.settlement.policy's file format.
"""

from __future__ import annotations

import functools
from datetime import date
from decimal import Decimal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from gongji.common.fields import Fen, Ratio


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class AssistanceCategory(_Model):
    """One category of 医疗救助 (the 三条线: deductible, ratio, annual limit)."""

    name: str
    codes: list[str]  # psn_idet_type values of the person registry
    ratio: Ratio
    # 低保 and 特困: no deductible; 低保边缘 and 因病致贫: a share of last year's per-capita disposable income.
    deductible_share: Ratio = Decimal(0)


class Preferential(_Model):
    """倾斜救助 (preferential assistance) on top of the annual relief limit, on the region's terms.

    Seed 003: "For the relief objects who still have a heavy personal burden after being guaranteed
    by the triple system, the local government shall give preferential assistance at its own expense
    within the scope of its policy according to the actual situation." The seed sets no number: how
    heavy is heavy, the ratio and the limit are the region's (sample values in the shipped files).
    A relief object's in-scope burden left after the three layers (basic insurance, the large-amount
    and civil-servant subsidies, 医疗救助) counts towards `heavy_burden` over the calendar year, like
    a deductible; what is left above it is paid at `ratio`, up to `annual_limit` a year, a limit of
    its own beside the relief limit (the assistance fund pays it: counted in maf_pay, 610100).
    """

    heavy_burden: Fen = Field(gt=0)  # the year's in-scope burden left after the three layers that is "heavy"
    ratio: Ratio = Field(gt=0, le=1)
    annual_limit: Fen = Field(gt=0)


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
    preferential: Preferential | None = None  # 倾斜救助, above the annual relief limit

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

    @functools.cached_property
    def _by_code(self) -> dict[str, AssistanceCategory]:
        found: dict[str, AssistanceCategory] = {}
        for category in self.categories:
            for code in category.codes:
                found.setdefault(code, category)  # the first category listing a code has it
        return found

    def category(self, code: str | None) -> AssistanceCategory | None:
        return self._by_code.get(code)

    def category_on(self, person, day: date | str) -> AssistanceCategory | None:
        """The person's category on `day` (a date or its ISO text, Asia/Shanghai): their standing identification
        (psn_idet_type), else a category granted on application (seed 003: "For key monitoring groups,
        implement assistance according to application") for a period that holds `day`, both ends
        included. A code the policy does not list gives no assistance."""
        standing = self.category(person.psn_idet_type)
        if standing is not None or person.aid_idet_type is None:
            return standing
        if not isinstance(day, str):
            day = day.isoformat()
        if person.aid_begndate <= day <= person.aid_enddate:
            return self.category(person.aid_idet_type)
        return None
