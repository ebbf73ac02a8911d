"""The fraud rules do not depend on arrival order (issue 14): the issue's three findings as tests,
then a property per rule. Whatever the order the events are read in (partitions interleaved, order
kept within each; resends; reversals read before or after what they reverse), the final set of
signals (raised minus withdrawn, by signal_id) is the one the events give in time order."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gongji.fraud.domain import (ClaimFiled, ClaimRefused, MemoryBuckets, VisitReversed, VisitSettled, day_of,
                                 signal_id)
from gongji.fraud.rules import detect
from gongji.fraud_settings import FraudSettings

DAY0 = datetime.fromisoformat("2023-03-06T00:00:00+08:00")  # a Monday


def at(day: int, hour: float = 9.0) -> datetime:
    return DAY0 + timedelta(days=day, hours=hour)


def final(signals) -> dict[str, str]:
    """A reader's view of `fraud.signals`: the last record per signal_id, kept while it stands raised."""
    view: dict[str, str] = {}
    for signal in signals:
        if getattr(signal, "status", "raised") == "withdrawn":
            view.pop(signal.signal_id, None)
        else:
            view[signal.signal_id] = signal.rule_id
    return view


def run(events, **config) -> dict[str, str]:
    return final(detect(FraudSettings(**config), MemoryBuckets(), events).signals)


# ------------------------------------------------------------------ the findings
def test_impossible_travel_finds_a_visit_read_after_a_later_dated_one():
    """04:10 in 990100 read after 06:15 in 152501 (2 h 05 min apart) and after a visit at 09:30 that
    pushed 06:15 out of a window kept relative to the newest visit seen."""
    early = VisitSettled("A", "P", "H9", "152501", "990100", at(0, 4 + 10 / 60), 12000, 4000)
    later = VisitSettled("B", "P", "H1", "152501", "152501", at(0, 6.25), 12000, 4000)
    newest = VisitSettled("C", "P", "H1", "152501", "152501", at(0, 9.5), 12000, 4000)
    expected = {signal_id("IMPOSSIBLE_TRAVEL", "P", day_of(at(0)).start): "IMPOSSIBLE_TRAVEL"}
    assert run([early, later, newest]) == expected
    assert run([later, newest, early]) == expected


def test_institution_spike_is_judged_on_the_whole_day_and_its_whole_baseline():
    """A baseline of 8 a day, then 22 on the day (not above 3 × 8): read with 20 of the day's 22 and
    42 of the baseline's 56 first, it must still raise nothing."""
    def visit(n: int, day: int) -> VisitSettled:
        return VisitSettled(f"S{day}-{n}", f"P{day}-{n}", "H1", "152501", "152501", at(day, 8 + n / 4), 12000, 4000)

    baseline = [visit(n, day) for day in range(7) for n in range(8)]
    spike_day = [visit(n, 7) for n in range(22)]
    config = {"visits_per_day": 99, "visits_per_week": 99}
    assert run(baseline + spike_day, **config) == {}
    skewed = baseline[::4] + baseline[1::4] + baseline[2::4] + spike_day[:20] + baseline[3::4] + spike_day[20:]
    assert sum(event.claim_id.startswith("S7-") for event in skewed[:62]) == 20  # and 42 of the baseline
    assert run(skewed, **config) == {}


def test_a_reversal_read_after_the_refill_it_cancels_cancels_its_signal():
    """r1 (30 days' supply, day 0) reversed on day 3; r2 dispensed on day 5 is then not early. Read
    with the reversal after r2, the signal raised for r2 is withdrawn."""
    claim1 = ClaimFiled("r1", "P", "P1", at(0), (("XA01", Decimal(30)),))
    claim2 = ClaimFiled("r2", "P", "P1", at(5), (("XA01", Decimal(30)),))
    settled1 = VisitSettled("r1", "P", "P1", "152501", "152501", at(0), 12000, 4000)
    settled2 = VisitSettled("r2", "P", "P1", "152501", "152501", at(5), 12000, 4000)
    reversal = VisitReversed("rv", "r1", "P", "P1", "152501", at(3), at(0), -4000)
    assert run([claim1, settled1, reversal, claim2, settled2]) == {}
    assert run([claim1, settled1, claim2, settled2, reversal]) == {}


