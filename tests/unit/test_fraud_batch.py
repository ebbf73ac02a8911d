"""The fraud service's batching (gongji.fraud.store, gongji.fraud.service): a batch of events
staged together gives the same signals and the same saved windows as the events one by one; each
saved window goes to the changelog partition of the event that last changed it; windows sit at the
keys faust's window wrapper gives them."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

import faust
import pytest

from gongji.fraud import domain, rules
from gongji.fraud.store import BatchStaged, PinnedTable, TableBuckets
from gongji.fraud_settings import FraudSettings
from gongji.fraud.domain import (ClaimFiled, ClaimRefused, MemoryBuckets, Outcome, Staged, VisitReversed,
                                 VisitSettled, day_of, week_of)

BASE = datetime.fromisoformat("2023-03-06T00:00:00+08:00")  # a Monday
CONFIG = FraudSettings(visits_per_day=2, visits_per_week=4, shopping_institutions=1, split_claims=1,
                     spike_min_volume=3, spike_min_reversals=1, high_expense_amount=500, suspended_claims=0)


class PinnedMemory(MemoryBuckets):
    """MemoryBuckets that note the partition each window was saved under."""

    def __init__(self):
        super().__init__()
        self.pinned = None
        self.saved_to: dict[tuple, int | None] = {}

    def pin(self, partition):
        self.pinned = partition

    def put(self, scope, key, window, value):
        super().put(scope, key, window, value)
        self.saved_to[(scope, key, window.start)] = self.pinned


def stream(seed: int, count: int = 600):
    """(partition, event): visits, claims with drugs, reversals, refusals and resends of them for a
    few people at a few institutions, each person on the partition of its key."""
    rng = random.Random(seed)
    events = []
    for n in range(count):
        psn = f"P{rng.randrange(12)}"
        when = BASE + timedelta(days=rng.randrange(20), hours=rng.randrange(24), minutes=rng.randrange(60))
        inst = f"H{rng.randrange(4)}"
        roll = rng.random()
        if events and roll < 0.1:
            events.append(rng.choice(events))  # a resend
            continue
        if roll < 0.5:
            event = VisitSettled(f"C{n}", psn, inst, "152501", rng.choice(("152501", "990100")), when,
                                 rng.choice((3000, 12000)), rng.choice((1000, 30000)))
        elif roll < 0.8:
            event = ClaimFiled(f"C{n - rng.randrange(3)}", psn, inst, when,
                               (("XA01", domain.Decimal(rng.randrange(1, 30))),))
        elif roll < 0.9:
            event = VisitReversed(f"R{n}", f"C{n - rng.randrange(1, 9)}", psn, inst, "152501",
                                  when + timedelta(days=2), when, -1000)
        else:
            event = ClaimRefused(f"C{n - rng.randrange(3)}", psn, "NOT_INSURED")
        events.append((int(psn[1:]) % 3, event))
    return events


def step(buckets, event) -> Outcome:
    if isinstance(event, VisitSettled):
        return rules.on_visit(CONFIG, buckets, event)
    if isinstance(event, ClaimFiled):
        return rules.on_claim(CONFIG, buckets, event)
    if isinstance(event, VisitReversed):
        return rules.on_reversal(CONFIG, buckets, event)
    return rules.on_refusal(CONFIG, buckets, event)


def run_one_by_one(events):
    base, signals, forward = MemoryBuckets(), [], []
    for _partition, event in events:
        staged = Staged(base)
        out = step(staged, event)
        staged.flush()
        signals += out.signals
        forward += out.forward
    for activity in forward:
        signals += rules.on_activity(CONFIG, base, activity)
    return signals, base


def run_batched(events, size):
    base, signals, forward = PinnedMemory(), [], []
    for start in range(0, len(events), size):
        staged = BatchStaged(base)
        for partition, event in events[start:start + size]:
            staged.partition = partition
            out = step(staged, event)
            signals += out.signals
            forward += out.forward
        staged.flush()
        assert base.pinned is None  # unpinned after the batch
    for start in range(0, len(forward), size):
        staged = BatchStaged(base)
        for activity in forward[start:start + size]:
            staged.partition = 7
            signals += rules.on_activity(CONFIG, staged, activity)
        staged.flush()
    return signals, base


def test_a_batch_raises_and_saves_what_the_events_one_by_one_do():
    for seed in range(5):
        events = stream(seed)
        signals, state = run_one_by_one(events)
        assert len({s.rule_id for s in signals}) >= 6, "the stream should exercise most rules"
        for size in (1, 7, 100, 1000):
            batched, batched_state = run_batched(events, size)
            assert [(s.signal_id, s.claim_ids, s.count) for s in batched] == \
                [(s.signal_id, s.claim_ids, s.count) for s in signals]
            assert batched_state.data == state.data


def test_each_window_is_saved_to_the_partition_of_its_person():
    _, state = run_batched(stream(1), 50)
    for (scope, key, _start), partition in state.saved_to.items():
        if scope.startswith("person"):
            assert partition == int(key[1:]) % 3, (scope, key)
        else:
            assert partition == 7


def test_windows_sit_where_faust_s_window_wrapper_puts_them():
    app = faust.App("fraud-batch-test", Table=PinnedTable, autodiscover=False, web_enabled=False)
    buckets = TableBuckets(app, 4)
    at = BASE + timedelta(days=2, hours=23, minutes=59)  # Wednesday, just before Shanghai midnight
    for scope, window, size in (("person_day", day_of(at), 86400), ("person_week", week_of(at), 7 * 86400),
                                ("institution_day", day_of(at), 86400)):
        table = buckets.windowed[scope]
        key, (start, end) = buckets.window_key(scope, "K", window)
        assert start == window.start.timestamp() + buckets._shift[scope]  # Shanghai midnight (a Monday), shifted
        assert end == start + size - 0.1
        # The wrapper's own key at any time within the window: the same range.
        wrapper = faust.tables.wrappers.WindowWrapper(table)
        for inside in (window.start, at, window.end - timedelta(seconds=1)):
            clock = inside.timestamp() + buckets._shift[scope]
            assert [(key, r) for r in table.window.ranges(clock)] == [("K", (start, end))]
            assert wrapper.table.window.current(clock) == (start, end)
        assert isinstance(table, PinnedTable)



def test_a_record_under_another_kind_s_header_is_an_unreadable_event():
    """A FraudSignal record under `gongji-type: reversal` is fraud's own refusal to read (a FraudError,
    still a ValueError, dead-lettered as anything else unreadable); the right record under the
    right header reads."""
    from types import SimpleNamespace

    from gongji.common.avro import SchemaCatalog
    from gongji.contract.wire import headers
    from gongji.fraud.domain import FraudError, Signal
    from gongji.fraud.service import FraudService
    from gongji.settings import Settings

    settings, catalog = Settings(), SchemaCatalog()
    service = FraudService(settings, catalog)
    rejection = {"claim_id": "C1", "credit_id": None, "psn_no": "P1", "err_code": "NOT_INSURED",
                 "err_msg": "Benefits suspended.", "input_type": "claim"}
    read = SimpleNamespace(topic=settings.topics.settlements, headers=headers("rejection", "C1"),
                           value=catalog.encode("Rejection", rejection))
    assert service._decode(read) == domain.ClaimRefused("C1", "P1", "NOT_INSURED")
    signal = Signal("VISITS_PER_DAY", "person", "P1", None, day_of(BASE), ("C1",), 4, "> 3 visits", "4 visits.")
    stray = SimpleNamespace(topic=settings.topics.settlements, headers=headers("reversal", signal.signal_id),
                            value=catalog.encode("FraudSignal", signal.to_wire(BASE.isoformat())))
    with pytest.raises(FraudError, match="a FraudSignal record under gongji-type reversal") as raised:
        service._decode(stray)
    assert isinstance(raised.value, ValueError)
