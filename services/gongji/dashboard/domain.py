"""What the dashboard shows, computed from decoded records: pure, no I/O.

A `Board` folds the records the adapter reads (results on `settlements`, `dead-letters`,
`fraud.signals`, `clearing.statements`, the institution registry) and the consumer lag it measures
into running figures; `snapshot()` turns them into one JSON-ready dict, the whole page's state, so a
page that connects late is right at once. Figures count from where the adapter started reading
(`since`), not from the beginning of time.

Reading the figures:
- Money is net of reversals: a reversal result carries the original's amounts negated. Counts of
  claims are net too (`claims`, `counts.net_settlements`): a reversal takes its claim back out of
  the slice it was counted in (a reversal of a settlement from before `since` takes one out as
  well, as its money does); `settlements` and `reversals` stay the gross counts of each kind.
- A result repeated for an id already counted (a resend answered again, a redelivery) counts
  once, under `repeats`; `answered` counts every answer to a message on `claims`, repeats included
  (what a sender waits for before it takes stock).
- Annual cap: a general-outpatient settlement (med_type 11) reached the cap when its pooling line
  (setldetail 310100) paid all of `crt_payb_lmt_amt`, the limit left before the claim (0 left
  included: the person was already there). The share is of the persons with a general-outpatient
  settlement since `since`; a later reversal does not take a person back off the list.
- Persons are shown as keyed pseudonyms (`pseudonym`, gongji.common.pseudonym): a fraud signal
  about a person is kept with its subject_id already replaced, so no raw psn_no reaches a page, its
  JSON or the demo's summary.
- Institution level comes from `registry.institutions` (`medins_lv`; retail pharmacies apart); a
  result for an institution not seen there yet is counted under "unknown" until it is, then moves.
"""

from __future__ import annotations

from collections import Counter, OrderedDict, deque
from dataclasses import dataclass, field
from decimal import Decimal

from gongji.common.pseudonym import Pseudonym
from gongji.contract.wire import FUNDS, POOLING

ZERO = Decimal("0.00")

#: The funds shown (oth_pay, "other", no rule here ever pays).
SHOWN_FUNDS = tuple(fund for fund in FUNDS if fund.field != "oth_pay")
GENERAL_OUTPATIENT = "11"
#: Money totals kept, wire field → what it is.
TOTALS = ("medfee_sumamt", "fund_pay_sumamt", "acct_pay", "acct_mulaid_pay", "psn_cash_pay")
#: Money kept apart for settlements and for reversals (the demo shows both), wire fields.
PAID = (*TOTALS, *(fund.field for fund in SHOWN_FUNDS))
LEVELS = {"3": "Level 3 hospitals", "2": "Level 2 hospitals", "1": "Level 1 & grassroots"}
PHARMACY = "Retail pharmacies"
UNKNOWN = "Unknown (not in registry yet)"
RATE_WINDOW = 5  # seconds averaged for "settlements per second"
HISTORY = 120  # seconds of the per-second series kept and shown


def short_reason(reason: str, parts: int = 2, width: int = 60) -> str:
    """A dead letter's reason, its first clauses: what kind of failure, not this message's detail."""
    short = ": ".join(reason.split(": ")[:parts])
    return short if len(short) <= width else short[:width - 1] + "…"


@dataclass
class _Tally:
    """Counts and money of one slice (a region, an institution, a pair of regions)."""

    settlements: int = 0
    reversals: int = 0
    fund: dict[str, Decimal] = field(default_factory=lambda: {fund.code: ZERO for fund in SHOWN_FUNDS})
    fund_paid: Decimal = ZERO
    medfee: Decimal = ZERO  # medical fees (medfee_sumamt), net of reversals
    settled_fund: Decimal = ZERO  # fund paid by the settlements alone, before reversals

    @property
    def claims(self) -> int:
        """Claims settled and not reversed: a reversal takes its claim out."""
        return self.settlements - self.reversals

    def add(self, kind: str, data: dict) -> None:
        paid = data.get("fund_pay_sumamt") or ZERO
        if kind == "settlement":
            self.settlements += 1
            self.settled_fund += paid
        else:
            self.reversals += 1
        for fund in SHOWN_FUNDS:
            self.fund[fund.code] += data.get(fund.field) or ZERO
        self.fund_paid += paid
        self.medfee += data.get("medfee_sumamt") or ZERO

    def merge(self, other: _Tally) -> None:
        self.settlements += other.settlements
        self.reversals += other.reversals
        for code in self.fund:
            self.fund[code] += other.fund[code]
        self.fund_paid += other.fund_paid
        self.medfee += other.medfee
        self.settled_fund += other.settled_fund

    def to_json(self) -> dict:
        return {"settlements": self.settlements, "reversals": self.reversals, "claims": self.claims,
                "fund_paid": _f(self.fund_paid), "medfee": _f(self.medfee),
                "by_fund": {code: _f(amount) for code, amount in self.fund.items()}}


