"""`gongji publish FILE|-`: the JSON lines `gongji replay` reads, put on Gongji's topics.

Each line is read as replay reads it and validated as settlement will validate it (codec.to_event,
the configured bounds, the present): a line that fails is one line on standard error with its
number and the field, and the others still go. A good line is mapped back to the wire
(codec.to_wire: exact money, times with their offset), then encoded, keyed and signed as the demo's
traffic is (gongji.local.launch.encode) and sent to its topic.

Kafka keeps the order of one topic and key (one person's claims), not across topics or keys: a
person's credit and their claim, a family member's claim and the holder's credit, a registry entry
and the claims that need it. Settlement's results depend on the order only among lines that touch
a common subject (Order: a person's state and registry entry, the family account holder's, an
institution's entry), so a line that depends on an earlier one sent to another topic or key goes
out once the settlement group has committed that one; a line on the same topic and key only after
the one before it. Lines that depend on nothing pending go at once, ahead of lines still waiting,
so independent families and persons settle side by side: the file is settled in its order where
the order matters, as replay settles it. At the end publish waits until the group has taken
everything sent. `wait=False`: no waiting at all (Kafka's order only; settlement need not run).
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
    """What each line reads and writes, in file order (pure). `person:P`: a person's state (their
    accumulators and account), written by their claims, reversals and credits, and by a family
    member's claim or reversal on P's account; `registry:P` and `institution:C`: registry entries,
    written by person and institution lines, read by the events that need them (a claim reads its
    person's, the holder's it draws on, and its institution's). The holder is the one the file's
    person lines bind the person to when the claim is read."""

    def __init__(self):
        self.holders: dict[str, str] = {}  # psn_no → mulaid_holder_psn_no, from the file's person lines
        self.drew_on: dict[tuple[str, str], str] = {}  # (psn_no, claim_id) → holder its claim drew on

    def subjects(self, event) -> tuple[set[str], set[str]]:
        """(what the line reads, what it writes)."""
        if isinstance(event, Institution):
            return set(), {"institution:" + event.fixmedins_code}
        if isinstance(event, Person):
            if event.mulaid_holder_psn_no:
                self.holders[event.psn_no] = event.mulaid_holder_psn_no
            else:
                self.holders.pop(event.psn_no, None)
            return set(), {"registry:" + event.psn_no}
        reads, writes = {"registry:" + event.psn_no}, {"person:" + event.psn_no}
        holder = None
        if isinstance(event, Claim):
            holder = self.holders.get(event.psn_no) if event.acct_used_flag == "1" else None
            if holder is not None:
                self.drew_on[(event.psn_no, event.claim_id)] = holder
            reads.add("institution:" + event.fixmedins_code)
            if event.rx_fixmedins_code:  # 双通道: the prescribing institution's entry too
                reads.add("institution:" + event.rx_fixmedins_code)
        elif isinstance(event, Reversal):
            holder = self.drew_on.get((event.psn_no, event.orig_claim_id))
        if holder is not None:
            reads.add("registry:" + holder)
            writes.add("person:" + holder)
        return reads, writes


@dataclass(eq=False)
class Line:
    """A line to send: its topic and key, and once sent, its delivery (a future of its metadata)."""

    stream: tuple[str, bytes]
    sent: asyncio.Future


class Dependencies:
    """The earlier lines each line must follow (pure): the last writer of what it reads or writes,
    the readers since of what it writes, and the line before it on its topic and key."""

    def __init__(self):
        self.writer: dict[str, Line] = {}
        # since the last writer, the last reader per topic and key (each key's lines go in file order)
        self.readers: dict[str, dict[tuple[str, bytes], Line]] = {}
        self.last: dict[tuple[str, bytes], Line] = {}  # per topic and key

    def of(self, line: Line, reads: set[str], writes: set[str]) -> list[Line]:
        before = [self.writer[subject] for subject in reads | writes if subject in self.writer]
        if line.stream in self.last:
            before.append(self.last[line.stream])
        for subject in writes:
            before += self.readers.pop(subject, {}).values()
            self.writer[subject] = line
        for subject in reads - writes:
            self.readers.setdefault(subject, {})[line.stream] = line
        self.last[line.stream] = line
        return list({id(dep): dep for dep in before if dep is not line}.values())


def rows_for(lines: Iterable[str | bytes], settings: Settings, catalog: SchemaCatalog, errors: IO[str],
             tally: Tally, now: datetime | None = None) -> Iterable[tuple[int, Row, tuple[set[str], set[str]]]]:
    """(line number, message, what it reads and writes: Order) for each good line, in order; each bad line said
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


PENDING_LINES = 10_000  # lines read but not yet acknowledged by the broker, at most


async def publish(lines: Iterable[str | bytes], settings: Settings, *, rate: float | None = None,
                  wait: bool = True, errors: IO[str] = sys.stderr, progress=None,
                  now: datetime | None = None) -> Tally:
    """Send the good lines, each once the lines it follows (Dependencies) are settled, unless not
    `wait`; `rate`: at most that many lines read a second, paced by the clock; `progress(n)` is
    called with each line's number as it is sent."""
    tally = Tally()
    producer = kafka.producer(settings)
    await producer.start()
    group = _Group(settings) if wait else None
    graph, slots, tasks = Dependencies(), asyncio.Semaphore(PENDING_LINES), set()
    sent: dict[TopicPartition, int] = {}  # per partition, the offset after the last record sent

    async def send(number: int, line: Line, after: list[Line], row: Row) -> None:
        topic, key, value, _ident, headers = row
        try:
            # the line before it on its topic and key: sent before it is enough (Kafka keeps that order);
            # an earlier line it depends on elsewhere: settled before it (unless not waiting)
            others = []
            for dep in after:
                if dep.stream == line.stream:
                    await dep.sent
                elif group is not None:
                    others.append(await dep.sent)
            if others:
                tally.waits += await group.taken(await asyncio.gather(*others))
            delivery = await producer.send(topic, value, key=key, headers=headers)
            line.sent.set_result(delivery)
            if progress:
                progress(number)
            metadata = await delivery
            partition = TopicPartition(metadata.topic, metadata.partition)
            sent[partition] = max(sent.get(partition, 0), metadata.offset + 1)
            tally.sent += 1
            tally.by_topic[topic] = tally.by_topic.get(topic, 0) + 1
        except BaseException:
            line.sent.cancel()  # the lines after it are not sent either (each its own CancelledError)
            raise
        finally:
            slots.release()

    start = time.monotonic()
    try:
        for read, (number, row, (reads, writes)) in enumerate(rows_for(lines, settings, SchemaCatalog(), errors,
                                                                        tally, now)):
            if rate:
                await asyncio.sleep(max(0.0, start + read / rate - time.monotonic()))
            await slots.acquire()
            _raise_failed(tasks)  # a line that failed stops the publishing
            line = Line((row[0], row[1]), asyncio.get_running_loop().create_future())
            tasks.add(asyncio.create_task(send(number, line, graph.of(line, reads, writes), row)))
            await asyncio.sleep(0)  # let the lines ready go while the file is read
        if tasks:
            await asyncio.wait(tasks)
        _raise_failed(tasks)
        if group is not None and sent:  # done once the service has taken the last line too
            await group.taken_up_to(sent)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await producer.stop()
        if group is not None:
            await group.close()
    return tally


def _raise_failed(tasks: set[asyncio.Task]) -> None:
    """Forget the lines sent; raise what stopped one (not the lines left unsent behind it)."""
    for task in [task for task in tasks if task.done()]:
        tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            raise task.exception()


class _Group:
    """The settlement group's committed offsets (the service commits a batch after publishing its
    results), read by one poller for every line waiting on them."""

    def __init__(self, settings: Settings):
        self.name, self.admin, self.started = settings.settlement_group, kafka.admin(settings), False
        self.committed: dict[TopicPartition, int] = {}
        self.waiting: list[dict[TopicPartition, int]] = []
        self.changed = asyncio.Condition()
        self.poller: asyncio.Task | None = None

    async def taken(self, deliveries) -> bool:
        """Wait until the group has committed past every delivered record; True if it had to wait."""
        need: dict[TopicPartition, int] = {}
        for metadata in deliveries:
            partition = TopicPartition(metadata.topic, metadata.partition)
            need[partition] = max(need.get(partition, 0), metadata.offset + 1)
        return await self.taken_up_to(need)

    def _behind(self, need: dict[TopicPartition, int]) -> list[TopicPartition]:
        return [tp for tp, offset in need.items() if self.committed.get(tp, 0) < offset]

    async def taken_up_to(self, need: dict[TopicPartition, int]) -> bool:
        if not self._behind(need):
            return False
        deadline = time.monotonic() + WAIT_TIMEOUT
        rounds = 0
        self.waiting.append(need)
        try:
            async with self.changed:
                while self._behind(need):
                    if self.poller is None or self.poller.done():
                        self.poller = asyncio.create_task(self._poll())
                    try:
                        await asyncio.wait_for(self.changed.wait(), max(0.0, deadline - time.monotonic()))
                    except asyncio.TimeoutError:
                        raise PublishError(
                            f"the settlement group {self.name!r} did not take the lines sent within "
                            f"{WAIT_TIMEOUT:.0f} s: is `gongji run settlement` running with that "
                            "GONGJI_SETTLEMENT_GROUP? (--no-wait sends without waiting for it)") from None
                    rounds += 1
        finally:
            self.waiting.remove(need)
        return rounds > 1  # the first read may find it already taken

    async def _poll(self) -> None:
        """While a line waits: read the committed offsets it needs, tell the waiters, again."""
        if not self.started:
            await self.admin.start()
            self.started = True
        while behind := sorted({tp for need in self.waiting for tp in self._behind(need)}):
            self.committed.update(await kafka.committed_with(self.admin, self.name, behind))
            async with self.changed:
                self.changed.notify_all()
            await asyncio.sleep(0.02)

    async def close(self) -> None:
        if self.poller is not None:
            self.poller.cancel()
            await asyncio.gather(self.poller, return_exceptions=True)
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
