"""State that knows what it has seen: the settlement service's guard against a Redis that lost data.

Redis keeps, per input partition, the next offset whose effects it holds (SeenMarkers). A Redis
that lacks what Kafka's committed offsets say was settled (emptied, restarted without its
append-only file, a failover to a lagging replica) would treat every person as new and pay
deductibles and caps twice. So the service checks on every assignment and before every batch;
when Redis is behind it settles nothing: it pauses every partition it holds (one person's claims,
credits and registry entry are on three topics, so no partition's state stands alone), says so in
one log line, turns /healthz 503, and resumes by itself once `gongji settlement rebuild` has
restored the state and written the markers.
"""

from __future__ import annotations

import asyncio
import logging

from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.structs import ConsumerRecord, TopicPartition

from gongji.common.observe import Metrics
from gongji.settlement.domain import SettlementError
from gongji.settlement.redis_store import SeenMarkers

log = logging.getLogger("gongji.settlement")
WATCH_EVERY = 1.0  # seconds between looks at the markers while refusing


class StateLost(SettlementError):
    """Redis lost state under a batch in flight; its results are not published."""


def field(partition: TopicPartition) -> str:
    return f"{partition.topic}:{partition.partition}"


class Gate(ConsumerRebalanceListener):
    """Admits a batch only onto state Redis still holds, and seals it (markers, durability) after."""

    def __init__(self, markers: SeenMarkers, metrics: Metrics, unmarked: frozenset[str] = frozenset()):
        self.markers = markers
        self.unmarked = unmarked  # topics whose messages change no state (the gateway's questions): no marker
        self.metrics = metrics
        self.consumer = None
        self.fresh: set[TopicPartition] = set()  # assigned, never settled by anyone: no marker needed
        self.needed: dict[TopicPartition, int] = {}  # while refusing: the marker each partition must reach
        self.unchecked: set[TopicPartition] = set()  # assigned, not compared with Redis yet

    def bind(self, consumer) -> "Gate":
        """The rebalance listener for `consumer` (kafka.consume_batches calls this)."""
        self.consumer = consumer
        return self

    @property
    def refusing(self) -> bool:
        return bool(self.needed)

    async def on_partitions_revoked(self, revoked) -> None:
        pass

    async def on_partitions_assigned(self, assigned) -> None:
        self.fresh, self.needed, self.unchecked = set(), {}, set(assigned)
        self._show()
        try:
            await self._check()
        except Exception as error:  # Redis or Kafka unreachable: the next batch checks first
            log.warning("checking Redis's markers on assignment failed (%r); checking before the next batch", error)

    async def _check(self) -> None:
        partitions = sorted(tp for tp in self.unchecked if tp.topic not in self.unmarked)
        if not partitions:
            self.unchecked = set()
            return
        committed = {tp: await self.consumer.committed(tp) for tp in partitions}
        marks = await self.markers.read([field(tp) for tp in partitions])
        behind = {}
        for tp in partitions:
            done, mark = committed[tp], marks[field(tp)]
            if not done and mark is None:  # never settled (a group commits 0 for a partition it found empty)
                self.fresh.add(tp)
            elif done and (mark is None or mark < done):
                behind[tp] = (done, mark)
        self.unchecked = set()
        if behind:
            self._refuse(behind, "on assignment")

    async def admit(self, messages: list[ConsumerRecord]) -> list[ConsumerRecord]:
        """The batch's messages if Redis holds the state they follow; else none: the partitions are
        refused and sought back, so the batch comes again once the state is back."""
        if self.unchecked:
            await self._check()
        if not self.refusing:
            spans = _spans(messages, self.unmarked)
            self._judge(spans, await self.markers.read([field(tp) for tp in spans]))
        if self.refusing:
            self._rewind(messages)
            return []
        return messages

    def _judge(self, spans: dict[TopicPartition, tuple[int, int]], marks: dict[str, int | None]) -> None:
        behind = {tp: (first, marks[field(tp)]) for tp, (first, _) in spans.items()
                  if tp not in self.fresh and (marks[field(tp)] is None or marks[field(tp)] < first)}
        if behind:
            self._refuse(behind, "before a batch")

    async def riding(self, messages: list[ConsumerRecord]) -> "Riding | None":
        """Where Redis is one node: the batch's markers to read and seal on the settlement store's
        own round trips (Riding); None where admit and seal must go apart (a Redis Cluster, partitions
        not compared with Redis yet, refusing, or nothing to mark)."""
        spans = _spans(messages, self.unmarked)
        if self.unchecked or self.refusing or not spans:
            return None
        nodes = await self.markers.nodes()
        if len(nodes) != 1 or nodes[0][0] is not self.markers.client:
            return None
        await self.markers.load()
        return Riding(self, messages, spans, nodes[0][1])

    def _sealed(self, messages: list[ConsumerRecord], spans: dict[TopicPartition, tuple[int, int]],
                behind: list[str]) -> None:
        if behind:
            lost = {tp: (spans[tp][0], None) for tp in spans if field(tp) in behind}
            self._refuse(lost, "while a batch was settled")
            self._rewind(messages)
            raise StateLost(f"Redis lost state under a batch of {len(messages)}; its results are not published")
        self.fresh -= set(spans)

    def _seal_spans(self, spans: dict[TopicPartition, tuple[int, int]]) -> dict[str, tuple[int, int]]:
        return {field(tp): (-1 if tp in self.fresh else first, nxt) for tp, (first, nxt) in spans.items()}

    async def seal(self, messages: list[ConsumerRecord]) -> None:
        """After the batch's writes, before its results are published: move the markers and wait
        until Redis has made all of it durable. Raises StateLost if Redis lost state meanwhile."""
        spans = _spans(messages, self.unmarked)
        if not spans:
            return
        try:
            behind = await self.markers.seal(self._seal_spans(spans))
        except Exception:
            await self.markers.forget_nodes()
            raise
        self._sealed(messages, spans, behind)

    async def watch(self, stop: asyncio.Event) -> None:
        """While refusing: resume once every refused partition's marker is where it must be."""
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), WATCH_EVERY)
            except asyncio.TimeoutError:
                pass
            if not self.needed or self.consumer is None:
                continue
            try:
                marks = await self.markers.read([field(tp) for tp in self.needed])
            except Exception as error:  # an outage: the next look may find it back
                log.warning("reading the settlement markers failed: %r", error)
                await self.markers.forget_nodes()
                continue
            if all(marks[field(tp)] is not None and marks[field(tp)] >= need for tp, need in self.needed.items()):
                log.info("Redis holds the settlement state again (markers up to the committed offsets); "
                         "resuming %d partition(s)", len(self.consumer.assignment()))
                self.needed = {}
                self.consumer.resume(*self.consumer.assignment())
                self._show()

    def _rewind(self, messages: list[ConsumerRecord]) -> None:
        assignment = self.consumer.assignment()
        for tp, (first, _) in _spans(messages).items():
            if tp in assignment:
                self.consumer.seek(tp, first)

    def _refuse(self, behind: dict[TopicPartition, tuple[int, int | None]], when: str) -> None:
        assignment = self.consumer.assignment()
        self.consumer.pause(*assignment)
        for tp, (need, _) in behind.items():
            self.needed[tp] = max(need, self.needed.get(tp, 0))
        shown = ", ".join(f"{tp.topic}[{tp.partition}] has {'no marker' if mark is None else mark} < {need}"
                          for tp, (need, mark) in sorted(behind.items())[:3])
        more = f" and {len(behind) - 3} more" if len(behind) > 3 else ""
        log.error("Redis is behind Kafka %s (%s%s): it lost settlement state, and settling on it would pay "
                  "deductibles and caps twice; refusing all %d assigned partition(s) until `gongji settlement "
                  "rebuild` restores it", when, shown, more, len(assignment))
        self._show()

    def _show(self) -> None:
        self.metrics.refuse(len(self.needed))


