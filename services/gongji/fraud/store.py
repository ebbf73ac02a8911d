"""The fraud rules' buckets in memory, backed by a changelog topic, and staged per batch so that a
batch's windows are saved after its signals, each to the changelog partition of the event that last
changed it (see gongji.fraud.service).

A bucket in use is held decoded, the others as the JSON bytes their changelog record carries; a
bucket is encoded when a checkpoint saves it (and when the undo of a failed batch needs its bytes:
ChangelogBuckets). A changelog record's
key is the JSON of [scope, key, window start] (the start in seconds since the epoch, null for a
bucket without a window); its partition is the partition of the input whose events own it, so a worker assigned
partition p rebuilds exactly the buckets of the events it will read (`restore`).
"""

from __future__ import annotations

import copy
from contextlib import contextmanager
from datetime import datetime
from collections.abc import Iterable, Iterator

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
    """domain.Buckets in memory: each bucket's value and the input partition that owns it. A `put`
    queues the bucket for the changelog (on the partition `pin` names); `changes()` encodes what is
    queued and hands the records over.

    The buckets in use are kept decoded (`hot`, up to `hot_max`, the first decoded left first); the
    others as JSON bytes (`data`). A `get` lends the hot dict itself, not a copy (the
    rules change a read only to put it back): a batch that fails must be undone (`rollback`), one that
    succeeds has put what it changed (`settle` ends it). So that the undo costs nothing in the common
    case, a bucket whose dict is newer than its bytes (put since it was last encoded) is encoded when it
    is lent: the bytes are then what the bucket was before the batch, and the undo forgets the dict."""

    def __init__(self, hot_max: int = 50_000):
        self.data: dict[Place, bytes] = {}
        self.hot: dict[Place, dict] = {}  # decoded, the newest value of its bucket; first decoded first
        self.stale: set[Place] = set()  # hot dicts put since their bytes were encoded
        self.lent: set[Place] = set()  # read by the batch under way and not put (yet)
        self.hot_max = hot_max
        self.owner: dict[Place, int] = {}
        self.pinned: int = 0
        # partition → changelog key → its bucket (encoded when handed over), or bytes handed back
        self.queued: dict[int, dict[bytes, Place | bytes]] = {}

    def pin(self, partition: int | None) -> None:
        """Changelog records of the writes that follow go to `partition`."""
        self.pinned = 0 if partition is None else partition

    def get(self, scope: str, key: str, window: Window) -> dict:
        place = place_of(scope, key, window)
        found = self.hot.get(place)
        if found is None:
            data = self.data.get(place)
            if data is None:
                return {}  # a new bucket: kept once it is put
            found = self.hot[place] = orjson.loads(data)
        elif place in self.stale:  # what the bucket is before this batch, for the undo
            self.data[place] = orjson.dumps(found)
            self.stale.discard(place)
        self.lent.add(place)
        return found

    def put(self, scope: str, key: str, window: Window, value: dict) -> None:
        place = place_of(scope, key, window)
        owner = self.owner.get(place)
        pinned = self.pinned
        if owner is not None and owner != pinned:
            self._freeze(place, owner)
        self.hot[place] = value
        self.stale.add(place)
        self.lent.discard(place)
        self.owner[place] = pinned
        self.queued.setdefault(pinned, {})[changelog_key(place)] = place

    def _freeze(self, place: Place, owner: int) -> None:
        """A bucket put from another partition than its last: the record queued on the old one keeps
        the value it was queued with (what the bucket was before this batch)."""
        queued = self.queued.get(owner, {})
        key = changelog_key(place)
        if queued.get(key) == place:
            queued[key] = self.data[place] if place not in self.stale else orjson.dumps(self.hot[place])

    @contextmanager
    def batch(self) -> Iterator[None]:
        """A batch's reads and puts: settled when it ends, rolled back when it raises."""
        try:
            yield
        except BaseException:
            self.rollback()
            raise
        self.settle()

    def settle(self) -> None:
        """The batch under way succeeded: what it read and did not put is as it was."""
        self.lent.clear()
        self._trim()

    def rollback(self) -> None:
        """The batch under way failed: every bucket it read is again what it was before it (its
        bytes), as if it never ran."""
        for place in self.lent:
            self.hot.pop(place, None)
        self.lent.clear()

    def _trim(self) -> None:
        """Past `hot_max`, the first decoded go back to their bytes, down to three quarters of it
        (a few at a time would walk the dict's emptied front each time)."""
        if len(self.hot) <= self.hot_max:
            return
        held = list(self.hot.items())
        cut = len(held) - self.hot_max * 3 // 4
        for place, value in held[:cut]:
            if place in self.stale:
                self.data[place] = orjson.dumps(value)
                self.stale.discard(place)
        self.hot = dict(held[cut:])

    def encoded(self, place: Place) -> bytes | None:
        """The JSON of a bucket's newest value (None: no such bucket)."""
        if place in self.stale:
            self.data[place] = orjson.dumps(self.hot[place])
            self.stale.discard(place)
        return self.data.get(place)

    def snapshot(self) -> dict[Place, bytes]:
        """Every bucket's JSON (tests, a look from a debugger)."""
        return {place: self.encoded(place) for place in list(self.data) + list(self.stale - set(self.data))}

    def changes(self) -> dict[int, dict[bytes, bytes]]:
        """The changelog records queued since the last call, per partition (key → value)."""
        queued, self.queued = self.queued, {}
        return {partition: {key: value if isinstance(value, bytes) else self.encoded(value)
                            for key, value in records.items()} for partition, records in queued.items()}

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
            self.hot.pop(place, None)
            self.stale.discard(place)

    def drop(self, partitions: set[int]) -> None:
        """Forget the buckets of partitions no longer this worker's. (A hook for expiring windows by
        event time belongs next to this: drop them here, and send a tombstone for each.)"""
        for place in [place for place, owner in self.owner.items() if owner in partitions]:
            del self.owner[place]
            self.data.pop(place, None)
            self.hot.pop(place, None)
            self.stale.discard(place)
            self.lent.discard(place)
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
