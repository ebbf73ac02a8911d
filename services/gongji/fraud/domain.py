"""Fraud and supervision (基金监管, POLICY.md §9), pure: the events the rules read, their windows,
the buckets they keep their state in, and the signals they raise. The rules are in
gongji.fraud.rules.

State is kept in *buckets*: JSON-able dicts per (scope, subject, window), behind the `Buckets`
interface (in memory for tests; changelog-backed in the service, gongji.fraud.store). Windows are by settlement
time (`setl_time`, event time) in Asia/Shanghai: calendar day, ISO week (from Monday), calendar year.
A signal's id is derived from (rule, subject, window start), so a signal raised again (after a
crash, before its bucket was saved) carries the same id. A signal that later evidence takes back (a
reversal, an event read late) is followed by a withdrawal under the same id: a reader keeps the
latest record per id, and its view converges on what the events give in time order.
"""

from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal
from functools import lru_cache
from typing import TYPE_CHECKING, Protocol

from gongji.common.money import to_fen, to_yuan
from gongji.contract.wire import SHANGHAI

if TYPE_CHECKING:  # a type hint only: the domain takes its thresholds, it does not read settings
    from gongji.fraud_settings import FraudSettings

MAX_EVIDENCE = 50  # claim ids per signal (schema: at most 50)
RAISED, WITHDRAWN = "raised", "withdrawn"  # a signal's status on the wire
DAY = timedelta(days=1)

FRAUD, SUPERVISION, RELIEF = "fraud", "supervision", "relief_review"
# rule id → (category, severity)
RULES = {
    "VISITS_PER_DAY": (SUPERVISION, "medium"),
    "VISITS_PER_WEEK": (SUPERVISION, "low"),
    "SHOPPING": (FRAUD, "medium"),
    "IMPOSSIBLE_TRAVEL": (FRAUD, "high"),
    "EARLY_REFILL": (FRAUD, "medium"),
    "SPLIT_BILLING": (FRAUD, "medium"),
    "SUSPENDED_BENEFITS": (FRAUD, "high"),
    "INSTITUTION_SPIKE": (SUPERVISION, "high"),
    "HIGH_EXPENSE": (RELIEF, "low"),
    "OOP_SHARE": (RELIEF, "medium"),
}


class FraudError(Exception):
    """The root of the fraud context's own exceptions."""


class UnreadableEvent(FraudError, ValueError):
    """An input the rules cannot read (a setl_time without an offset, a record under another type's
    header): it goes to dead-letters, as whatever else reading an input raises."""


class NotAFraudEvent(FraudError, TypeError):
    """`detect` was given something that is not one of the events below."""


# ---------------------------------------------------------------- windows
@dataclass(frozen=True, slots=True)
class Window:
    scope: str  # "day" | "week" | "year" | "none"
    start: datetime
    end: datetime

    def __hash__(self) -> int:  # equal windows start together; the generated hash cost a tenth of the rules
        return hash(self.start)


def day_of(t: datetime) -> Window:
    return _day(t.astimezone(SHANGHAI).toordinal())


@lru_cache(maxsize=8192)
def _day(ordinal: int) -> Window:
    """The Shanghai calendar day of proleptic Gregorian ordinal `ordinal` (windows are remembered)."""
    start = datetime.fromordinal(ordinal).replace(tzinfo=SHANGHAI)
    return Window("day", start, start + DAY)


def week_of(t: datetime) -> Window:
    return _week(t.astimezone(SHANGHAI).toordinal())


@lru_cache(maxsize=8192)
def _week(ordinal: int) -> Window:
    day = _day(ordinal).start
    start = day - timedelta(days=day.weekday())
    return Window("week", start, start + timedelta(days=7))


def year_of(t: datetime) -> Window:
    return _year(t.astimezone(SHANGHAI).year)


@lru_cache(maxsize=256)
def _year(year: int) -> Window:
    return Window("year", datetime(year, 1, 1, tzinfo=SHANGHAI), datetime(year + 1, 1, 1, tzinfo=SHANGHAI))


NO_WINDOW = Window("none", datetime(1970, 1, 1, tzinfo=SHANGHAI), datetime(1970, 1, 1, tzinfo=SHANGHAI))


@lru_cache(maxsize=65536)
def parse_time(text: str) -> datetime:
    """An ISO 8601 time with its offset (the rules read back the same texts often: remembered)."""
    t = datetime.fromisoformat(text)
    if t.tzinfo is None:
        raise UnreadableEvent(f"setl_time without an offset: {text!r}")
    return t


