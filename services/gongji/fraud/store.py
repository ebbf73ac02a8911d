"""The fraud rules' buckets on faust tables: changelog-backed, windowed per Shanghai day and ISO
week, and staged per batch so that a batch's windows are saved after its signals, each to the
changelog partition of the event that last changed it (see gongji.fraud.service)."""

from __future__ import annotations

import copy

import faust
import orjson

from gongji.fraud.domain import NO_WINDOW, Buckets, Staged, Window

EIGHT_HOURS = 8 * 3600
MONDAY_SHIFT = 4 * 86400  # 1970-01-01 was a Thursday: the first Monday is four days later


class PinnedTable(faust.Table):
    """A faust table whose changelog partition can be pinned. Faust sends a changelog record to the
    partition of the event being iterated (a contextvar); a batch from `take_events` has no such
    event, so the batch's writes are made per source partition with that partition pinned."""

    pinned: int | None = None

    def partition_for_key(self, key):
        if self.pinned is not None:
            return self.pinned
        return super().partition_for_key(key)


class TableBuckets:
    """domain.Buckets on faust tables. Windowed tables (day, week) are tumbling windows in a
    time frame shifted so that faust's epoch-aligned windows fall on Shanghai midnights (and
    Mondays); a window is read and written at its key in the table, (key, faust's window range at
    the window's shifted start), as faust's window wrapper would at that relative time.
    Faust's own expiry is not used: it compares window ends with the wall clock, not event time.

    Values are JSON-able dicts; `get` returns a copy of its own (an orjson round trip) to change,
    as the table holds the one it saved."""

    def __init__(self, app: faust.App, partitions: int):
        def windowed(name: str, size: int) -> PinnedTable:
            return app.Table(name, default=dict, partitions=partitions).tumbling(size, expires=None).table

        self._shift = {"person_day": EIGHT_HOURS, "person_week": EIGHT_HOURS - MONDAY_SHIFT,
                       "institution_day": EIGHT_HOURS}
        self.windowed = {
            "person_day": windowed("person-day", 86400),
            "person_week": windowed("person-week", 7 * 86400),
            "institution_day": windowed("institution-day", 86400),
        }
        self.plain = {"person_year": app.Table("person-year", default=dict, partitions=partitions),
                      "person": app.Table("person", default=dict, partitions=partitions),
                      # per partition of the institution side: watermarks and the days waiting for them
                      "clock": app.Table("clock", default=dict, partitions=partitions)}
        self.tables = list(self.windowed.values()) + list(self.plain.values())

    def pin(self, partition: int | None) -> None:
        """Changelog records of the writes that follow go to `partition` (None: faust's own choice)."""
        for table in self.tables:
            table.pinned = partition

    def window_key(self, scope: str, key: str, window: Window) -> tuple:
        """The key of a window in its faust windowed table."""
        return key, self.windowed[scope].window.current(window.start.timestamp() + self._shift[scope] + 1)

    def get(self, scope: str, key: str, window: Window) -> dict:
        if scope in self.windowed:
            value = self.windowed[scope][self.window_key(scope, key, window)]
        else:
            value = self.plain[scope][self._plain_key(key, window)]
        return orjson.loads(orjson.dumps(value)) if value else {}

    def put(self, scope: str, key: str, window: Window, value: dict) -> None:
        if scope in self.windowed:
            self.windowed[scope][self.window_key(scope, key, window)] = value
        else:
            self.plain[scope][self._plain_key(key, window)] = value

    @staticmethod
    def _plain_key(key: str, window: Window) -> str:
        return key if window is NO_WINDOW or window.scope == "none" else f"{key}|{window.start.date().isoformat()}"


class BatchStaged(Staged):
    """Staged buckets for a batch of events: remembers the partition of the event that last put each
    bucket (`partition`, set before each event), and saves each partition's buckets with the
    changelog pinned to it, as faust would for that event."""

    def __init__(self, base: TableBuckets):
        super().__init__(base)
        self.partition: int | None = None
        self.partitions: dict[tuple, int | None] = {}

    def put(self, scope: str, key: str, window: Window, value: dict) -> None:
        super().put(scope, key, window, value)
        self.partitions[(scope, key, window)] = self.partition

    def flush(self) -> None:
        by_partition: dict[int | None, list] = {}
        for place, value in self.pending.items():
            by_partition.setdefault(self.partitions[place], []).append((place, value))
        try:
            for partition, writes in by_partition.items():
                self.base.pin(partition)
                for (scope, key, window), value in writes:
                    self.base.put(scope, key, window, value)
        finally:
            self.base.pin(None)
        self.pending.clear()
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
