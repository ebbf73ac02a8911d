"""`gongji publish FILE|-`: the JSON lines `gongji replay` reads, put on Gongji's topics.

Each line is read as replay reads it and validated as settlement will validate it (codec.to_event,
the configured bounds, the present): a line that fails is one line on standard error with its
number and the field, and the others still go. A good line is mapped back to the wire
(codec.to_wire: exact money, times with their offset), then encoded, keyed and signed as the demo's
traffic is (gongji.local.launch.encode) and sent to its topic.

Kafka keeps the order of one person's events (one key, one partition), not across topics or keys.
With `ordered`, before a line goes to another topic or key than the line before it, publish waits
until the settlement service's group has committed every record sent so far, so the file is settled
in its order, as replay settles it (one round of the service per switch: for files, not floods),
and returns once the service has taken the last line.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import IO

from aiokafka import TopicPartition

from gongji.common import kafka
from gongji.common.avro import SchemaCatalog
from gongji.common.signing import signer
from gongji.local.launch import Row, encode
from gongji.settings import Settings
from gongji.settlement.codec import to_event, to_wire
from gongji.settlement.domain import Rejection
from gongji.settlement.replay import parse_line

ORDERED_TIMEOUT = 60.0  # seconds the settlement group may take to catch up at one switch


class PublishError(RuntimeError):
    """Publishing cannot go on (the settlement group does not catch up); says what to check."""


@dataclass
class Tally:
    sent: int = 0
    refused: int = 0  # not JSON, not an object, or invalid: said on standard error
    by_topic: dict[str, int] = field(default_factory=dict)

    def line(self) -> str:
        topics = ", ".join(f"{topic} {count}" for topic, count in sorted(self.by_topic.items()))
        return f"gongji publish: {self.sent} sent ({topics or 'none'}), {self.refused} refused"


def rows_for(lines: Iterable[str | bytes], settings: Settings, catalog: SchemaCatalog, errors: IO[str],
             tally: Tally, now: datetime | None = None) -> Iterable[tuple[int, Row]]:
    """(line number, message) for each good line, in order; each bad line said on `errors`. Pure
    but for `errors`: validated at `now` (the clock if None) against the settings' bounds."""
    bounds, key = settings.settlement_bounds(), signer(settings)
    now = now or datetime.now(timezone.utc)
    for number, line in enumerate(lines, start=1):
        data = parse_line(number, line, errors)
        if data is None:
            tally.refused += bool(line.strip())
            continue
        kind = data.get("event_type")
        event = to_event(kind if isinstance(kind, str) else f"<{type(kind).__name__}>", data, bounds, now)
        if isinstance(event, Rejection):
            print(f"line {number}: {event.err_msg}; not sent", file=errors)
            tally.refused += 1
            continue
        (row,) = encode(catalog, settings, [(kind, to_wire(event))], key)
        yield number, row


async def publish(lines: Iterable[str | bytes], settings: Settings, *, rate: float | None = None,
                  ordered: bool = False, errors: IO[str] = sys.stderr, progress=None,
                  now: datetime | None = None) -> Tally:
    """Send the good lines; `rate`: at most that many a second, paced by the clock; `progress(n)`
    is called with each line's number as it goes."""
    tally = Tally()
    producer = kafka.producer(settings)
    admin = kafka.admin(settings) if ordered else None
    await producer.start()
    if admin is not None:
        await admin.start()
    sent: dict[TopicPartition, int] = {}  # per partition, the offset after the last record sent
    pending: list[asyncio.Future] = []
    last: tuple[str, bytes] | None = None
    start = time.monotonic()
    try:
        for number, (topic, key, value, _ident, headers) in rows_for(lines, settings, SchemaCatalog(), errors,
                                                                      tally, now):
            if rate:
                await asyncio.sleep(max(0.0, start + tally.sent / rate - time.monotonic()))
            if admin is not None and last is not None and last != (topic, key):
                await _settled(admin, settings.settlement_group, await _delivered(pending, sent))
            pending.append(await producer.send(topic, value, key=key, headers=headers))
            last = (topic, key)
            tally.sent += 1
            tally.by_topic[topic] = tally.by_topic.get(topic, 0) + 1
            if progress:
                progress(number)
        await _delivered(pending, sent)
        if admin is not None and sent:  # ordered: done once the service has taken the last line too
            await _settled(admin, settings.settlement_group, sent)
    finally:
        await producer.stop()
        if admin is not None:
            await admin.close()
    return tally


async def _delivered(pending: list[asyncio.Future], sent: dict[TopicPartition, int]) -> dict[TopicPartition, int]:
    """Wait for the broker's acknowledgement of every send in `pending`; `sent` updated."""
    for metadata in await asyncio.gather(*pending):
        partition = TopicPartition(metadata.topic, metadata.partition)
        sent[partition] = max(sent.get(partition, 0), metadata.offset + 1)
    pending.clear()
    return sent


async def _settled(admin, group: str, sent: dict[TopicPartition, int]) -> None:
    """Wait until `group` has committed up to `sent` on every partition (the service commits a batch
    after publishing its results)."""
    deadline = time.monotonic() + ORDERED_TIMEOUT
    while True:
        committed = await kafka.committed_with(admin, group, list(sent))
        if all(committed.get(partition, 0) >= offset for partition, offset in sent.items()):
            return
        if time.monotonic() > deadline:
            raise PublishError(f"the settlement group {group!r} did not take the lines sent within "
                               f"{ORDERED_TIMEOUT:.0f} s: is `gongji run settlement` running with that "
                               "GONGJI_SETTLEMENT_GROUP?")
        await asyncio.sleep(0.05)


def command(args, resolve) -> int:
    """`gongji publish FILE|-`: 0 when every line went, 1 when some were refused (the rest went)."""
    try:
        source = sys.stdin.buffer if args.file == "-" else open(args.file, "rb")
    except OSError as error:
        sys.exit(f"gongji: {args.file}: {error.strerror}")
    settings = resolve()
    with source:
        with _progress_bar(source, args.file) as progress:
            try:
                tally = asyncio.run(publish(source, settings, rate=args.rate, ordered=args.ordered,
                                            progress=progress))
            except PublishError as error:
                sys.exit(f"gongji: publish: {error}")
    print(tally.line(), file=sys.stderr)
    return 1 if tally.refused else 0


class _progress_bar:
    """A rich progress bar on a terminal's standard error for a file (by bytes read); nothing else."""

    def __init__(self, source, name: str):
        self.source, self.name, self.bar = source, name, None

    def __enter__(self):
        import os

        if self.name == "-" or not sys.stderr.isatty():
            return None
        from rich.progress import Progress

        self.bar = Progress(transient=True)
        self.bar.start()
        task = self.bar.add_task(f"publishing {self.name}", total=os.fstat(self.source.fileno()).st_size)
        return lambda _number: self.bar.update(task, completed=self.source.tell())

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.stop()