def _f(value: Decimal) -> float:
    return float(round(value, 2))


def cap_reached(settlement: dict) -> bool | None:
    """Whether a settlement's pooling payment used up the annual limit left before it; None when it
    is not a general-outpatient settlement with a pooling line."""
    if settlement.get("med_type") != GENERAL_OUTPATIENT:
        return None
    for line in settlement.get("setldetail") or ():
        if line.get("fund_pay_type") == POOLING and line.get("crt_payb_lmt_amt") is not None:
            return line["fund_payamt"] >= line["crt_payb_lmt_amt"]
    return None


class Board:
    """Running figures of everything the dashboard reads. Times are Unix seconds (record timestamps
    for the per-second series, so records read back on start land in the seconds they happened)."""

    def __init__(self, since: float, region_names: dict[str, str] | None = None, *, latest_signals: int = 12,
                 latest_statements: int = 8, latest_settlements: int = 8, remember: int = 200_000,
                 pseudonym: Pseudonym | None = None):
        self.since = since
        self.pseudonym = pseudonym or Pseudonym(None)
        self.region_names = dict(region_names or {})
        self.counts: Counter = Counter()  # settlement, reversal, rejection, credit, dead letter, fraud signal
        self.repeats = 0
        self.answered = 0  # messages on `claims` answered, repeats included
        self.paid = {"settlement": dict.fromkeys(PAID, ZERO), "reversal": dict.fromkeys(PAID, ZERO)}
        self.latest: deque[dict] = deque(maxlen=latest_settlements)
        self.funds = _Tally()
        self.regions: dict[str, _Tally] = {}
        self.institutions: dict[str, _Tally] = {}  # fixmedins_code → figures; levels joined at snapshot
        self.registry: dict[str, tuple[str, str]] = {}  # fixmedins_code → (fixmedins_type, medins_lv)
        self.flows: dict[tuple[str, str], _Tally] = {}  # (insured, treated in) when they differ
        self.mulaid_claims = 0
        self.cap_persons: set[str] = set()
        self.cap_reached: set[str] = set()
        self.rejections: Counter = Counter()
        self.dead_letters: Counter = Counter()
        self.signals: OrderedDict[str, dict] = OrderedDict()
        self.signal_rules: Counter = Counter()
        self.standing: dict[str, str] = {}  # signal_id → rule_id of every signal counted and not withdrawn
        self.statements: OrderedDict[str, dict] = OrderedDict()
        self.per_second: Counter = Counter()  # whole second → settlements
        self.lag: dict[str, dict] = {}
        self.lag_at: float | None = None
        self._latest_signals = latest_signals
        self._latest_statements = latest_statements
        self._remember = remember
        self._seen: OrderedDict = OrderedDict()

    # ------------------------------------------------------------------ folding records
    def result(self, kind: str, data: dict, at: float) -> None:
        """One record from `settlements`: kind is its gongji-type header (settlement, reversal,
        rejection, credit)."""
        if kind != "credit" and (kind != "rejection" or data.get("input_type") in ("claim", "reversal")):
            self.answered += 1
        ident = (data.get("setl_id") if kind == "settlement" else None) or data.get("claim_id") \
            or data.get("credit_id") or data.get("psn_no")
        if self._repeat(kind, ident):
            self.repeats += 1
            return
        self.counts[kind] += 1
        if kind == "rejection":
            self.rejections[data.get("err_code") or "?"] += 1
        elif kind in ("settlement", "reversal"):
            self._money_result(kind, data, at)

    def _money_result(self, kind: str, data: dict, at: float) -> None:
        paid = self.paid[kind]
        for name in PAID:
            paid[name] += data.get(name) or ZERO
        self.funds.add(kind, data)
        insured, treated = data.get("insu_admdvs") or "?", data.get("mdtrtarea_admvs") or "?"
        self.regions.setdefault(insured, _Tally()).add(kind, data)
        self.institutions.setdefault(data.get("fixmedins_code") or "?", _Tally()).add(kind, data)
        if insured != treated:
            self.flows.setdefault((insured, treated), _Tally()).add(kind, data)
        if kind != "settlement":
            return
        self.latest.append(data)
        self.per_second[int(at)] += 1
        self._forget_old_seconds(int(at))
        if (data.get("acct_mulaid_pay") or ZERO) > 0:
            self.mulaid_claims += 1
        reached = cap_reached(data)
        if reached is not None:
            self.cap_persons.add(data["psn_no"])
            if reached:
                self.cap_reached.add(data["psn_no"])

    def _forget_old_seconds(self, newest: int) -> None:
        if len(self.per_second) > 4 * HISTORY:
            for second in [s for s in self.per_second if s < newest - 2 * HISTORY]:
                del self.per_second[second]

    def dead_letter(self, data: dict) -> None:
        self.counts["dead letter"] += 1
        reason, key = data.get("reason") or "?", data.get("key")
        if key and len(key) >= 4:  # the message's key (a psn_no on claims) named in its reason: the pseudonym
            raw = key.decode("utf-8", "replace") if isinstance(key, bytes) else str(key)
            reason = reason.replace(raw, self.pseudonym(raw))
        self.dead_letters[short_reason(reason)] += 1
        # Settlement answers each message once: a result, a rejection naming it, or else its dead
        # letter. The fraud service, which reads claims too, dead-letters the same junk again.
        if data.get("service") == "settlement" and (data.get("topic") or "").endswith("claims"):
            self.answered += 1

    def fraud_signal(self, data: dict) -> None:
        """A FraudSignal; one raised again (same signal_id) is kept as first seen. A withdrawal
        (status "withdrawn", the same signal_id) takes it out of the list and the counts; it may be
        raised again."""
        ident = data["signal_id"]
        if data.get("status") == "withdrawn":
            rule = self.standing.pop(ident, None)
            if rule is not None:
                self.counts["fraud signal"] -= 1
                self.signal_rules[rule] -= 1
                self.signal_rules += Counter()  # a rule with none standing drops out
                self.signals.pop(ident, None)
            return
        if ident in self.standing:
            return
        self.standing[ident] = data.get("rule_id") or "?"
        self.counts["fraud signal"] += 1
        self.signal_rules[data.get("rule_id") or "?"] += 1
        if data.get("subject_type") != "institution" and data.get("subject_id"):  # persons, and any kind to come
            raw, shown = data["subject_id"], self.pseudonym(data["subject_id"])
            data = {**data, "signal_id": self.pseudonym.signal(ident), "subject_id": shown,
                    "reason": (data.get("reason") or "").replace(raw, shown)}
        self.signals[ident] = data
        while len(self.signals) > self._latest_signals:
            self.signals.popitem(last=False)

    def clearing_statement(self, data: dict) -> None:
        """A ClearingStatement; closing a month again replaces its statement."""
        ident = data["statement_id"]
        self.statements.pop(ident, None)
        self.statements[ident] = data
        while len(self.statements) > self._latest_statements:
            self.statements.popitem(last=False)

    def institution(self, data: dict) -> None:
        """An Institution from the registry (its full current state)."""
        self.registry[data["fixmedins_code"]] = (data.get("fixmedins_type") or "", data.get("medins_lv") or "")

    def set_lag(self, groups: dict[str, dict], at: float) -> None:
        """Consumer lag per service: {service: {"group", "lag", "partitions", "topics": {topic: lag}}}."""
        self.lag = groups
        self.lag_at = at

    def _repeat(self, kind: str, ident) -> bool:
        key = (kind, ident)
        if key in self._seen:
            return True
        self._seen[key] = None
        if len(self._seen) > self._remember:
            self._seen.popitem(last=False)
        return False

    # ------------------------------------------------------------------ reading figures
    def net(self, name: str) -> Decimal:
        """A money field of PAID, net of reversals."""
        return self.paid["settlement"][name] + self.paid["reversal"][name]

    def cross_region(self) -> int:
        """Claims treated outside the insured region, net of reversals."""
        return sum(flow.claims for flow in self.flows.values())

    def level_of(self, code: str) -> str:
        kind, level = self.registry.get(code, ("", ""))
        if not kind and not level:
            return UNKNOWN
        if kind == "2":
            return PHARMACY
        return LEVELS.get(level, f"Level {level}")

    def rate(self, now: float) -> float:
        """Settlements per second over the last RATE_WINDOW whole seconds before `now`."""
        last = int(now) - 1  # the current second is still filling
        return sum(self.per_second[s] for s in range(last - RATE_WINDOW + 1, last + 1)) / RATE_WINDOW

    def region(self, code: str) -> str:
        name = self.region_names.get(code)
        return f"{code} {name}" if name else code

    def snapshot(self, now: float) -> dict:
        levels: dict[str, _Tally] = {}
        for code, tally in self.institutions.items():
            levels.setdefault(self.level_of(code), _Tally()).merge(tally)
        order = [*LEVELS.values(), PHARMACY, UNKNOWN]
        first = int(now) - HISTORY
        persons, reached = len(self.cap_persons), len(self.cap_reached)
        return {
            "generated_at": now,
            "since": self.since,
            "counts": {
                "settlements": self.counts["settlement"], "reversals": self.counts["reversal"],
                "net_settlements": self.counts["settlement"] - self.counts["reversal"],
                "rejections": self.counts["rejection"], "credits": self.counts["credit"],
                "dead_letters": self.counts["dead letter"], "fraud_signals": self.counts["fraud signal"],
                "repeats": self.repeats, "mulaid_claims": self.mulaid_claims,
            },
            "money": {name: _f(self.net(name)) for name in TOTALS},
            "rate": {"now": self.rate(now),
                     "series": [[s, self.per_second.get(s, 0)] for s in range(first, int(now))]},
            "funds": [{"code": f.code, "name": f.label, "amount": _f(self.funds.fund[f.code])} for f in SHOWN_FUNDS],
            "regions": [{"code": code, "label": self.region(code), **tally.to_json()}
                        for code, tally in sorted(self.regions.items())],
            "levels": [{"level": label, **levels[label].to_json()}
                       for label in sorted(levels, key=lambda label: (order.index(label) if label in order
                                                                      else len(order), label))],
            "cap": {"persons": persons, "reached": reached, "share": reached / persons if persons else 0.0},
            "rejections": [{"code": code, "count": n} for code, n in self.rejections.most_common()],
            "dead_letters": [{"reason": reason, "count": n} for reason, n in self.dead_letters.most_common()],
            "flows": [{"insured": self.region(insured), "treated": self.region(treated), **tally.to_json()}
                      for (insured, treated), tally in sorted(self.flows.items())],
            "signals": [_signal(s) for s in reversed(self.signals.values())],
            "signal_rules": [{"rule": rule, "count": n} for rule, n in self.signal_rules.most_common()],
            "statements": [_statement(s, self.region) for s in reversed(self.statements.values())],
            "lag": [{"service": service, **figures} for service, figures in sorted(self.lag.items())],
            "lag_at": self.lag_at,
        }


def _signal(s: dict) -> dict:
    """A FraudSignal for the page: persons already pseudonymous (Board.fraud_signal), claim ids counted."""
    keep = ("signal_id", "rule_id", "category", "severity", "subject_type", "subject_id", "admdvs", "window_start",
            "window_end", "count", "threshold", "reason", "detected_at")
    shown = {name: s.get(name) for name in keep}
    shown["amount"] = _f(s["amount"]) if s.get("amount") is not None else None
    shown["evidence"] = len(s.get("claim_ids") or ())
    return shown


def _statement(s: dict, region) -> dict:
    def flow(f: dict) -> dict:
        return {"settlements": f.get("settlements", 0), "owed": _f(f.get("owed") or ZERO)}
    return {"statement_id": s["statement_id"], "ym": s["ym"], "region_a": region(s["region_a"]),
            "region_b": region(s["region_b"]), "a_to_b": flow(s.get("a_to_b") or {}),
            "b_to_a": flow(s.get("b_to_a") or {}), "net_to_a": _f(s.get("net_to_a") or ZERO)}
