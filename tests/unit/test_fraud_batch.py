"""The fraud service's batching (gongji.fraud.store, gongji.fraud.service): a batch of events
staged together gives the same signals and the same saved windows as the events one by one; each
saved window goes to the changelog partition of the event that last changed it, and reads back the
same."""

from __future__ import annotations

import random
from datetime import datetime, timedelta


from gongji.fraud import domain, rules
from gongji.fraud.store import BatchStaged, ChangelogBuckets, place_from_key
from gongji.fraud_settings import FraudSettings
from gongji.fraud.domain import (NO_WINDOW, ClaimFiled, ClaimRefused, MemoryBuckets, Outcome, Staged,
                                 VisitReversed, VisitSettled, day_of, week_of, year_of)

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
    return run_batched_on(PinnedMemory(), events, size)


def run_batched_on(base, events, size):
    signals, forward = [], []
    for start in range(0, len(events), size):
        staged = BatchStaged(base)
        for partition, event in events[start:start + size]:
            staged.partition = partition
            out = step(staged, event)
            signals += out.signals
            forward += out.forward
        staged.flush()
        assert base.pinned in (None, 0)  # unpinned after the batch
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


def test_the_changelog_holds_each_saved_bucket_once_on_its_partition_and_reads_back_the_same():
    events = stream(2)
    _, state = run_batched(events, 50)
    buckets = ChangelogBuckets()
    signals, _ = run_batched_on(buckets, events, 50)
    records = buckets.changes()
    assert buckets.changes() == {}  # handed over once
    for partition, saved in records.items():
        for key, value in saved.items():
            scope, subject, start = place_from_key(key)
            assert partition == (int(subject[1:]) % 3 if scope.startswith("person") else 7), (scope, subject)
    # The same windows as the events one by one, read back by a worker given the partitions.
    again = ChangelogBuckets()
    for partition, saved in records.items():
        again.load(partition, saved.items())
    assert again.data == buckets.data
    for (scope, key, start), value in state.data.items():
        window = NO_WINDOW if scope in ("person", "clock") else \
            next(w for w in (day_of(start), week_of(start), year_of(start)) if w.start == start)
        assert again.get(scope, key, window) == value, (scope, key)
    # A partition taken away: its buckets forgotten, the others kept.
    again.drop({0})
    assert again.data and all(owner != 0 for owner in again.owner.values())
    assert set(again.data) == {place for place, owner in buckets.owner.items() if owner != 0}


def test_a_read_is_a_copy_of_its_own():
    buckets = ChangelogBuckets()
    buckets.put("person", "P1", NO_WINDOW, {"visits": ["C1"]})
    read = buckets.get("person", "P1", NO_WINDOW)
    read["visits"].append("C2")
    assert buckets.get("person", "P1", NO_WINDOW) == {"visits": ["C1"]}


def test_a_partition_dropped_takes_its_unsaved_changelog_records_with_it():
    """Revoked before a checkpoint could save them: its next owner reads those events again, so the
    records must not reach the changelog later, over what the new owner writes."""
    buckets = ChangelogBuckets()
    for partition, psn in ((0, "P0"), (1, "P1")):
        buckets.pin(partition)
        buckets.put("person", psn, NO_WINDOW, {"n": partition})
    buckets.drop({1})
    assert set(buckets.changes()) == {0}
    assert buckets.get("person", "P1", NO_WINDOW) == {} and buckets.get("person", "P0", NO_WINDOW) == {"n": 0}


def test_a_rebalance_checkpoints_after_the_batch_under_way_before_the_partitions_go():
    import asyncio

    from gongji.fraud.changelog import Rebalance

    async def scenario() -> list[str]:
        done, working = [], asyncio.Lock()

        async def checkpoint():
            done.append("checkpoint")

        async def restore(partitions):
            done.append(f"restore {sorted(partitions)}")

        listener = Rebalance(working, ChangelogBuckets(), restore, checkpoint)
        async with working:  # a batch under way
            revoking = asyncio.create_task(listener.on_partitions_revoked(set()))
            await asyncio.sleep(0)
            done.append("batch done")
        await revoking
        return done

    assert asyncio.run(scenario()) == ["batch done", "checkpoint"]


def test_a_bucket_is_read_from_its_base_once_a_batch_and_again_after_the_flush():
    """The institution side reads its clock for every activity: from the changelog's JSON once a batch."""
    reads = []

    class Counting(PinnedMemory):
        def get(self, scope, key, window):
            reads.append((scope, key))
            return super().get(scope, key, window)

    base = Counting()
    base.put("clock", "0", NO_WINDOW, {"closed": "2023-03-06T00:00:00+08:00"})
    staged = BatchStaged(base)
    first = staged.get("clock", "0", NO_WINDOW)
    assert staged.get("clock", "0", NO_WINDOW) is first and reads == [("clock", "0")]
    first["closed"] = "2023-03-07T00:00:00+08:00"
    staged.put("clock", "0", NO_WINDOW, first)
    staged.flush()
    assert staged.get("clock", "0", NO_WINDOW) == first and len(reads) == 2
