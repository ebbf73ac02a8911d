"""INSTITUTION_SPIKE read late (gongji.fraud.spike.on_activity's late path, issue 12): worked out
lazily (a day's baseline read only when its count could be above it, each day of the span read at
most once), it must give exactly what judging every closed day of the span against its whole
baseline gives: the same signals in the same order, the same buckets after each activity."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from decimal import Decimal

import pytest

from gongji.fraud import spike
from gongji.fraud.domain import (MAX_EVIDENCE, NO_WINDOW, InstitutionActivity, MemoryBuckets, Signal, day_of, parse_time,
                                 raise_once, withdraw)
from gongji.fraud_settings import FraudSettings

DAY0 = datetime.fromisoformat("2023-03-06T09:00:00+08:00")


def reference_judge(config, buckets, code, day) -> list[Signal]:
    """_judge_spike as it was: the day's bucket and its whole baseline read, every time."""
    bucket = buckets.get("institution_day", code, day)
    history = [buckets.get("institution_day", code, spike._shift(day, -back))
               for back in range(1, config.spike_baseline_days + 1)]
    found = None
    if sum(1 for past in history if past.get("n", 0) > 0) >= config.spike_min_baseline_days:
        for counter, minimum, what in (("n", config.spike_min_volume, "settlements"),
                                       ("r", config.spike_min_reversals, "reversals")):
            count = bucket.get(counter, 0)
            baseline = Decimal(sum(past.get(counter, 0) for past in history)) / config.spike_baseline_days
            if count >= minimum and count > config.spike_factor * baseline:
                found = Signal(
                    "INSTITUTION_SPIKE", "institution", code, bucket.get("admdvs"), day,
                    tuple(sorted(bucket.get("ids", []))[:MAX_EVIDENCE]), count,
                    f"> {config.spike_factor} × trailing {config.spike_baseline_days}-day average and ≥ {minimum}",
                    f"{count} {what} in one day against a trailing daily average of {baseline:.1f} "
                    f"over {config.spike_baseline_days} days.")
                break
    if found is not None and raise_once(bucket, "INSTITUTION_SPIKE"):
        out = [found]
    elif found is None and withdraw(bucket, "INSTITUTION_SPIKE"):
        out = [Signal("INSTITUTION_SPIKE", "institution", code, bucket.get("admdvs"), day, (), 0, "",
                      "").withdrawn("No longer above the trailing average: events read late filled in "
                                    "the day or its baseline.")]
    else:
        return []
    buckets.put("institution_day", code, day, bucket)
    return out


def reference_on_activity(config, buckets, activity) -> list:
    """on_activity's late path as it was: every closed day of the span judged with its whole baseline."""
    code, day = activity.fixmedins_code, day_of(activity.setl_time)
    bucket = buckets.get("institution_day", code, day)
    ids = bucket.setdefault("ids", [])
    if activity.claim_id in ids:
        return []
    ids.append(activity.claim_id)
    counter = "n" if activity.kind == "settlement" else "r"
    bucket[counter] = bucket.get(counter, 0) + 1
    bucket.setdefault("admdvs", activity.admdvs)
    buckets.put("institution_day", code, day, bucket)
    clock = buckets.get("clock", "all", NO_WINDOW)
    if not spike.is_late(config, clock, activity):
        waiting = clock.setdefault("pending", {}).setdefault(day.start.isoformat(), [])
        if code not in waiting:
            waiting.append(code)
            buckets.put("clock", "all", NO_WINDOW, clock)
        return []
    closed = parse_time(clock["closed"])
    return [signal for ahead in range(config.spike_baseline_days + 1)
            if spike._closes(config, spike._shift(day, ahead)) <= closed
            for signal in reference_judge(config, buckets, code, spike._shift(day, ahead))]


@pytest.mark.parametrize("seed", range(8))
def test_a_late_activity_judges_as_every_closed_day_against_its_whole_baseline(seed):
    rng = random.Random(seed)
    config = FraudSettings(spike_baseline_days=rng.choice((1, 2, 3, 7)), spike_min_volume=rng.choice((2, 3, 5)),
                           spike_min_reversals=rng.choice((1, 2)), spike_factor=rng.choice(("1.5", "2", "3")),
                           spike_min_baseline_days=rng.choice((1, 2)), allowed_lateness_seconds=3600)
    days = 30
    # Everything is late: the clock closed past the last day (as the bench's year-random traffic is).
    closed = (DAY0 + timedelta(days=days - rng.randrange(0, 8))).isoformat()
    fast, slow = MemoryBuckets(), MemoryBuckets()
    for buckets in (fast, slow):
        buckets.put("clock", "all", NO_WINDOW, {"closed": closed})
    for n in range(800):
        when = DAY0 + timedelta(days=rng.randrange(days), hours=rng.uniform(-9, 14))
        kind = "reversal" if rng.random() < 0.2 else "settlement"
        claim = f"C{rng.randrange(n + 1)}" if rng.random() < 0.05 else f"C{n}"  # some resent
        activity = InstitutionActivity(f"H{rng.randrange(3)}", "152501", claim, kind, when)
        got = spike.on_activity(config, fast, activity, "all")
        assert got == reference_on_activity(config, slow, activity), n
        assert fast.data == slow.data, n
