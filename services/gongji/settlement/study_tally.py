"""What a period's results add up to, for `gongji simulate` (a what-if policy study): one pass over
the results replay yields, then the figures two runs are compared on. Pure: no I/O.

Definitions, the same for both runs:
- A result counts once per `setl_id`: a resent claim's identical answer is not a second payment (as
  the ledger books it). Settlements count with their amounts, reversals with theirs (negative), so a
  total is the sum of the results, in fen.
- A person's class is their registry entry at the end of the period: in-service or retired
  (psn_type), and their medical-assistance category (psn_idet_type, named by the policy).
- Personal burden is psn_part_amt (account, family account and cash) summed per person over the
  period, net of reversals, over the persons with at least one counted result. Mean: the sum over
  the count, rounded half up to the fen. Median, p90, p99: nearest rank, the value at rank
  ⌈p × n / 100⌉ of the n values in ascending order (so the median of an even count is the lower
  middle value): every one is what some person bore, in whole fen.
- A person reaches a cap when their accumulator for the year, at the end of the period, is at the
  cap of the policy version in force on the last day of a settlement (not a reversal) that year.
- The cost per 1,000 insured per month: funds paid × 1,000 ÷ (insured persons of the region in
  the registry at the end, status active) ÷ (calendar months with a counted settlement), rounded
  half up to the fen.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import ROUND_HALF_UP, Decimal

from gongji.settlement.domain import PersonState
from gongji.settlement.events import Person
from gongji.settlement.policy import PolicyBook, PolicyVersion

#: The money fields tallied, in the order shown: the funds (fund_pay_sumamt is their sum), then what
#: the person bore and how.
FUNDS = ("hifp_pay", "hifob_pay", "cvlserv_pay", "maf_pay", "oth_pay", "fund_pay_sumamt",
         "acct_pay", "acct_mulaid_pay", "psn_cash_pay", "psn_part_amt", "medfee_sumamt")
FUND_NAMES = {
    "hifp_pay": "统筹 basic pooling", "hifob_pay": "大额 large-amount", "cvlserv_pay": "公务员 civil servant",
    "maf_pay": "救助 assistance", "oth_pay": "其他 other", "fund_pay_sumamt": "funds paid",
    "acct_pay": "个人账户 account", "acct_mulaid_pay": "家庭共济 family account", "psn_cash_pay": "现金 cash",
    "psn_part_amt": "personal burden", "medfee_sumamt": "medical fees",
}
PAID = FUNDS.index("fund_pay_sumamt")
BURDEN = FUNDS.index("psn_part_amt")
COUNTED = ("settlement", "reversal")


def fen(text: str) -> int:
    """A wire amount ("305.50", "-100.00": replay's JSON form, always two places) in fen, exactly."""
    if len(text) < 4 or text[-3] != ".":
        raise ValueError(f"not an amount with two places: {text!r}")
    return int(text[:-3] + text[-2:])


def percentile(values: list[int], p: int) -> int:
    """Nearest rank: the value at rank ⌈p·n/100⌉ (1-based) of `values` sorted ascending."""
    if not values:
        return 0
    ordered = sorted(values)
    rank = -(-p * len(ordered) // 100)
    return ordered[max(rank, 1) - 1]


def mean(values: list[int]) -> int:
    """The sum over the count, rounded half up to the fen (0 for none)."""
    if not values:
        return 0
    return int((Decimal(sum(values)) / len(values)).quantize(Decimal(1), ROUND_HALF_UP))


@dataclass(slots=True)
class PersonTally:
    region: str
    funds: list[int]


@dataclass
class Tally:
    """One run's results, added one at a time (`add`), then `close`d with the state it left."""

    seen: set[str] = field(default_factory=set)
    totals: list[int] = field(default_factory=lambda: [0] * len(FUNDS))
    # (dimension, key) → the money fields; dimensions: region, med_type (the claim's)
    groups: dict[tuple[str, str], list[int]] = field(default_factory=dict)
    persons: dict[str, PersonTally] = field(default_factory=dict)
    institutions: dict[str, int] = field(default_factory=dict)  # fixmedins_code → funds paid there
    last_day: dict[int, str] = field(default_factory=dict)  # year → the last setl_time date settled in it
    months: set[str] = field(default_factory=set)
    counts: dict[str, int] = field(default_factory=dict)  # event_type → results (a resend counts once)
    resent: int = 0
    # Filled by close(): class per person, persons at each cap, insured per region.
    classes: dict[str, tuple[str, str]] = field(default_factory=dict)
    caps: dict[str, set[str]] = field(default_factory=dict)
    insured: dict[str, int] = field(default_factory=dict)

    def add(self, result: Mapping) -> None:
        kind = result["event_type"]
        if kind in COUNTED:
            setl_id = result["setl_id"]
            if setl_id in self.seen:
                self.resent += 1
                return
            self.seen.add(setl_id)
        self.counts[kind] = self.counts.get(kind, 0) + 1
        if kind not in COUNTED:
            return
        amounts = [fen(result[name]) for name in FUNDS]
        region, psn_no = result["insu_admdvs"], result["psn_no"]
        for target in (self.totals, self._group("region", region), self._group("med_type", result["med_type"])):
            for index, amount in enumerate(amounts):
                target[index] += amount
        person = self.persons.get(psn_no)
        if person is None:
            person = self.persons[psn_no] = PersonTally(region, [0] * len(FUNDS))
        for index, amount in enumerate(amounts):
            person.funds[index] += amount
        code = result["fixmedins_code"]
        self.institutions[code] = self.institutions.get(code, 0) + amounts[PAID]
        if kind == "settlement":  # a reversal's date is not a month of care, nor the last day settled
            day = result["setl_time"][:10]
            year = int(day[:4])
            if day > self.last_day.get(year, ""):
                self.last_day[year] = day
            self.months.add(day[:7])

    def _group(self, dimension: str, key: str) -> list[int]:
        found = self.groups.get((dimension, key))
        if found is None:
            found = self.groups[(dimension, key)] = [0] * len(FUNDS)
        return found

    def close(self, registry: Mapping[str, Person], states: Mapping[str, PersonState], book: PolicyBook) -> None:
        """Classes, insured counts and caps from the registry and the state the run left behind."""
        for person in registry.values():
            if person.active:
                self.insured[person.insu_admdvs] = self.insured.get(person.insu_admdvs, 0) + 1
        for psn_no in self.persons:
            person = registry.get(psn_no)
            self.classes[psn_no] = person_class(person, book, self.last_day)
            if person is None:
                continue
            state = states.get(psn_no)
            for year, totals in (state.years.items() if state else ()):
                if year not in self.last_day:
                    continue
                version = book.in_force(person.insu_admdvs, date.fromisoformat(self.last_day[year]))
                for cap in caps_reached(version, person, totals) if version else ():
                    self.caps.setdefault(f"{person.insu_admdvs} {cap}", set()).add(psn_no)

    def by_class(self) -> dict[tuple[str, str], list[int]]:
        """(dimension, key) → the money fields, for the two class dimensions: status, assistance."""
        grouped: dict[tuple[str, str], list[int]] = {}
        for psn_no, person in self.persons.items():
            status, assistance = self.classes.get(psn_no, ("unknown", "unknown"))
            for key in (("status", status), ("assistance", assistance)):
                target = grouped.setdefault(key, [0] * len(FUNDS))
                for index, amount in enumerate(person.funds):
                    target[index] += amount
        return grouped

    def burdens(self) -> dict[str, list[int]]:
        """Class label ("in-service", "retired", an assistance category, "all") → each person's burden."""
        found: dict[str, list[int]] = {"all": []}
        for psn_no, person in self.persons.items():
            status, assistance = self.classes.get(psn_no, ("unknown", "unknown"))
            found["all"].append(person.funds[BURDEN])
            found.setdefault(status, []).append(person.funds[BURDEN])
            if assistance != "none":
                found.setdefault(assistance, []).append(person.funds[BURDEN])
        return found

    def cost_per_thousand(self, region: str) -> Decimal | None:
        """Funds paid for the region's insured, yuan per 1,000 insured per month (None: no one insured)."""
        insured, months = self.insured.get(region, 0), len(self.months)
        if not insured or not months:
            return None
        paid = self.groups.get(("region", region), [0] * len(FUNDS))[PAID]
        return (Decimal(paid) * 1000 / insured / months / 100).quantize(Decimal("0.01"), ROUND_HALF_UP)


def person_class(person: Person | None, book: PolicyBook, last_day: Mapping[int, str]) -> tuple[str, str]:
    """(in-service or retired, the assistance category's name or "none")."""
    if person is None:
        return "unknown", "unknown"
    status = "retired" if person.retired else "in-service"
    if not person.psn_idet_type:
        return status, "none"
    name = person.psn_idet_type
    if last_day:
        version = book.in_force(person.insu_admdvs, date.fromisoformat(last_day[max(last_day)]))
        category = version.assistance.category(name) if version and version.assistance else None
        name = category.name if category else name
    return status, name


def caps_reached(version: PolicyVersion, person: Person, totals) -> Iterable[str]:
    """The names of the caps a year's accumulators (domain.YearTotals) have reached (a cap of 0 is
    no cap anyone reaches)."""
    general = version.general_outpatient
    checks = [("普通门诊统筹 annual cap", general.annual_cap.for_person(person.retired), totals.outpatient_pool_paid),
              ("basic fund annual cap", version.annual_fund_cap, totals.fund_cap_used)]
    checks += [(f"门诊慢特病 {group.name} limit", group.annual_limit, totals.chronic_paid.get(group.name, 0))
               for group in (version.chronic.groups if version.chronic else ())]
    checks += [(name, rules.annual_cap if rules else None, paid)
               for name, rules, paid in (("大额 annual cap", version.large_amount, totals.hifob_paid),
                                         ("公务员 annual cap", version.civil_servant, totals.cvlserv_paid))]
    checks.append(("救助 annual limit", version.assistance.annual_limit if version.assistance else None,
                   totals.maf_paid))
    return [name for name, cap, paid in checks if cap and paid >= cap]
