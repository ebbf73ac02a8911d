"""`gongji publish FILE|-`: the JSON lines `gongji replay` reads, put on Gongji's topics.

Each line is read as replay reads it and validated as settlement will validate it (codec.to_event,
the configured bounds, the present): a line that fails is one line on standard error with its
number and the field, and the others still go. A good line is mapped back to the wire
(codec.to_wire: exact money, times with their offset), then encoded, keyed and signed as the demo's
traffic is (gongji.local.launch.encode) and sent to its topic.

Kafka keeps the order of one topic and key (one person's claims), not across topics or keys: a
person's credit and their claim, a family member's claim and the holder's credit, a registry entry
and the claims that need it. Settlement's results depend on the order only among lines that share
a subject (Order: a person, the family account holder a claim or reversal draws on, an institution),
so before a line goes out publish waits, for each of its subjects whose last line went to another
topic or key, until the settlement group has committed that line: the file is settled in its order
where the order matters, as replay settles it, and lines of unrelated persons go on without waiting.
At the end it waits until the group has taken everything sent. `wait=False`: no waiting at all
(Kafka's order only; settlement need not be running).
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
from gongji.settlement.events import Claim, Institution, Person, Reversal
from gongji.settlement.replay import parse_line

WAIT_TIMEOUT = 60.0  # seconds the settlement group may take to take one line another depends on


class PublishError(RuntimeError):
    """Publishing cannot go on (the settlement group does not catch up); says what to check."""


@dataclass
class Tally:
    sent: int = 0
    refused: int = 0  # not JSON, not an object, or invalid: said on standard error
    waits: int = 0  # lines that had to wait for the settlement group to take an earlier one
    by_topic: dict[str, int] = field(default_factory=dict)

    def line(self) -> str:
        topics = ", ".join(f"{topic} {count}" for topic, count in sorted(self.by_topic.items()))
        return f"gongji publish: {self.sent} sent ({topics or 'none'}), {self.refused} refused"


class Order:
    """The subjects each line's result depends on, in file order (pure): the person; for a claim the
    family account holder the person is bound to when it is read (the file's person lines say who)
    and the institution; for a reversal the holder its claim drew on; for a registry entry its
    subject. Two lines whose results may depend on their order share a subject."""

    def __init__(self):
        self.holders: dict[str, str] = {}  # psn_no → mulaid_holder_psn_no, from the file's person lines
        self.drew_on: dict[tuple[str, str], str] = {}  # (psn_no, claim_id) → holder its claim drew on

    def subjects(self, event) -> set[str]:
        if isinstance(event, Institution):
            return {"institution:" + event.fixmedins_code}
        found = {"person:" + event.psn_no}
        if isinstance(event, Person):
            if event.mulaid_holder_psn_no:
                self.holders[event.psn_no] = event.mulaid_holder_psn_no
            else:
                self.holders.pop(event.psn_no, None)
        elif isinstance(event, Claim):
            holder = self.holders.get(event.psn_no) if event.acct_used_flag == "1" else None
            if holder is not None:
                found.add("person:" + holder)
                self.drew_on[(event.psn_no, event.claim_id)] = holder
            found.add("institution:" + event.fixmedins_code)
        elif isinstance(event, Reversal):
            holder = self.drew_on.get((event.psn_no, event.orig_claim_id))
            if holder is not None:
                found.add("person:" + holder)
        return found


def rows_for(lines: Iterable[str | bytes], settings: Settings, catalog: SchemaCatalog, errors: IO[str],
             tally: Tally, now: datetime | None = None) -> Iterable[tuple[int, Row, set[str]]]:
    """(line number, message, its subjects: Order) for each good line, in order; each bad line said
    on `errors`. Pure but for `errors`: validated at `now` (the clock if None) against the
    settings' bounds."""
    bounds, key = settings.settlement_bounds(), signer(settings)
    now = now or datetime.now(timezone.utc)
    order = Order()
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
        yield number, row, order.subjects(event)


async def publish(lines: Iterable[str | bytes], settings: Settings, *, rate: float | None = None,
                  wait: bool = True, errors: IO[str] = sys.stderr, progress=None,
                  now: datetime | None = None) -> Tally:
    """Send the good lines, each after the lines it depends on have been settled (Order), unless not
    `wait`; `rate`: at most that many a second, paced by the clock; `progress(n)` is called with
    each line's number as it goes."""
    tally = Tally()
    producer = kafka.producer(settings)
    await producer.start()
    group = _Group(settings) if wait else None
    # per subject: the (topic, key) and the delivery of the last line about it
    last: dict[str, tuple[tuple[str, bytes], asyncio.Future]] = {}
    pending: list[asyncio.Future] = []
    start = time.monotonic()
    try:
        for number, (topic, key, value, _ident, headers), subjects in rows_for(
                lines, settings, SchemaCatalog(), errors, tally, now):
            if rate:
                await asyncio.sleep(max(0.0, start + tally.sent / rate - time.monotonic()))
            if group is not None:
                before = [delivery for stream, delivery in (last[s] for s in subjects if s in last)
                          if stream != (topic, key)]
                if before:
                    tally.waits += await group.taken(await asyncio.gather(*before))
            delivery = await producer.send(topic, value, key=key, headers=headers)
            pending.append(delivery)
            for subject in subjects:
                last[subject] = ((topic, key), delivery)
            tally.sent += 1
            tally.by_topic[topic] = tally.by_topic.get(topic, 0) + 1
            if progress:
                progress(number)
        delivered = await asyncio.gather(*pending)
        if group is not None:  # done once the service has taken the last line too
            await group.taken(delivered)
    finally:
        await producer.stop()
        if group is not None:
            await group.close()
    return tally


class _Group:
    """The settlement group's committed offsets, read as needed (the service commits a batch after
    publishing its results)."""

    def __init__(self, settings: Settings):
        self.name, self.admin, self.started = settings.settlement_group, kafka.admin(settings), False
        self.committed: dict[TopicPartition, int] = {}

    async def taken(self, deliveries) -> bool:
        """Wait until the group has committed past every delivered record; True if it had to wait."""
        need: dict[TopicPartition, int] = {}
        for metadata in deliveries:
            partition = TopicPartition(metadata.topic, metadata.partition)
            need[partition] = max(need.get(partition, 0), metadata.offset + 1)
        rounds, deadline = 0, time.monotonic() + WAIT_TIMEOUT
        while behind := [tp for tp, offset in need.items() if self.committed.get(tp, 0) < offset]:
            if rounds:
                if time.monotonic() > deadline:
                    raise PublishError(
                        f"the settlement group {self.name!r} did not take the lines sent within "
                        f"{WAIT_TIMEOUT:.0f} s: is `gongji run settlement` running with that "
                        "GONGJI_SETTLEMENT_GROUP? (--no-wait sends without waiting for it)")
                await asyncio.sleep(0.02)
            if not self.started:
                await self.admin.start()
                self.started = True
            self.committed.update(await kafka.committed_with(self.admin, self.name, behind))
            rounds += 1
        return rounds > 1

    async def close(self) -> None:
        if self.started:
            await self.admin.close()


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
                tally = asyncio.run(publish(source, settings, rate=args.rate, wait=not args.no_wait,
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