# ---------------------------------------------------------------- events
@dataclass(frozen=True, slots=True)
class VisitSettled:
    """A settlement result (2207) as the rules see it."""

    claim_id: str
    psn_no: str
    fixmedins_code: str
    insu_admdvs: str
    mdtrtarea_admvs: str
    setl_time: datetime
    medfee_fen: int
    psn_part_fen: int
    inscp_burden_fen: int | None = None  # the in-scope part of psn_part (in_scope_burden); None: all of it
    # OOP_SHARE's figures: in scope, what the funds paid, the assistance category settled under.
    inscp_fen: int = 0
    fund_fen: int = 0
    psn_idet_type: str | None = None


@dataclass(frozen=True, slots=True)
class VisitReversed:
    """A reversal result (2208): amounts negated, counted in the original's year."""

    claim_id: str
    orig_claim_id: str
    psn_no: str
    fixmedins_code: str
    mdtrtarea_admvs: str
    setl_time: datetime
    orig_setl_time: datetime
    psn_part_fen: int
    inscp_burden_fen: int | None = None  # negative, as psn_part_fen
    insu_admdvs: str | None = None
    inscp_fen: int = 0  # negated, as the reversal's amounts are
    fund_fen: int = 0
    psn_idet_type: str | None = None


@dataclass(frozen=True, slots=True)
class ClaimFiled:
    """A claim from `claims`: when, and which drugs in what quantity (fee lines of drug list types)."""

    claim_id: str
    psn_no: str
    fixmedins_code: str
    setl_time: datetime
    drugs: tuple[tuple[str, Decimal], ...]


@dataclass(frozen=True, slots=True)
class ClaimRefused:
    claim_id: str
    psn_no: str
    err_code: str


@dataclass(frozen=True, slots=True)
class InstitutionActivity:
    """One settlement or reversal at an institution, passed from the person side to the institution side."""

    fixmedins_code: str
    admdvs: str
    claim_id: str
    kind: str  # "settlement" | "reversal"
    setl_time: datetime

    def to_json(self) -> dict:
        return {"fixmedins_code": self.fixmedins_code, "admdvs": self.admdvs, "claim_id": self.claim_id,
                "kind": self.kind, "setl_time": self.setl_time.isoformat()}

    @classmethod
    def from_json(cls, data: dict) -> "InstitutionActivity":
        return cls(data["fixmedins_code"], data["admdvs"], data["claim_id"], data["kind"],
                   parse_time(data["setl_time"]))


def _fen(amount) -> int:
    """A wire amount: Decimal yuan (SchemaCatalog.decode) or already integer fen (gongji.fraud.reading)."""
    return amount if type(amount) is int else to_fen(amount)


def in_scope_burden(result: dict) -> int:
    """HIGH_EXPENSE's measure (seed 003, 高额医疗费用预警): the personal burden (psn_part_amt) within the
    catalogue's scope, without 全自费 (丙类 lines and non-medical purchases, non_med_flag: fulamt_ownpay_amt)
    nor what is above a limit price (overlmt_selfpay). Negative for a reversal."""
    return _fen(result["psn_part_amt"]) - _fen(result["fulamt_ownpay_amt"]) - _fen(result["overlmt_selfpay"])


def visit_from_wire(result: dict) -> VisitSettled:
    return VisitSettled(result["claim_id"], result["psn_no"], result["fixmedins_code"], result["insu_admdvs"],
                        result["mdtrtarea_admvs"], parse_time(result["setl_time"]), _fen(result["medfee_sumamt"]),
                        _fen(result["psn_part_amt"]), in_scope_burden(result), _fen(result["inscp_scp_amt"]),
                        _fen(result["fund_pay_sumamt"]), result.get("psn_idet_type"))


def reversal_from_wire(result: dict) -> VisitReversed:
    return VisitReversed(result["claim_id"], result["orig_claim_id"], result["psn_no"], result["fixmedins_code"],
                         result["mdtrtarea_admvs"], parse_time(result["setl_time"]),
                         parse_time(result["orig_setl_time"]), _fen(result["psn_part_amt"]),
                         in_scope_burden(result), result.get("insu_admdvs"), _fen(result["inscp_scp_amt"]),
                         _fen(result["fund_pay_sumamt"]), result.get("psn_idet_type"))


def claim_from_wire(claim: dict, config: FraudSettings) -> ClaimFiled:
    drugs = tuple((line["med_list_codg"], Decimal(line["cnt"])) for line in claim["fee_details"]
                  if line["list_type"] in config.drug_list_types)
    return ClaimFiled(claim["claim_id"], claim["psn_no"], claim["fixmedins_code"], parse_time(claim["setl_time"]),
                      drugs)


# ---------------------------------------------------------------- signals
def signal_id(rule_id: str, subject_id: str, window_start: datetime) -> str:
    digest = hashlib.blake2b(f"{rule_id}|{subject_id}|{window_start.isoformat()}".encode(), digest_size=10)
    return f"FS{digest.hexdigest().upper()}"