class Refused(SettlementError):
    """Redis is behind the batch's partitions (Gate._refuse has paused and sought them back): the
    batch settles nothing and publishes nothing."""


class Riding:
    """A batch's markers carried by the settlement store's round trips, on one Redis node (the
    Settler's `guard`): read with the batch's first read, before its first write (`admission`), and
    moved, with the wait for durability, in the round trip of its last commits (`sealing`), which
    sets `sealed`; where the batch's last write is another, the service seals apart (Gate.seal).
    Two round trips a batch fewer than Gate.admit and Gate.seal; docs/DURABILITY.md argues the order."""

    def __init__(self, gate: Gate, messages: list[ConsumerRecord], spans: dict[TopicPartition, tuple[int, int]],
                 key: str):
        self.gate, self.messages, self.spans, self.key = gate, messages, spans, key
        self.fields = [field(tp) for tp in spans]
        self.scripts = (gate.markers._mark,)
        self.admission: Riding | None = self  # until the markers are read and found where they must be
        self.sealing = _Sealing(self)
        self.sealed = False  # the seal rode on the batch's last write

    def queue(self, pipe) -> int:
        pipe.hmget(self.key, self.fields)
        return 1

    def take(self, replies: list) -> None:
        """The markers read: raises Refused if Redis is behind the batch."""
        self.gate._judge(self.spans, {name: None if value is None else int(value)
                                      for name, value in zip(self.fields, replies[0])})
        if self.gate.refusing:
            self.gate._rewind(self.messages)
            raise Refused(f"Redis is behind a batch of {len(self.messages)}: refused")
        self.admission = None


class _Sealing:
    def __init__(self, riding: Riding):
        self.riding = riding
        self.scripts = riding.scripts

    def queue(self, pipe) -> int:
        riding = self.riding
        args = [str(item) for name, (first, nxt) in riding.gate._seal_spans(riding.spans).items()
                for item in (name, first, nxt)]
        riding.gate.markers._mark.queue(pipe, [riding.key], args)
        return 1 + riding.gate.markers.durability.queue(pipe)

    def take(self, replies: list) -> None:
        """The markers moved and made durable: raises StateLost if Redis lost state meanwhile,
        NotDurable if the wait fell short."""
        riding = self.riding
        if not replies[0] and len(replies) > 1:
            riding.gate.markers.durability.verify(replies[1])
        riding.gate._sealed(riding.messages, riding.spans, [name.decode() for name in replies[0]])


def _spans(messages, unmarked: frozenset[str] = frozenset()) -> dict[TopicPartition, tuple[int, int]]:
    """Per partition: (first offset, last offset + 1) of the messages, but those of `unmarked` topics."""
    spans: dict[TopicPartition, tuple[int, int]] = {}
    for message in messages:
        if message.topic in unmarked:
            continue
        tp = TopicPartition(message.topic, message.partition)
        first, nxt = spans.get(tp, (message.offset, message.offset + 1))
        spans[tp] = (min(first, message.offset), max(nxt, message.offset + 1))
    return spans
