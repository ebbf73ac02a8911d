"""The fraud service's buckets kept decoded between batches (issue 12, gongji.fraud.store): the same
signals, the same changelog records at every checkpoint and the same windows as buckets held as
JSON bytes and decoded afresh for every batch (the reference below, the store before), through
batches that fail part way (undone) and are done again, checkpoints, a cache smaller than the
windows in use, and partitions given away and read back."""

from __future__ import annotations

import random

import orjson

from gongji.fraud.domain import NO_WINDOW
from gongji.fraud.store import BatchStaged, ChangelogBuckets, changelog_key, place_from_key, place_of
from tests.unit.test_fraud_batch import CONFIG, step, stream
from gongji.fraud import rules


class BytesBuckets:
    """The reference: each bucket as its JSON, decoded for every read and encoded at every put."""

    def __init__(self):
        self.data, self.owner, self.pinned, self.queued = {}, {}, 0, {}

    def pin(self, partition):
        self.pinned = 0 if partition is None else partition

    def get(self, scope, key, window):
        found = self.data.get(place_of(scope, key, window))
        return orjson.loads(found) if found is not None else {}

    def put(self, scope, key, window, value):
        place = place_of(scope, key, window)
        self.data[place] = orjson.dumps(value)
        self.owner[place] = self.pinned
        self.queued.setdefault(self.pinned, {})[changelog_key(place)] = self.data[place]

    def changes(self):
        queued, self.queued = self.queued, {}
        return queued

    def load(self, partition, records):
        for key, value in records:
            place = place_from_key(key)
            self.data[place], self.owner[place] = value, partition

    def drop(self, partitions):
        for place in [place for place, owner in self.owner.items() if owner in partitions]:
            del self.data[place], self.owner[place]
        for partition in partitions:
            self.queued.pop(partition, None)

    def snapshot(self):
        return dict(self.data)

    def settle(self):
        pass

    def rollback(self):
        pass


class Failed(Exception):
    pass


def run(buckets, events, seed: int):
    """The service's order of work on `buckets`: batches of person events, their activity as an
    institution batch, a failure now and then (after some of the rules, or after all of them: the
    send) undone and the batch done again, checkpoints, and a partition given away and read back
    from what the checkpoints saved. The same seed makes the same choices for every store."""
    rng = random.Random(seed)
    signals, saved, changelog = [], [], {}
    start = 0
    while start < len(events):
        size = rng.choice((1, 3, 20, 80))
        batch = events[start:start + size]
        fail_at = rng.randrange(len(batch) + 1) if rng.random() < 0.3 else None
        try:
            staged, out, forward = BatchStaged(buckets), [], []
            for index, (partition, event) in enumerate(batch):
                if index == fail_at:
                    raise Failed()
                staged.partition = partition
                result = step(staged, event)
                out += result.signals
                forward += result.forward
            if fail_at == len(batch) - 1 and rng.random() < 0.5:
                raise Failed()  # the send after the rules
            staged.flush()
            if fail_at == len(batch) or (fail_at is None and rng.random() < 0.1):
                raise Failed()  # the institution batch after the person batch (one poll: both again)
            for activity in forward:
                staged.partition = 7
                out += rules.on_activity(CONFIG, staged, activity)
            staged.flush()
            buckets.settle()
        except Failed:
            buckets.rollback()
            signals.append("failed")
            continue  # the same batch again
        signals += [(s.signal_id, s.status, s.claim_ids, s.count) for s in out]
        start += size
        if rng.random() < 0.3:
            records = buckets.changes()
            saved.append(records)
            for partition, found in records.items():
                changelog.setdefault(partition, {}).update(found)
        if rng.random() < 0.05:  # a partition given away (after a checkpoint) and read back
            partition = rng.randrange(3)
            records = buckets.changes()
            saved.append(records)
            for part, found in records.items():
                changelog.setdefault(part, {}).update(found)
            buckets.drop({partition})
            buckets.load(partition, changelog.get(partition, {}).items())
    saved.append(buckets.changes())
    return signals, saved, buckets.snapshot()


def test_decoded_buckets_give_the_signals_records_and_windows_of_buckets_decoded_for_every_batch():
    for seed in range(6):
        events = stream(seed, 900)
        expected = run(BytesBuckets(), events, seed)
        assert "failed" in expected[0] and len(expected[1]) > 5
        for hot_max in (0, 5, 100_000):
            assert run(ChangelogBuckets(hot_max), events, seed) == expected, (seed, hot_max)


def test_a_failed_batch_leaves_every_bucket_it_read_as_it_was():
    buckets = ChangelogBuckets()
    buckets.put("person", "P1", NO_WINDOW, {"visits": ["C1"]})
    buckets.settle()
    buckets.put("person", "P1", NO_WINDOW, {"visits": ["C1", "C2"]})  # newer than its bytes
    buckets.settle()
    read = buckets.get("person", "P1", NO_WINDOW)
    read["visits"].append("C3")
    new = buckets.get("person", "P2", NO_WINDOW)
    new["visits"] = ["C9"]
    buckets.rollback()
    assert buckets.get("person", "P1", NO_WINDOW) == {"visits": ["C1", "C2"]}
    assert buckets.get("person", "P2", NO_WINDOW) == {}
    assert buckets.changes() == {0: {changelog_key(("person", "P1", None)): b'{"visits":["C1","C2"]}'}}


def test_a_batch_that_succeeds_keeps_what_it_put_in_the_next_batch_that_fails():
    buckets = ChangelogBuckets()
    read = buckets.get("person", "P1", NO_WINDOW)
    read["n"] = 1
    buckets.put("person", "P1", NO_WINDOW, read)
    buckets.settle()
    buckets.get("person", "P1", NO_WINDOW)["n"] = 2
    buckets.rollback()
    assert buckets.get("person", "P1", NO_WINDOW) == {"n": 1}


def test_a_partition_given_away_takes_its_decoded_buckets_with_it():
    buckets = ChangelogBuckets()
    for partition in (0, 1):
        buckets.pin(partition)
        buckets.put("person", f"P{partition}", NO_WINDOW, {"n": partition})
    buckets.settle()
    saved = buckets.changes()
    buckets.pin(1)
    buckets.put("person", "P1", NO_WINDOW, {"n": 11})  # not saved before the partition went
    buckets.settle()
    buckets.drop({1})
    assert buckets.get("person", "P1", NO_WINDOW) == {}
    buckets.load(1, saved[1].items())  # back, as the changelog has it
    assert buckets.get("person", "P1", NO_WINDOW) == {"n": 1}
    assert buckets.get("person", "P0", NO_WINDOW) == {"n": 0}


def test_a_bucket_put_from_another_partition_leaves_the_record_queued_on_the_first_as_it_was():
    for buckets in (BytesBuckets(), ChangelogBuckets()):
        buckets.pin(1)
        buckets.put("clock", "0", NO_WINDOW, {"n": 1})
        buckets.settle()
        read = buckets.get("clock", "0", NO_WINDOW)
        read["n"] = 2
        buckets.pin(2)
        buckets.put("clock", "0", NO_WINDOW, read)
        buckets.settle()
        key = changelog_key(("clock", "0", None))
        assert buckets.changes() == {1: {key: b'{"n":1}'}, 2: {key: b'{"n":2}'}}, type(buckets).__name__