# ------------------------------------------------------------------ a property per rule
# The events of a stream, each on its partition: settlements (results) and claims of a person go
# to the partition of its key, as on the topics. A read order is any interleaving of the partitions,
# each partition in any order of its own (resends, delays, a reversal before what it reverses).
SETTINGS = settings(max_examples=120, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
PARTITIONS = 2
REGIONS = ("152501", "990100")


def source(event) -> tuple[str, int]:
    topic = "claims" if isinstance(event, ClaimFiled) else "settlements"
    return topic, int(event.psn_no[1:]) % PARTITIONS


def time_order(events: list) -> list:
    """The distinct events in settlement-time order: a claim before its result, a reversal after."""
    claimed = {event.claim_id: event.setl_time for event in events if isinstance(event, ClaimFiled)}
    rank = {ClaimFiled: 0, VisitSettled: 1, ClaimRefused: 1, VisitReversed: 2}

    def key(event):
        when = claimed.get(event.claim_id, DAY0) if isinstance(event, ClaimRefused) else event.setl_time
        return when, rank[type(event)], event.claim_id

    return sorted(dict.fromkeys(events), key=key)


@st.composite
def read_order(draw, events: list) -> list:
    """The events and some resends, each partition shuffled, the partitions interleaved."""
    resent = draw(st.lists(st.sampled_from(events), max_size=4)) if events else []
    partitions: dict[tuple, list] = {}
    for event in events + resent:
        partitions.setdefault(source(event), []).append(event)
    queues = {place: list(draw(st.permutations(seq))) for place, seq in sorted(partitions.items())}
    labels = draw(st.permutations([place for place, seq in queues.items() for _ in seq]))
    return [queues[place].pop(0) for place in labels]


def check(data, events: list, rule: str, **config) -> dict[str, str]:
    expected = {sid: r for sid, r in run(time_order(events), **config).items() if r == rule}
    order = data.draw(read_order(events))
    assert {sid: r for sid, r in run(order, **config).items() if r == rule} == expected
    return expected


minutes = st.integers(min_value=0, max_value=2 * 24 * 3)  # 20-minute steps over two days


@st.composite
def travel_world(draw) -> list:
    visits = draw(st.lists(st.tuples(st.integers(0, 2), minutes, st.sampled_from(REGIONS)), min_size=2, max_size=7))
    return [VisitSettled(f"V{n}", f"P{psn}", "H1", "152501", region, DAY0 + timedelta(minutes=20 * m), 12000, 4000)
            for n, (psn, m, region) in enumerate(visits)]


@SETTINGS
@given(st.data(), travel_world())
def test_impossible_travel_is_the_same_in_any_read_order(data, events):
    check(data, events, "IMPOSSIBLE_TRAVEL")


def reversal_of(visit: VisitSettled, n: int, after: timedelta) -> VisitReversed:
    return VisitReversed(f"R{n}", visit.claim_id, visit.psn_no, visit.fixmedins_code, visit.mdtrtarea_admvs,
                         visit.setl_time + after, visit.setl_time, -visit.psn_part_fen)


@st.composite
def spike_world(draw) -> list:
    events = []
    for code in ("H1", "H2"):
        for day in range(6):
            for n in range(draw(st.sampled_from((0, 1, 2, 3, 4, 7)))):
                psn = draw(st.integers(0, 5))
                events.append(VisitSettled(f"{code}-{day}-{n}", f"P{psn}", code, "152501", "152501",
                                           at(day, 8 + n / 6), 12000, 4000))
    for n, visit in enumerate(draw(st.lists(st.sampled_from(events), max_size=5, unique=True)) if events else []):
        events.append(reversal_of(visit, n, timedelta(hours=draw(st.integers(0, 40)))))
    return events


SPIKE = {"spike_baseline_days": 2, "spike_min_volume": 3, "spike_min_reversals": 2, "spike_factor": 2,
         "visits_per_day": 99, "visits_per_week": 99, "shopping_institutions": 99, "split_claims": 99}


@SETTINGS
@given(st.data(), spike_world())
def test_institution_spike_is_the_same_in_any_read_order(data, events):
    check(data, events, "INSTITUTION_SPIKE", **SPIKE)


@st.composite
def refill_world(draw) -> list:
    events = []
    for n in range(draw(st.integers(2, 5))):
        psn, code = f"P{draw(st.integers(0, 1))}", draw(st.sampled_from(("XA01", "XA01", "XB02")))
        when = at(draw(st.integers(0, 30)), draw(st.integers(8, 18)))
        cid = f"D{n}"
        events.append(ClaimFiled(cid, psn, "P1", when, ((code, Decimal(draw(st.sampled_from((7, 10, 30))))),)))
        settled = VisitSettled(cid, psn, "P1", "152501", "152501", when, 12000, 4000)
        events.append(settled)
        if draw(st.booleans()):
            events.append(reversal_of(settled, n, timedelta(days=draw(st.integers(0, 6)), hours=1)))
    return events


@SETTINGS
@given(st.data(), refill_world())
def test_early_refill_is_the_same_in_any_read_order(data, events):
    check(data, events, "EARLY_REFILL")


@st.composite
def expense_world(draw) -> list:
    events = []
    for n in range(draw(st.integers(1, 5))):
        visit = VisitSettled(f"E{n}", f"P{draw(st.integers(0, 1))}", "H1", "152501", "152501",
                             at(draw(st.integers(0, 300))), 12000, draw(st.sampled_from((400_000, 900_000, 1_200_000))))
        events.append(visit)
        if draw(st.booleans()):
            events.append(reversal_of(visit, n, timedelta(days=draw(st.integers(0, 30)))))
    return events


@SETTINGS
@given(st.data(), expense_world())
def test_high_expense_is_the_same_in_any_read_order(data, events):
    check(data, events, "HIGH_EXPENSE")


@st.composite
def visits_world(draw) -> list:
    visits = draw(st.lists(st.tuples(st.integers(0, 1), st.integers(0, 9), st.sampled_from(("H1", "H2", "H3", "H4")),
                                     st.sampled_from((3000, 12000))), min_size=1, max_size=14))
    events = [VisitSettled(f"C{n}", f"P{psn}", code, "152501", "152501", at(day // 2, 8 + n / 2), fen, 1000)
              for n, (psn, day, code, fen) in enumerate(visits)]
    for n, visit in enumerate(draw(st.lists(st.sampled_from(events), max_size=3, unique=True))):
        events.append(reversal_of(visit, n, timedelta(hours=2)))
    return events


COUNTING = {"visits_per_day": 2, "visits_per_week": 5, "shopping_institutions": 2, "split_claims": 2}


@pytest.mark.parametrize("rule", ["VISITS_PER_DAY", "VISITS_PER_WEEK", "SHOPPING", "SPLIT_BILLING"])
@SETTINGS
@given(data=st.data(), events=visits_world())
def test_counting_rules_are_the_same_in_any_read_order(rule, data, events):
    check(data, events, rule, **COUNTING)


@st.composite
def refusal_world(draw) -> list:
    events = []
    for n in range(draw(st.integers(1, 6))):
        psn = f"P{draw(st.integers(0, 1))}"
        events.append(ClaimFiled(f"N{n}", psn, "H1", at(draw(st.integers(0, 2)), 9 + n), ()))
        events.append(ClaimRefused(f"N{n}", psn, draw(st.sampled_from(("NOT_INSURED", "NO_POLICY")))))
    return events


@SETTINGS
@given(st.data(), refusal_world())
def test_suspended_benefits_is_the_same_in_any_read_order(data, events):
    check(data, events, "SUSPENDED_BENEFITS", suspended_claims=1)


# ------------------------------------------------------------------ watermarks, lateness, the replay
def test_the_watermark_is_the_oldest_partition_not_idle():
    from gongji.fraud.spike import watermark

    marks = {"0": at(3), "1": at(1)}
    assert watermark(marks, ["0", "1", "2"], set()) is None  # partition 2 has sent nothing yet
    assert watermark(marks, ["0", "1", "2"], {"2"}) == at(1)  # the slowest of the others
    assert watermark(marks, ["0", "1", "2"], {"1", "2"}) == at(3)
    assert watermark(marks, ["0", "1", "2"], {"0", "1", "2"}) == at(3)  # all idle: nothing more is coming


def test_a_day_is_judged_once_closed_and_an_event_read_after_revises_it():
    from gongji.fraud.domain import InstitutionActivity
    from gongji.fraud.domain import NO_WINDOW
    from gongji.fraud.spike import close, is_late, on_activity

    config = FraudSettings(spike_min_volume=5, spike_baseline_days=2, allowed_lateness_seconds=3600)
    buckets = MemoryBuckets()

    def act(cid, day, hour=9.0):
        return InstitutionActivity("H1", "152501", cid, "settlement", at(day, hour))

    for event in [act("b0", 0), act("b1", 1)] + [act(f"k{n}", 2) for n in range(5)]:
        assert on_activity(config, buckets, event, "0") == []  # nothing judged on arrival
    assert close(config, buckets, "0", at(3, 0.5)) == []  # day 2 ends at 3 00:00, + 1 h of lateness
    assert not is_late(config, buckets.get("clock", "0", NO_WINDOW), act("k9", 2))
    (raised,) = close(config, buckets, "0", at(3, 1))
    assert (raised.rule_id, raised.count, raised.status, raised.window) == ("INSTITUTION_SPIKE", 5, "raised",
                                                                            day_of(at(2)))
    # Six more on day 1, read late: by the third, day 2's baseline is (1 + 4) / 2 and 5 is not above
    # 3 × 2.5: withdrawn; at the fifth, day 1 itself (5 against 0.5) is raised late.
    late = [act(f"b1-{n}", 1, 10 + n) for n in range(6)]
    assert is_late(config, buckets.get("clock", "0", NO_WINDOW), late[0])
    out = [signal for event in late for signal in on_activity(config, buckets, event, "0")]
    assert [(s.window, s.status) for s in out] == [(day_of(at(2)), "withdrawn"), (day_of(at(1)), "raised")]
    assert out[0].signal_id == raised.signal_id and out[1].count == 5
    assert close(config, buckets, "0", at(9)) == []  # judged already: nothing again


def test_the_replay_gives_the_signals_of_time_order():
    """tests/fraud_replay.py on a shorter stream: a skewed replay, read as the service reads it
    (partitions, watermarks), gives the set of signal_ids time order gives."""
    from tests.fraud_replay import final, service_model, skewed, stream

    ordered = stream(600, 3)
    replay = skewed(ordered, 3)
    config = FraudSettings()
    counts, expected, _ = final(detect(config, MemoryBuckets(), ordered).signals)
    assert {"IMPOSSIBLE_TRAVEL", "EARLY_REFILL", "INSTITUTION_SPIKE", "HIGH_EXPENSE"} <= set(counts)
    assert final(service_model(config, replay))[1] == expected
    assert final(detect(config, MemoryBuckets(), replay).signals)[1] == expected
