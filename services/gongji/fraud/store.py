"""The fraud rules' buckets in memory, backed by a changelog topic, and staged per batch so that a
batch's windows are saved after its signals, each to the changelog partition of the event that last
changed it (see gongji.fraud.service).

A bucket is held as the JSON bytes of its value: the same bytes its changelog record carries, and
a read decodes a fresh dict of its own to change (no copy of the stored one). A changelog record's
key is the JSON of [scope, key, window start] (the start in seconds since the epoch, null for a
bucket without a window); its partition is the partition of the input whose events own it, so a worker assigned
partition p rebuilds exactly the buckets of the events it will read (`restore`).
"""

from __future__ import annotations

import copy
from datetime import datetime
from collections.abc import Iterable

import orjson

from gongji.fraud.domain import Buckets, Staged, Window

Place = tuple[str, str, int | None]  # (scope, key, window start in seconds since the epoch; None: no window)


_SECONDS: dict[datetime, int] = {}  # window starts in seconds (few: days, weeks, years)


def place_of(scope: str, key: str, window: Window) -> Place:
    if window.scope == "none":
        return scope, key, None
    seconds = _SECONDS.get(window.start)
    if seconds is None:
        if len(_SECONDS) > 100_000:
            _SECONDS.clear()
        seconds = _SECONDS[window.start] = int(window.start.timestamp())
    return scope, key, seconds


def changelog_key(place: Place) -> bytes:
    return orjson.dumps(place)


def place_from_key(data: bytes) -> Place:
    scope, key, start = orjson.loads(data)
    return scope, key, start


class ChangelogBuckets:
    """domain.Buckets in memory: each bucket's JSON and the input partition that owns it. A `put`
    queues its changelog record (to the partition `pin` names); `changes()` hands them over."""

    def __init__(self):
        self.data: dict[Place, bytes] = {}
        self.owner: dict[Place, int] = {}
        self.pinned: int = 0
        self.queued: dict[int, dict[bytes, bytes]] = {}

    def pin(self, partition: int | None) -> None:
        """Changelog records of the writes that follow go to `partition`."""
        self.pinned = 0 if partition is None else partition

    def get(self, scope: str, key: str, window: Window) -> dict:
        found = self.data.get(place_of(scope, key, window))
        return orjson.loads(found) if found is not None else {}

    def put(self, scope: str, key: str, window: Window, value: dict) -> None:
        place = place_of(scope, key, window)
        data = orjson.dumps(value)
        self.data[place] = data
        self.owner[place] = self.pinned
        self.queued.setdefault(self.pinned, {})[changelog_key(place)] = data

    def changes(self) -> dict[int, dict[bytes, bytes]]:
        """The changelog records queued since the last call, per partition (key → value)."""
        queued, self.queued = self.queued, {}
        return queued

    def requeue(self, changes: dict[int, dict[bytes, bytes]]) -> None:
        """Changelog records handed over but not acknowledged, to be sent with the next ones (a record
        queued since for the same key is newer and wins)."""
        for partition, records in changes.items():
            queued = self.queued.setdefault(partition, {})
            for key, value in records.items():
                queued.setdefault(key, value)

    def load(self, partition: int, records: Iterable[tuple[bytes, bytes]]) -> None:
        """Changelog records of `partition` read back in order (the last per key wins)."""
        for key, value in records:
            place = place_from_key(key)
            self.data[place] = value
            self.owner[place] = partition

    def drop(self, partitions: set[int]) -> None:
        """Forget the buckets of partitions no longer this worker's. (A hook for expiring windows by
        event time belongs next to this: drop them here, and send a tombstone for each.)"""
        for place in [place for place, owner in self.owner.items() if owner in partitions]:
            del self.data[place], self.owner[place]
        for partition in partitions:  # not saved: the next owner reads their events again
            self.queued.pop(partition, None)


class BatchStaged(Staged):
    """Staged buckets for a batch of events: remembers the partition of the event that last put each
    bucket (`partition`, set before each event), and saves each bucket once, its changelog record
    on that partition."""

    def __init__(self, base: Buckets):
        super().__init__(base)
        self.partition: int | None = None
        self.partitions: dict[tuple, int | None] = {}

    def put(self, scope: str, key: str, window: Window, value: dict) -> None:
        place = (scope, key, window.start)
        self.pending[place] = value
        self.windows[place] = window
        self.partitions[place] = self.partition

    def flush(self) -> None:
        by_partition: dict[int | None, list] = {}
        for place, value in self.pending.items():
            by_partition.setdefault(self.partitions[place], []).append((place, value))
        try:
            for partition, writes in by_partition.items():
                self.base.pin(partition)
                for place, value in writes:
                    scope, key, _start = place
                    self.base.put(scope, key, self.windows[place], value)
        finally:
            self.base.pin(None)
        self.pending.clear()
        self.windows.clear()
        self.read.clear()
        self.partitions.clear()


class CopyingBuckets:
    """Buckets read as copies of another Buckets' (a batch's staged ones), so that an event's own
    staging can be dropped without touching what the batch holds."""

    def __init__(self, base: Buckets):
        self.base = base

    def get(self, scope: str, key: str, window: Window) -> dict:
        return copy.deepcopy(self.base.get(scope, key, window))

    def put(self, scope: str, key: str, window: Window, value: dict) -> None:
        self.base.put(scope, key, window, value)
