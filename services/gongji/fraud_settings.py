"""The fraud rules' thresholds: the `fraud` section of gongji.settings.Settings (env
`GONGJI_FRAUD__<NAME>`), apart so the settings module stays readable. Every value is a **sample**
for a supervisor to tune (README, "Fraud signals").
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from pydantic import BaseModel, Field, field_validator


class FraudSettings(BaseModel):
    """Thresholds of the fraud rules (env `GONGJI_FRAUD__VISITS_PER_DAY=3`). The seeds name the
    indicators (冒名就医, 分解收费, 超量开药, 高额医疗费用预警) but give no numbers: every value here is a
    **sample** for a supervisor to tune."""

    # VISITS_PER_DAY / VISITS_PER_WEEK: more settled visits than this in a Shanghai calendar day / ISO week.
    visits_per_day: int = Field(3, ge=1)
    visits_per_week: int = Field(10, ge=1)
    # SHOPPING: more distinct institutions than this for one person in a day.
    shopping_institutions: int = Field(3, ge=1)
    # IMPOSSIBLE_TRAVEL (冒名就医 indicator): two settlements in different treatment regions
    # (mdtrtarea_admvs) less than this many hours apart.
    travel_min_hours: float = Field(3.0, gt=0)
    # EARLY_REFILL (超量开药/重复开药): the assumption is that one unit of a drug line (cnt) is one day's
    # supply, `refill_days_per_unit` (per-code overrides below); a new dispensing of the same drug
    # (med_list_codg) before `1 - refill_tolerance` of the last supply has run out is early.
    drug_list_types: tuple[str, ...] = ("101", "102", "103")  # 西药中成药, 中药饮片, 医疗机构制剂
    refill_days_per_unit: Decimal = Field(Decimal("1"), gt=0)
    refill_days_per_unit_by_code: dict[str, Decimal] = {}
    refill_tolerance: Decimal = Field(Decimal("0.2"), ge=0, lt=1)
    # SPLIT_BILLING (分解收费): more claims of at most `split_max_amount` yuan (medfee_sumamt) than
    # `split_claims` for one person at one institution in a day.
    split_claims: int = Field(3, ge=1)
    split_max_amount: Decimal = Field(Decimal("50.00"), gt=0)
    # SUSPENDED_BENEFITS: more refusals with these codes than this in a day for one person.
    suspended_codes: tuple[str, ...] = ("NOT_INSURED",)
    suspended_claims: int = Field(0, ge=0)
    # INSTITUTION_SPIKE: a day's settlements (or reversals) above `spike_factor` times the
    # institution's own average over the previous `spike_baseline_days` days, and at least the minimum.
    # No signal without a baseline: at least `spike_min_baseline_days` of those days had settlements.
    spike_factor: Decimal = Field(Decimal("3"), gt=0)
    spike_baseline_days: int = Field(7, ge=1)
    spike_min_baseline_days: int = Field(1, ge=1)
    spike_min_volume: int = Field(20, ge=1)
    spike_min_reversals: int = Field(5, ge=1)
    # Crash replays reach an institution's day at most this many events back (see fraud.rules.on_activity).
    institution_dedupe_ids: int = Field(2000, ge=1)
    # HIGH_EXPENSE (高额医疗费用预警, seed 003): a person's in-scope burden (psn_part_amt without 丙类, non-medical
    # and over-limit-price amounts, net of reversals) in a year above this many yuan, or where both are set this
    # share of the insured region's last-year per-capita disposable income (the policy file's figure, by region).
    high_expense_amount: Decimal = Field(Decimal("20000.00"), gt=0)
    high_expense_income_share: Decimal | None = Field(None, gt=0)
    high_expense_income: dict[str, Decimal] = {}
    # OOP_SHARE (seed 003): a person in an assistance category with at least `oop_share_min_inscope` yuan in
    # scope in a year, more than their region's threshold of it left to them (gongji.common.burden).
    oop_share_threshold: Decimal = Field(Decimal("0.20"), gt=0, lt=1)
    oop_share_threshold_by_region: dict[str, Annotated[Decimal, Field(gt=0, lt=1)]] = {}
    oop_share_min_inscope: Decimal = Field(Decimal("5000.00"), ge=0)
    # How long a person's claim lines wait for their settlement (and refusals for their claim).
    join_days: int = Field(3, ge=1)
    # Event time (issue 14): an institution's day is judged once the settlement-time watermark of
    # every person partition that feeds it has passed the day's end plus this lateness; an event
    # read after that (or this far behind its partition's newest) is counted and logged as late, and
    # revises what was judged (a withdrawal, or a signal raised late). A partition that sent nothing
    # for `idle_seconds` (wall clock) is left out of the watermark until it sends again.
    allowed_lateness_seconds: float = Field(3600.0, ge=0)
    idle_seconds: float = Field(30.0, gt=0)
    # Not a rule: the service takes what one poll returns, up to this many events (a poll that finds
    # nothing waits this many seconds), and saves each window they changed once, after the batch's
    # signals are acknowledged.
    batch_events: int = Field(1000, ge=1)
    batch_seconds: float = Field(0.05, gt=0)
    # Not a rule: the windows changed are saved to the changelog and the offsets committed together
    # (a checkpoint) once `save_seconds` have passed or `batch_events` events were handled since the
    # last one (0: after every batch). A crash replays what came after the last checkpoint.
    save_seconds: float = Field(0.5, ge=0)
    # Not a rule: the fraud group's fetches return once they hold `fetch_min_bytes` or have waited
    # `fetch_max_wait_ms` (in place of GONGJI_KAFKA_DOWNSTREAM_FETCH_*): fuller batches cost less a
    # result, and a signal for an auditor is not late for a quarter of a second.
    fetch_min_bytes: int = Field(256 * 1024, ge=1)
    fetch_max_wait_ms: int = Field(250, ge=0)

    def oop_threshold(self, region: str | None) -> Decimal:  # for persons insured in `region`
        return self.oop_share_threshold_by_region.get(region or "", self.oop_share_threshold)

    @field_validator("high_expense_income_share", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value  # to_env gives None as the empty string
