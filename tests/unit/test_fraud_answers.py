"""What the README's fraud section says about questions an independent reference found ambiguous
(issue 14), held to gongji.fraud.rules as it stands: SPLIT_BILLING is per person; reversed visits
still count toward the visit rules; HIGH_EXPENSE follows the year's net, withdrawn when a reversal
brings the year back under; INSTITUTION_SPIKE judges reversals against the institution's own reversals, on the
reversal's own day, with a baseline only where there were settlements. A change to one of these is
a change to the README's "How the rules read persons and reversals" too."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from gongji.fraud.domain import InstitutionActivity, MemoryBuckets, VisitReversed, VisitSettled, day_of
from gongji.fraud.rules import detect, on_activity, on_reversal
from gongji.fraud_settings import FraudSettings

pytestmark = pytest.mark.unit

BASE = datetime.fromisoformat("2023-03-06T00:00:00+08:00")  # a Monday


def t(day: int = 0, hour: float = 9) -> datetime:
    return BASE + timedelta(days=day, hours=hour)


def visit(cid, psn="P", inst="H1", when=None, fen=12000, part=4000):
    return VisitSettled(cid, psn, inst, "152501", "152501", when or t(), fen, part)


def reversal(cid, orig, when, orig_when, part=-4000, psn="P", inst="H1"):
    return VisitReversed(cid, orig, psn, inst, "152501", when, orig_when, part)


def raised(events, **config):
    return sorted((s.rule_id, s.subject_id) for s in detect(FraudSettings(**config), MemoryBuckets(), events).signals)


def test_split_billing_counts_one_persons_small_claims_at_one_institution():
    four_persons = [visit(f"c{i}", psn=f"P{i}", fen=3000, when=t(0, 8 + i)) for i in range(4)]
    two_each = [visit(f"c{i}", psn=f"P{i % 2}", fen=3000, when=t(0, 8 + i)) for i in range(4)]
    one_person = [visit(f"c{i}", fen=3000, when=t(0, 8 + i)) for i in range(4)]
    assert raised(four_persons) == raised(two_each) == []
    assert raised(one_person, visits_per_day=9) == [("SPLIT_BILLING", "P")]


@pytest.mark.parametrize("rule, config, visits", [
    ("VISITS_PER_DAY", {}, [visit(f"c{i}", when=t(0, 8 + i)) for i in range(4)]),
    ("SHOPPING", {"visits_per_day": 9}, [visit(f"c{i}", inst=f"H{i}", when=t(0, 8 + i)) for i in range(4)]),
    ("SPLIT_BILLING", {"visits_per_day": 9}, [visit(f"c{i}", fen=3000, when=t(0, 8 + i)) for i in range(4)]),
])
def test_a_reversed_visit_still_counts_toward_the_visit_rules(rule, config, visits):
    """The first visit reversed before the fourth is read: still four visits that day."""
    undo = reversal("r0", "c0", t(0, 8.5), t(0, 8), part=-4000, inst=visits[0].fixmedins_code)
    assert (rule, "P") in raised(visits[:3] + [undo] + visits[3:], **config)


def test_high_expense_follows_the_years_net_withdrawn_when_a_reversal_brings_it_back_under():
    """Raised at 25,000.00; the reversal takes the year to 0 and withdraws it (same signal_id); a
    later 21,000.00 crosses again and raises it again under that id."""
    buckets = MemoryBuckets()
    first = detect(FraudSettings(), buckets,
                   [visit("a", part=2_500_000), reversal("r", "a", t(5), t(), part=-2_500_000)]).signals
    assert [(s.rule_id, s.status) for s in first] == [("HIGH_EXPENSE", "raised"), ("HIGH_EXPENSE", "withdrawn")]
    assert first[0].signal_id == first[1].signal_id
    again = detect(FraudSettings(), buckets, [visit("b", when=t(40), part=2_100_000)]).signals
    assert [(s.rule_id, s.status, s.signal_id) for s in again] == [("HIGH_EXPENSE", "raised", first[0].signal_id)]


def activity(cid, day, kind="settlement"):
    return InstitutionActivity("H1", "152501", cid, kind, t(day, 10))


def spike(events, **config):
    """The signals once every day is complete: counted on arrival, judged when the watermark closes
    the days (gongji.fraud.spike.close), here one far past the last."""
    from gongji.fraud.spike import close

    cfg, buckets = FraudSettings(**config), MemoryBuckets()
    counted = [s for event in events for s in on_activity(cfg, buckets, event)]
    return counted + close(cfg, buckets, "all", max(event.setl_time for event in events) + timedelta(days=30))


def test_institution_spike_judges_reversals_against_its_own_reversals_per_day():
    """A week of 10 settlements and 2 reversals a day: 6 reversals on day 7 are not above 3 × 2.0;
    7 are. Settlements on day 7 do not lower the reversals' count, nor reversals the settlements'."""
    week = [activity(f"s{d}-{i}", d) for d in range(7) for i in range(10)] + \
        [activity(f"r{d}-{i}", d, "reversal") for d in range(7) for i in range(2)]
    assert spike(week + [activity(f"k{i}", 7, "reversal") for i in range(6)]) == []
    (signal,) = spike(week + [activity(f"k{i}", 7, "reversal") for i in range(7)])
    assert (signal.count, signal.window) == (7, day_of(t(7)))
    assert "7 reversals in one day against a trailing daily average of 2.0" in signal.reason


def test_institution_spike_has_no_baseline_from_reversals_alone():
    reversals_only = [activity(f"r{d}-{i}", d, "reversal") for d in range(7) for i in range(2)]
    assert spike(reversals_only + [activity(f"k{i}", 7, "reversal") for i in range(50)]) == []


def test_a_reversal_counts_at_its_institution_on_its_own_day_not_its_originals():
    out = on_reversal(FraudSettings(), MemoryBuckets(), reversal("r", "a", t(3), t(0)))
    assert out.forward == [InstitutionActivity("H1", "152501", "r", "reversal", t(3))]