@dataclass(frozen=True, slots=True)
class Signal:
    rule_id: str
    subject_type: str
    subject_id: str
    admdvs: str | None
    window: Window
    claim_ids: tuple[str, ...]
    count: int
    threshold: str
    reason: str
    amount_fen: int | None = None
    status: str = RAISED  # or WITHDRAWN: later evidence took it back

    def withdrawn(self, reason: str) -> "Signal":
        """The withdrawal of this signal: same rule, subject and window (so the same signal_id)."""
        return replace(self, status=WITHDRAWN, reason=reason)

    @property
    def signal_id(self) -> str:
        return signal_id(self.rule_id, self.subject_id, self.window.start)

    @property
    def category(self) -> str:
        return RULES[self.rule_id][0]

    @property
    def severity(self) -> str:
        return RULES[self.rule_id][1]

    def to_wire(self, detected_at: str) -> dict:
        """The FraudSignal record (schemas/fraud_signal.avsc): pseudonymous ids only."""
        return {"signal_id": self.signal_id, "rule_id": self.rule_id, "category": self.category,
                "severity": self.severity, "subject_type": self.subject_type, "subject_id": self.subject_id,
                "admdvs": self.admdvs, "window_start": self.window.start.isoformat(),
                "window_end": self.window.end.isoformat(), "claim_ids": list(self.claim_ids[:MAX_EVIDENCE]),
                "count": self.count, "threshold": self.threshold,
                "amount": None if self.amount_fen is None else to_yuan(self.amount_fen),
                "reason": self.reason, "detected_at": detected_at, "status": self.status}


# ---------------------------------------------------------------- state
class Buckets(Protocol):
    """Where the rules keep their windows. `get` returns the bucket to change (empty when new);
    `put` stores it. Scopes: person_day, person_week, person_year, person (no window: recent visits,
    drug supplies, claims waiting for their outcome), institution_day."""

    def get(self, scope: str, key: str, window: Window) -> dict: ...

    def put(self, scope: str, key: str, window: Window, value: dict) -> None: ...


def raise_once(bucket: dict, rule_id: str) -> bool:
    """True the first time `rule_id` fires in this bucket's window (or again after a withdrawal)."""
    raised = bucket.setdefault("raised", [])
    if rule_id in raised:
        return False
    raised.append(rule_id)
    return True


def withdraw(bucket: dict, rule_id: str) -> bool:
    """True when `rule_id` stood raised in this bucket's window; it may be raised again."""
    raised = bucket.get("raised", [])
    if rule_id not in raised:
        return False
    raised.remove(rule_id)
    return True


class MemoryBuckets:
    """Buckets in a dict (unit tests, offline use)."""

    def __init__(self):
        self.data: dict[tuple[str, str, datetime], dict] = {}

    def get(self, scope: str, key: str, window: Window) -> dict:
        return copy.deepcopy(self.data.get((scope, key, window.start), {}))

    def put(self, scope: str, key: str, window: Window, value: dict) -> None:
        self.data[(scope, key, window.start)] = copy.deepcopy(value)


class Staged:
    """Buckets read through to `base` and written back only by `flush()`: the service sends a
    batch's signals, waits for the broker, and only then saves the buckets that raised them.

    A bucket is read from `base` once until the flush: the rules change what they read only to put
    it back (a read they leave changes nothing), so a later read may be handed the same dict."""

    def __init__(self, base: Buckets):
        self.base = base
        self.pending: dict[tuple[str, str, datetime], dict] = {}  # by (scope, key, window start)
        self.windows: dict[tuple[str, str, datetime], Window] = {}
        self.read: dict[tuple[str, str, datetime], dict] = {}

    def get(self, scope: str, key: str, window: Window) -> dict:
        place = (scope, key, window.start)
        found = self.pending.get(place)
        if found is None:
            found = self.read.get(place)
            if found is None:
                found = self.read[place] = self.base.get(scope, key, window)
        return found

    def put(self, scope: str, key: str, window: Window, value: dict) -> None:
        place = (scope, key, window.start)
        self.pending[place] = value
        self.windows[place] = window

    def flush(self) -> None:
        for place, value in self.pending.items():
            scope, key, _start = place
            self.base.put(scope, key, self.windows[place], value)
        self.pending.clear()
        self.windows.clear()
        self.read.clear()


@dataclass
class Outcome:
    signals: list[Signal] = field(default_factory=list)  # raised and withdrawn, in the order decided
    forward: list[InstitutionActivity] = field(default_factory=list)

    def extend(self, other: "Outcome") -> None:
        self.signals += other.signals
        self.forward += other.forward
