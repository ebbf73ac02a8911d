"""INSTITUTION_SPIKE on complete days (issue 14), pure: an institution's day is judged only once the
event-time watermark of every input partition that feeds it has passed the day's end plus the
allowed lateness (`close`), so that neither the day nor its baseline is judged on part of itself.
Activity read after its day was judged is late: the day, and the judged days whose baseline it is
in, are judged again, and a signal no longer borne out is withdrawn under the same id.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from decimal import Decimal
from functools import lru_cache
from typing import TYPE_CHECKING

from gongji.fraud.domain import (DAY, MAX_EVIDENCE, NO_WINDOW, Buckets, InstitutionActivity, Signal, Window, day_of,
                                 parse_time, raise_once, withdraw)

if TYPE_CHECKING:  # a type hint only: the rules take their thresholds, they do not read settings
    from gongji.fraud_settings import FraudSettings


def on_activity(config: FraudSettings, buckets: Buckets, activity: InstitutionActivity,
                ledger: str = "all") -> list[Signal]:
    """INSTITUTION_SPIKE, counting: the activity is counted in its institution's day, and the day is
    left for `close` to judge once complete. Read after its day was judged (late), it judges again
    that day and the judged days whose baseline it is in (a signal raised late, or a withdrawal).
    `ledger` names the clock of the days waiting (the service keeps one per partition of its input).
    Each day remembers its last `institution_dedupe_ids` ids: the person side passes an activity on
    only the first time it sees its claim id, so only a crash replay (recent by nature) can bring one
    here twice."""
    code = activity.fixmedins_code
    day = day_of(activity.setl_time)
    bucket = buckets.get("institution_day", code, day)
    ids = bucket.setdefault("ids", [])
    if activity.claim_id in ids:
        return []
    ids.append(activity.claim_id)
    del ids[:-config.institution_dedupe_ids]
    counter = "n" if activity.kind == "settlement" else "r"
    bucket[counter] = bucket.get(counter, 0) + 1
    bucket.setdefault("admdvs", activity.admdvs)
    buckets.put("institution_day", code, day, bucket)
    clock = buckets.get("clock", ledger, NO_WINDOW)
    if is_late(config, clock, activity):
        # The day and the next `spike_baseline_days` (whose baseline it is in), each against its own
        # previous days. The span's days are worked out once (remembered), each read at most once,
        # and a day's baseline only when the day could be above it.
        back, lateness = config.spike_baseline_days, config.allowed_lateness_seconds
        closed = parse_time(clock["closed"])
        span = _span(day.start, back)  # span[back] is the day
        held: list[dict | None] = [None] * len(span)
        held[back] = bucket

        def read(index: int) -> dict:
            found = held[index]
            if found is None:
                found = held[index] = buckets.get("institution_day", code, span[index])
            return found

        signals = []
        for ahead in range(back + 1):
            if _closes_at(span[back + ahead].start, lateness) > closed:
                break  # the later days close later still
            judged = read(back + ahead)
            history = None
            if judged.get("n", 0) >= config.spike_min_volume or judged.get("r", 0) >= config.spike_min_reversals:
                history = [read(index) for index in range(ahead, back + ahead)]
            signals += _judge_spike(config, buckets, code, span[back + ahead], judged, history)
        return signals
    waiting = clock.setdefault("pending", {}).setdefault(day.start.isoformat(), [])
    if code not in waiting:
        waiting.append(code)
        buckets.put("clock", ledger, NO_WINDOW, clock)
    return []


def is_late(config: FraudSettings, clock: dict, activity: InstitutionActivity) -> bool:
    """Whether the activity's day was judged already (its watermark passed the day's end plus the
    allowed lateness)."""
    closed = clock.get("closed")
    return closed is not None and _closes(config, day_of(activity.setl_time)) <= parse_time(closed)


def close(config: FraudSettings, buckets: Buckets, ledger: str, watermark: datetime) -> list[Signal]:
    """Judge every day waiting in `ledger` that the event-time watermark has closed (its end plus the
    allowed lateness is at or before it), in day order: the day and its baseline are complete."""
    clock = buckets.get("clock", ledger, NO_WINDOW)
    if clock.get("closed") is not None and parse_time(clock["closed"]) >= watermark:
        return []
    clock["closed"] = watermark.isoformat()
    pending = clock.setdefault("pending", {})
    signals = []
    for day_start in sorted(pending, key=parse_time):
        day = day_of(parse_time(day_start))
        if _closes(config, day) > watermark:
            break
        for code in sorted(pending.pop(day_start)):
            signals += _judge_spike(config, buckets, code, day)
    buckets.put("clock", ledger, NO_WINDOW, clock)
    return signals


def _closes(config: FraudSettings, day: Window) -> datetime:
    return _closes_at(day.start, config.allowed_lateness_seconds)


@lru_cache(maxsize=8192)
def _closes_at(day_start: datetime, lateness: float) -> datetime:
    return day_of(day_start).end + timedelta(seconds=lateness)


def _shift(day: Window, days: int) -> Window:
    return day_of(day.start + DAY * days + timedelta(hours=12))  # noon: a day is 24 h in Shanghai


@lru_cache(maxsize=8192)
def _span(day_start: datetime, back: int) -> tuple[Window, ...]:
    """The days from `back` before the day starting at `day_start` to `back` after it."""
    day = day_of(day_start)
    return tuple(_shift(day, offset) for offset in range(-back, back + 1))


def _judge_spike(config: FraudSettings, buckets: Buckets, code: str, day: Window, bucket: dict | None = None,
                 history: list[dict] | None = None) -> list[Signal]:
    """INSTITUTION_SPIKE on one day: its settlements (or reversals) against the institution's own
    trailing daily average; raised, or withdrawn, where the answer changed. The day's bucket and
    those of its `spike_baseline_days` previous days (in any order) are read unless given."""
    if bucket is None:
        bucket = buckets.get("institution_day", code, day)
    found = None
    # The baseline is worked out (and read, when not given) only for a count at its minimum.
    candidates = [(counter, minimum, what) for counter, minimum, what in
                  (("n", config.spike_min_volume, "settlements"), ("r", config.spike_min_reversals, "reversals"))
                  if bucket.get(counter, 0) >= minimum]
    if candidates and history is None:
        history = [buckets.get("institution_day", code, _shift(day, -back))
                   for back in range(1, config.spike_baseline_days + 1)]
    if candidates and sum(1 for past in history if past.get("n", 0) > 0) >= config.spike_min_baseline_days:
        for counter, minimum, what in candidates:
            count = bucket.get(counter, 0)
            baseline = Decimal(sum(past.get(counter, 0) for past in history)) / config.spike_baseline_days
            if count > config.spike_factor * baseline:
                found = Signal(
                    "INSTITUTION_SPIKE", "institution", code, bucket.get("admdvs"), day,
                    tuple(sorted(bucket.get("ids", []))[:MAX_EVIDENCE]), count,
                    f"> {config.spike_factor} × trailing {config.spike_baseline_days}-day average and ≥ {minimum}",
                    f"{count} {what} in one day against a trailing daily average of {baseline:.1f} "
                    f"over {config.spike_baseline_days} days.")
                break
    if found is not None and raise_once(bucket, "INSTITUTION_SPIKE"):
        signals = [found]
    elif found is None and withdraw(bucket, "INSTITUTION_SPIKE"):
        signals = [Signal("INSTITUTION_SPIKE", "institution", code, bucket.get("admdvs"), day, (), 0, "",
                          "").withdrawn("No longer above the trailing average: events read late filled in "
                                        "the day or its baseline.")]
    else:
        return []
    buckets.put("institution_day", code, day, bucket)
    return signals


def watermark(marks: dict[str, datetime], expected: Iterable[str], idle: set[str]) -> datetime | None:
    """The event-time watermark over the `expected` input partitions (their newest times, `marks`):
    the oldest of those not idle; None while one that is not idle has sent nothing. When all are
    idle, nothing more is coming: the newest time any of them sent."""
    active = [source for source in expected if source not in idle]
    if not active:
        return max(marks.values(), default=None)
    if any(source not in marks for source in active):
        return None
    return min(marks[source] for source in active)
