"""The fraud and supervision rules (基金监管, POLICY.md §9), pure: an event and the buckets in, the
signals (and the activity passed on to the institution side) out. `detect` runs them in order: the
reference the service must agree with.

Two promises every rule keeps:
- counting is distinct by id: each bucket keeps the claim ids it counted, so a redelivered or
  resent result changes nothing;
- a signal is raised once per rule, subject and window: the bucket remembers the rules it raised,
  and the signal id is derived from (rule, subject, window start), so a signal raised again after a
  crash (sent, but its bucket not yet saved) carries the same id;
- the answer does not depend on arrival order (issue 14): each rule is a function of the set of
  events, judged in event time. Counting rules only grow; where later evidence can take a signal back
  (a reversal for EARLY_REFILL and HIGH_EXPENSE, a fuller day or baseline for INSTITUTION_SPIKE) the
  rule follows with a withdrawal under the same id, and INSTITUTION_SPIKE waits for complete days
  (`close`, driven by the event-time watermark).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from decimal import Decimal
from functools import lru_cache
from typing import TYPE_CHECKING

from gongji.common.money import mul_round, to_fen, to_yuan
from gongji.fraud.domain import (MAX_EVIDENCE, NO_WINDOW, SHANGHAI, Buckets, ClaimFiled, ClaimRefused,
                                 InstitutionActivity, NotAFraudEvent, Outcome, Signal, VisitReversed, VisitSettled,
                                 day_of, parse_time, raise_once, week_of, withdraw, year_of)
from gongji.fraud.relief import count_share
from gongji.fraud.spike import close, on_activity

__all__ = ["close", "detect", "on_activity", "on_claim", "on_refusal", "on_reversal", "on_visit"]

if TYPE_CHECKING:  # a type hint only: the rules take their thresholds, they do not read settings
    from gongji.fraud_settings import FraudSettings

MAX_WAITING = 500  # a person's claims waiting for their outcome, or outcomes for their claim
MAX_DISPENSINGS = 50  # a person's dispensings of one drug kept for EARLY_REFILL, the newest
DISPENSING_MEMORY = timedelta(days=400)  # and none older than this before the newest
MAX_TRAVEL_SEEN = 200  # a person's last visit ids judged for IMPOSSIBLE_TRAVEL (a resend of one is not judged again)
TRAVEL_MEMORY = timedelta(days=7)  # visits kept for IMPOSSIBLE_TRAVEL before the newest (by event time)
MAX_TRAVEL_VISITS = 200
END_OF_STREAM = datetime.max.replace(tzinfo=SHANGHAI)  # a watermark past every window


@lru_cache(maxsize=64)
def _fen_of(amount: Decimal) -> int:
    """A configured amount in fen (thresholds are read per event: converted once)."""
    return to_fen(amount)


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h"


# ---------------------------------------------------------------- person rules
def on_visit(config: FraudSettings, buckets: Buckets, visit: VisitSettled) -> Outcome:
    out = Outcome()
    psn = visit.psn_no

    # The day: visits, institutions, small claims.
    day = day_of(visit.setl_time)
    bucket = buckets.get("person_day", psn, day)
    visits = bucket.setdefault("visits", {})  # claim_id → [fixmedins_code, medfee fen]
    if visit.claim_id not in visits:
        visits[visit.claim_id] = [visit.fixmedins_code, visit.medfee_fen]
        out.forward.append(InstitutionActivity(visit.fixmedins_code, visit.mdtrtarea_admvs, visit.claim_id,
                                               "settlement", visit.setl_time))
        ids = tuple(visits)
        if len(visits) > config.visits_per_day and raise_once(bucket, "VISITS_PER_DAY"):
            out.signals.append(Signal("VISITS_PER_DAY", "person", psn, visit.insu_admdvs, day, ids, len(ids),
                                      f"> {config.visits_per_day} visits",
                                      f"{len(ids)} settled visits in one day (more than {config.visits_per_day})."))
        institutions = sorted({code for code, _ in visits.values()})
        if len(institutions) > config.shopping_institutions and raise_once(bucket, "SHOPPING"):
            out.signals.append(Signal("SHOPPING", "person", psn, visit.insu_admdvs, day, ids, len(institutions),
                                      f"> {config.shopping_institutions} institutions",
                                      f"Settled at {len(institutions)} institutions in one day "
                                      f"({', '.join(institutions)})."))
        limit = _fen_of(config.split_max_amount)
        small = [cid for cid, (code, fen) in visits.items() if code == visit.fixmedins_code and fen <= limit]
        if len(small) > config.split_claims and raise_once(bucket, "SPLIT_BILLING"):
            out.signals.append(Signal("SPLIT_BILLING", "person", psn, visit.insu_admdvs, day, tuple(small),
                                      len(small), f"> {config.split_claims} claims of at most "
                                      f"{to_yuan(limit)} yuan at one institution",
                                      f"{len(small)} claims of at most {to_yuan(limit)} yuan at "
                                      f"{visit.fixmedins_code} in one day: possible split billing (分解收费)."))
        buckets.put("person_day", psn, day, bucket)

    # The week.
    week = week_of(visit.setl_time)
    bucket = buckets.get("person_week", psn, week)
    ids = bucket.setdefault("visits", [])
    if visit.claim_id not in ids:
        ids.append(visit.claim_id)
        if len(ids) > config.visits_per_week and raise_once(bucket, "VISITS_PER_WEEK"):
            out.signals.append(Signal("VISITS_PER_WEEK", "person", psn, visit.insu_admdvs, week, tuple(ids),
                                      len(ids), f"> {config.visits_per_week} visits",
                                      f"{len(ids)} settled visits in one week (more than "
                                      f"{config.visits_per_week})."))
        buckets.put("person_week", psn, week, bucket)

    out.signals += _count_burden(config, buckets, psn, visit.insu_admdvs, visit.setl_time, visit.claim_id,
                                 visit.psn_part_fen if visit.inscp_burden_fen is None else visit.inscp_burden_fen)
    out.signals += count_share(config, buckets, psn, visit.insu_admdvs, visit.setl_time, visit.claim_id,
                               visit.psn_idet_type, visit.inscp_fen, visit.fund_fen)
    out.signals += _travel(config, buckets, visit)
    out.signals += _outcome(config, buckets, psn, visit.claim_id, {"o": "settled", "a": visit.insu_admdvs})
    return out


def on_reversal(config: FraudSettings, buckets: Buckets, reversal: VisitReversed) -> Outcome:
    """A reversal counts against the original's year (its burden is negative) and ends the supply of
    the drugs its original dispensed. Visits stay counted: a visit settled then reversed is still a
    visit the supervisor wants to see. The institution's reversal count goes by the reversal's own day."""
    out = Outcome()
    out.signals += _count_burden(config, buckets, reversal.psn_no, reversal.insu_admdvs, reversal.orig_setl_time,
                                 reversal.claim_id, reversal.psn_part_fen if reversal.inscp_burden_fen is None
                                 else reversal.inscp_burden_fen)
    out.signals += count_share(config, buckets, reversal.psn_no, reversal.insu_admdvs, reversal.orig_setl_time,
                               reversal.claim_id, reversal.psn_idet_type, reversal.inscp_fen, reversal.fund_fen)
    profile = buckets.get("person", reversal.psn_no, NO_WINDOW)
    changed = _end_supply(profile, reversal.orig_claim_id, reversal.setl_time)
    if changed is not None:
        # Read after the refill it cancels: the drugs it dispensed are judged again (a withdrawal).
        out.signals += _judge_refills(config, buckets, profile, reversal.psn_no, changed)
        buckets.put("person", reversal.psn_no, NO_WINDOW, profile)
    out.forward.append(InstitutionActivity(reversal.fixmedins_code, reversal.mdtrtarea_admvs, reversal.claim_id,
                                           "reversal", reversal.setl_time))
    return out


def on_claim(config: FraudSettings, buckets: Buckets, claim: ClaimFiled) -> Outcome:
    """A claim as filed: its time and drug lines wait for its outcome on `settlements`, or meet an
    outcome that came first."""
    profile = buckets.get("person", claim.psn_no, NO_WINDOW)
    claims = profile.setdefault("claims", {})
    if claim.claim_id in claims:
        return Outcome()
    claims[claim.claim_id] = {"t": claim.setl_time.isoformat(), "i": claim.fixmedins_code,
                              "d": [[code, str(cnt)] for code, cnt in claim.drugs]}
    # Forget joined claims older than join_days before this one; claims still waiting for their
    # outcome stay (the two topics are read at their own pace), up to a bound.
    horizon = claim.setl_time - timedelta(days=config.join_days)
    for cid in [cid for cid, entry in claims.items() if entry.get("done") and parse_time(entry["t"]) < horizon]:
        del claims[cid]
    while len(claims) > MAX_WAITING:
        del claims[next(iter(claims))]
    waiting = profile.setdefault("waiting", {})
    outcome = waiting.pop(claim.claim_id, None)
    buckets.put("person", claim.psn_no, NO_WINDOW, profile)
    signals = _joined(config, buckets, claim.psn_no, claim.claim_id, outcome) if outcome else []
    return Outcome(signals)


def on_refusal(config: FraudSettings, buckets: Buckets, refusal: ClaimRefused) -> Outcome:
    if refusal.err_code not in config.suspended_codes or not refusal.claim_id or not refusal.psn_no:
        return Outcome()
    return Outcome(_outcome(config, buckets, refusal.psn_no, refusal.claim_id, {"o": refusal.err_code}))


def _outcome(config: FraudSettings, buckets: Buckets, psn: str, claim_id: str, outcome: dict) -> list[Signal]:
    """The outcome of a claim: joined now with its claim lines if they came first, else waits for them."""
    profile = buckets.get("person", psn, NO_WINDOW)
    claim = profile.get("claims", {}).get(claim_id)
    if claim is None:
        waiting = profile.setdefault("waiting", {})
        if claim_id in waiting:
            return []
        waiting[claim_id] = outcome
        while len(waiting) > MAX_WAITING:  # outcomes whose claim never comes (another topic prefix, a lost claim)
            del waiting[next(iter(waiting))]
        buckets.put("person", psn, NO_WINDOW, profile)
        return []
    return _joined(config, buckets, psn, claim_id, outcome)


def _joined(config: FraudSettings, buckets: Buckets, psn: str, claim_id: str, outcome: dict) -> list[Signal]:
    profile = buckets.get("person", psn, NO_WINDOW)
    claim = profile["claims"][claim_id]
    if claim.get("done"):
        return []
    claim["done"] = outcome["o"]
    t = parse_time(claim["t"])
    signals = []
    if outcome["o"] == "settled":
        signals = _refill(config, profile, psn, claim_id, t, outcome.get("a"), claim["d"], buckets)
    elif outcome["o"] in config.suspended_codes:
        day = day_of(t)
        bucket = buckets.get("person_day", psn, day)
        refused = bucket.setdefault("refused", [])
        if claim_id not in refused:
            refused.append(claim_id)
            if len(refused) > config.suspended_claims and raise_once(bucket, "SUSPENDED_BENEFITS"):
                signals.append(Signal("SUSPENDED_BENEFITS", "person", psn, None, day, tuple(refused), len(refused),
                                      f"> {config.suspended_claims} refused claims",
                                      f"{len(refused)} claim(s) in one day for a person whose benefits are "
                                      f"suspended (refused {outcome['o']}, last at {claim['i']})."))
            buckets.put("person_day", psn, day, bucket)
    buckets.put("person", psn, NO_WINDOW, profile)
    return signals


def supply_days(config: FraudSettings, code: str, cnt: Decimal) -> Decimal:
    """Days a dispensing lasts: cnt units × the configured days per unit (the assumption: one unit,
    e.g. a tablet or a dose, is one day unless the code has its own figure)."""
    return cnt * config.refill_days_per_unit_by_code.get(code, config.refill_days_per_unit)


def _end_supply(profile: dict, claim_id: str, at: datetime) -> list[str] | None:
    """A reversal of `claim_id` at `at`: its dispensings stop counting for dispensings from `at` on
    (event time, so the result is the same whether the claim joins before or after the reversal).
    Not dispensed yet: remembered until it is. The drug codes to judge again ([] when there are none
    yet), or None when the profile did not change."""
    dispensed = profile.get("dispensed", {})
    mine = [(code, entry) for code, entries in dispensed.items() for entry in entries if entry[2] == claim_id]
    if mine:
        unmarked = [(code, entry) for code, entry in mine if entry[3] is None]
        for _code, entry in unmarked:
            entry[3] = at.isoformat()
        return sorted({code for code, _entry in unmarked}) if unmarked else None
    pending = profile.setdefault("reversed", {})
    if claim_id in pending:
        return None
    pending[claim_id] = at.isoformat()
    while len(pending) > MAX_WAITING:
        del pending[next(iter(pending))]
    return []


def _judge(config: FraudSettings, entries: list, first: int) -> list[tuple[int, str, datetime]]:
    """The early dispensings among entries[first:] (sorted by time, then claim id), each with the
    claim whose supply it came during and when that supply (with what was stocked before) runs out.
    A dispensing is judged only against the ones before it in event time, never by arrival order:
    the same set of dispensings always gives the same answer, and adding one can only make later
    ones earlier (a refill extends the supply), never less early."""
    tolerance = float(1 - config.refill_tolerance)
    parsed = [(parse_time(e[0]), timedelta(days=float(e[1])), e[2], None if e[3] is None else parse_time(e[3]))
              for e in entries]
    early = []
    for index in range(first, len(parsed)):
        t = parsed[index][0]
        start = until = None
        last = ""
        for before, days, cid, reversed_at in parsed[:index]:
            if reversed_at is not None and reversed_at <= t:
                continue  # reversed by then: that supply was taken back
            if start is not None and start <= before < start + (until - start) * tolerance:
                until += days  # an early refill stocks up
            else:
                start, until = before, before + days
            last = cid
        if start is not None and start <= t < start + (until - start) * tolerance:
            early.append((index, last, until))
    return early


def _refill(config: FraudSettings, profile: dict, psn: str, claim_id: str, t: datetime, admdvs: str | None,
            drugs: list, buckets: Buckets) -> list[Signal]:
    """EARLY_REFILL over each drug's dispensings (code → [[setl_time, days, claim_id, reversed at,
    insu_admdvs]], by time): distinct by claim id, judged in event time, so a redelivered or resent
    claim or result adds nothing and the claims may meet their results in any order."""
    profile.pop("supply", None)  # the single last supply per drug this history replaces
    dispensed = profile.setdefault("dispensed", {})
    reversed_at = profile.get("reversed", {}).pop(claim_id, None)
    changed = []
    for code, cnt in drugs:
        entries = dispensed.setdefault(code, [])
        if any(entry[2] == claim_id for entry in entries):
            continue
        entries.append([t.isoformat(), str(supply_days(config, code, Decimal(cnt))), claim_id, reversed_at, admdvs])
        entries.sort(key=lambda entry: (parse_time(entry[0]), entry[2]))
        # Forget the oldest first: a dispensing forgotten stays forgotten when it is resent (it is
        # still the oldest or too old), so a resend of one can never count it again.
        newest = parse_time(entries[-1][0])
        entries[:] = [e for e in entries if newest - parse_time(e[0]) <= DISPENSING_MEMORY][-MAX_DISPENSINGS:]
        changed.append(code)
    return _judge_refills(config, buckets, profile, psn, changed)


def _judge_refills(config: FraudSettings, buckets: Buckets, profile: dict, psn: str, codes: list[str]) -> list[Signal]:
    """Judge the dispensings of `codes` again, all of them in event time, and raise or withdraw
    EARLY_REFILL per day (the early dispensing's day) where the answer changed: a dispensing read
    late can make later ones early, a reversal read late can make them on time again. Days before a
    drug's oldest kept dispensing keep their answer (what they were judged on is forgotten)."""
    early = profile.setdefault("early", {})  # code → {day start iso → [[previous, claim_id, until iso, admdvs]]}
    before = {day for found in early.values() for day in found}
    for code in codes:
        entries = profile.get("dispensed", {}).get(code, [])
        kept_from = day_of(parse_time(entries[0][0])).start.isoformat() if entries else ""
        found: dict[str, list] = {day: items for day, items in early.get(code, {}).items() if day < kept_from}
        for index, previous, until in _judge(config, entries, 0):
            entry = entries[index]
            found.setdefault(day_of(parse_time(entry[0])).start.isoformat(), []).append(
                [previous, entry[2], until.isoformat(), entry[4]])
        if found:
            early[code] = found
        else:
            early.pop(code, None)
    after = {day: [(code, *item) for code, found in sorted(early.items()) for item in found.get(day, [])]
             for day in {day for found in early.values() for day in found}}
    signals = []
    for day_start in sorted(before | set(after)):
        day = day_of(parse_time(day_start))
        bucket = buckets.get("person_day", psn, day)
        was = list(bucket.get("refills", []))
        found = after.get(day_start, [])
        refills = list(dict.fromkeys(cid for _code, previous, cid, _until, _adm in found for cid in (previous, cid)))
        if refills or "refills" in bucket:  # a day read and left as it was is not changed
            bucket["refills"] = refills
        described = "; ".join(f"{code} again ({cid}) while the supply of {previous} lasts until {until[:10]}"
                              for code, previous, cid, until, _adm in found)
        signal = Signal("EARLY_REFILL", "person", psn, found[0][4] if found else None, day,
                        tuple(refills[:MAX_EVIDENCE]), len(found),
                        f"refill before {1 - config.refill_tolerance:.0%} of the stocked supply is used "
                        f"({config.refill_days_per_unit} day(s) per unit)",
                        f"Drug dispensed again before the supply on hand ran out (超量开药): {described}.")
        if found and raise_once(bucket, "EARLY_REFILL"):
            signals.append(signal)
        elif not found and withdraw(bucket, "EARLY_REFILL"):
            signals.append(signal.withdrawn("No longer early: a supply it was measured against was reversed."))
        elif refills == was:
            continue
        buckets.put("person_day", psn, day, bucket)
    return signals


def _count_burden(config: FraudSettings, buckets: Buckets, psn: str, admdvs: str | None, t: datetime, claim_id: str,
                  fen: int) -> list[Signal]:
    """HIGH_EXPENSE (seed 003, 高额医疗费用预警: "We will strengthen early warning and monitoring of high
    medical expenses, do a good job in early warning of poverty caused by illness and return to poverty
    due to illness"): the year's in-scope burden net of reversals, against a fixed amount or a share
    of the region's last-year per-capita disposable income (high_expense_threshold)."""
    year = year_of(t)
    bucket = buckets.get("person_year", psn, year)
    amounts = bucket.setdefault("burden", {})  # claim_id → in-scope burden fen (negative for reversals)
    if claim_id in amounts:
        return []
    amounts[claim_id] = fen
    if admdvs is not None:
        bucket.setdefault("a", admdvs)  # the insured region, for its threshold
    admdvs = bucket.get("a", admdvs)
    total = sum(amounts.values())
    threshold, basis = high_expense_threshold(config, admdvs)
    signals = []

    def found() -> Signal:
        ids = tuple(cid for cid, value in amounts.items() if value > 0)
        return Signal("HIGH_EXPENSE", "person", psn, admdvs, year, ids[-MAX_EVIDENCE:], len(amounts),
                      f"> {to_yuan(threshold)} yuan{basis}", f"In-scope personal burden of {to_yuan(total)} yuan in "
                      f"{year.start.year}: consider for medical assistance (relief review, not a suspicion).",
                      amount_fen=total)
    # The year's burden net of every reversal seen: a reversal that brings it back under (read
    # before or after the visits) withdraws the signal, so the answer is the net, in any order.
    if total > threshold and raise_once(bucket, "HIGH_EXPENSE"):
        signals.append(found())
    elif total <= threshold and withdraw(bucket, "HIGH_EXPENSE"):
        signals.append(found().withdrawn(f"In-scope personal burden back to {to_yuan(total)} yuan in "
                                         f"{year.start.year} after a reversal: withdrawn."))
    buckets.put("person_year", psn, year, bucket)
    return signals


def high_expense_threshold(config: FraudSettings, admdvs: str | None) -> tuple[int, str]:
    """HIGH_EXPENSE's threshold in fen for an insured region, and how it was set: the share of the
    region's last-year per-capita disposable income where both are configured (rounded half up to
    the fen), else the fixed amount."""
    income = config.high_expense_income.get(admdvs) if admdvs is not None else None
    share = config.high_expense_income_share
    if share is None or income is None:
        return to_fen(config.high_expense_amount), ""
    return mul_round(to_fen(income), share), f" ({share} of {admdvs}'s per-capita disposable income {income})"


def _travel(config: FraudSettings, buckets: Buckets, visit: VisitSettled) -> list[Signal]:
    """IMPOSSIBLE_TRAVEL (冒名就医 indicator): two treatment regions closer in time than travel allows.
    The window is the day of the later of the two settlements. The person's visits are kept by event
    time (the last TRAVEL_MEMORY before the newest, at most MAX_TRAVEL_VISITS), not relative to the
    newest read, so a visit read after later-dated ones still meets the ones around it."""
    profile = buckets.get("person", visit.psn_no, NO_WINDOW)
    # The ids judged are kept longer than the visits, so a resent visit that `visits` let go is not
    # judged again against the ones kept.
    if visit.claim_id in profile.get("travel_seen", ()) or any(
            entry[0] == visit.claim_id for entry in profile.get("travel", profile.get("recent", ()))):
        return []
    visits = profile.setdefault("travel", profile.pop("recent", []))  # [claim_id, setl_time iso, mdtrtarea_admvs]
    judged = profile.setdefault("travel_seen", [])
    judged.append(visit.claim_id)
    del judged[:-MAX_TRAVEL_SEEN]
    gap = timedelta(hours=config.travel_min_hours)
    signals = []
    for other_id, other_time, region in visits:
        other = parse_time(other_time)
        if region == visit.mdtrtarea_admvs or abs(other - visit.setl_time) >= gap:
            continue
        later = max(other, visit.setl_time)
        day = day_of(later)
        bucket = buckets.get("person_day", visit.psn_no, day)
        pairs = bucket.setdefault("travel", [])
        for cid in (other_id, visit.claim_id):
            if cid not in pairs:
                pairs.append(cid)
        if raise_once(bucket, "IMPOSSIBLE_TRAVEL"):
            first, second = sorted(((other, other_id, region), (visit.setl_time, visit.claim_id,
                                                                  visit.mdtrtarea_admvs)))
            signals.append(Signal("IMPOSSIBLE_TRAVEL", "person", visit.psn_no, visit.insu_admdvs, day,
                                  (first[1], second[1]), 2, f"< {config.travel_min_hours} h between regions",
                                  f"Settled in {first[2]} and {second[2]} "
                                  f"{_hours(abs((other - visit.setl_time).total_seconds()))} apart: "
                                  f"possible use of another person's identity (冒名就医)."))
        buckets.put("person_day", visit.psn_no, day, bucket)
    visits.append([visit.claim_id, visit.setl_time.isoformat(), visit.mdtrtarea_admvs])
    visits.sort(key=lambda entry: (parse_time(entry[1]), entry[0]))
    newest = parse_time(visits[-1][1])
    visits[:] = [entry for entry in visits if newest - parse_time(entry[1]) <= TRAVEL_MEMORY][-MAX_TRAVEL_VISITS:]
    buckets.put("person", visit.psn_no, NO_WINDOW, profile)
    return signals


def detect(config: FraudSettings, buckets: Buckets, events: Iterable, end_of_stream: bool = True) -> Outcome:
    """Run person events (and the institution activity they pass on) through the rules in order: the
    reference the service must agree with. One partition: the watermark is the newest settlement
    time read; at the end of the stream every day is closed (unless `end_of_stream` is False)."""
    out = Outcome()
    watermark = None
    for event in events:
        if isinstance(event, VisitSettled):
            step = on_visit(config, buckets, event)
        elif isinstance(event, VisitReversed):
            step = on_reversal(config, buckets, event)
        elif isinstance(event, ClaimFiled):
            step = on_claim(config, buckets, event)
        elif isinstance(event, ClaimRefused):
            step = on_refusal(config, buckets, event)
        else:
            raise NotAFraudEvent(f"not a fraud event: {event!r}")
        out.signals += step.signals
        for activity in step.forward:
            out.signals += on_activity(config, buckets, activity)
            watermark = activity.setl_time if watermark is None else max(watermark, activity.setl_time)
        if watermark is not None:
            out.signals += close(config, buckets, "all", watermark)
    if end_of_stream:
        out.signals += close(config, buckets, "all", END_OF_STREAM)
    return out

