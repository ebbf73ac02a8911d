"""The fraud service (`gongji run fraud`): one aiokafka consumer loop over `settlements`, `claims`
and its own activity topic, rules from gongji.fraud.rules, state in changelog-backed buckets
(gongji.fraud.store), signals to `fraud.signals`.

One consumer group, `<topic_prefix><fraud_group>` (which also prefixes its own topics), assigned by
range so that partition p of every input is one worker's (settlements and claims are both keyed by
psn_no, so a person's results and claims meet there):
- the person side reads settlements and claims and keeps each person's windows (a Shanghai day, an
  ISO week, a year, and a profile of recent visits, drug supplies and claims waiting for their
  outcome). What it sees at an institution it passes on, keyed by fixmedins_code, to the activity
  topic;
- the institution side reads that topic and keeps each institution's days.

Event time (issue 14): the person side notes the newest settlement time read on each `settlements`
partition (its watermark) once the batch's activity is acknowledged, and every second sends the
watermarks that moved to every partition of the activity topic. The institution side keeps them
per partition (the `clock` bucket) and judges a day once the oldest watermark of the partitions not
idle (silent for `idle_seconds`) has passed the day's end plus `allowed_lateness_seconds`; it
does so after each batch and every second (a partition going idle moves it too). An event later
than that is counted (`gongji_fraud_late_events`) and logged.

State: each bucket is kept in memory and written to the changelog topic (`<group>-buckets-changelog`,
compacted) on the partition of the input that owns it; a worker assigned partitions reads theirs
back before it reads any input (`restore`), and forgets those revoked.

Order of effects per batch (up to `fraud.batch_events` events), so that a crash loses nothing and
doubles nothing beyond an identical re-send: the events run through the rules in order on buckets staged
for the whole batch (each event sees what the ones before it changed, exactly as one by one); signals,
passed-on activity (one message per institution and batch) and dead letters are sent and acknowledged by
the broker; only then are the buckets queued. A checkpoint (every `fraud.save_seconds` or
`fraud.batch_events` events, before a rebalance or a stop) saves each queued bucket once, however many
batches changed it, and once acknowledged commits the offsets. A crash before a checkpoint replays the
batches since the last one, which raise the same signals again under the same signal_ids (readers keep
the latest per id); a crash after finds the ids already counted. A rule failing on an event sends the
batch through again one event at a time, so only that event is dropped (to dead-letters); anything else
that fails goes through gongji.common.poison as in every service (an outage is retried with backoff, a
failing event is isolated and dead-lettered). Kafka transactions are not used: Tansu has none.

Until issue 12 this ran on faust (agents, windowed tables): ~1,100 results/s at ~820 µs of CPU each,
most of it faust's per-message machinery (README, "Speed").
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections import deque
from datetime import datetime, timedelta, timezone

import orjson
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from prometheus_client import Counter

from gongji.common import kafka, poison
from gongji.common.avro import SchemaCatalog
from gongji.common.observe import Metrics, serve
from gongji.common.topic_admin import create_topics, ensure_service_topics
from gongji.contract.topics import TopicSpec, service_topics
from gongji.contract.wire import FRAUD_SIGNAL, INPUT_RECORDS, OUTPUT_RECORDS, TYPE_HEADER, header, headers
from gongji.fraud import changelog, domain, rules, spike
from gongji.fraud.domain import NO_WINDOW, WITHDRAWN, InstitutionActivity, Outcome, Signal, Staged
from gongji.fraud.reading import Reader
from gongji.fraud.store import BatchStaged, ChangelogBuckets, CopyingBuckets
from gongji.settings import Settings

log = logging.getLogger("gongji.fraud")


class LateLog:
    """Late events said without flooding the log when a feed arrives out of order: on each side, the
    first of every `every` seconds with its claim id, and when the next comes after them, how many
    more there were (each one is counted in gongji_fraud_late_events as it is read)."""

    def __init__(self, every: float = 60.0, clock=time.monotonic):
        self.every, self.clock = every, clock
        self.open: dict[str, tuple[float, int]] = {}  # side → (when its first was said, how many since)

    def late(self, side: str, text: str, *args) -> None:
        now = self.clock()
        start, more = self.open.get(side, (None, 0))
        if start is not None and now - start < self.every:
            self.open[side] = (start, more + 1)
            return
        if more:
            log.info("fraud: %d more late events on the %s side in the %.0f s after the one above", more, side,
                     now - start)
        log.info("fraud: late " + text, *args)
        self.open[side] = (now, 0)


SERVICE = "fraud"
# The results on `settlements` the rules read (by their type header); credit results are not theirs.
RESULT_KINDS = tuple(kind.encode() for kind in ("settlement", "reversal", "rejection"))
RULE_ERRORS = (Exception,)  # whatever a rule raises on an event drops that event alone
WATCH_EVERY = 1.0  # seconds between watermark sends and day closings
GC_YOUNG = 50_000


class FraudService:
    """The consumer loop and its state, built from settings; `run(stop)` runs it until `stop` is set."""

    def __init__(self, settings: Settings, catalog: SchemaCatalog):
        self.settings = settings
        self.catalog = catalog
        self.config = settings.fraud
        self.metrics = Metrics(SERVICE)
        # The latest signals this process sent (for tests and a look from a debugger); bounded, as a
        # long-running service must not keep every signal it ever raised.
        self.raised: deque[dict] = deque(maxlen=1000)
        self.group = settings.kafka_group("fraud")  # its consumer group, and its own topics' prefix
        self.activity_name = f"{self.group}-institution-activity"
        self.changelog_name = f"{self.group}-buckets-changelog"
        self.late_log = LateLog()
        self.late = Counter("gongji_fraud_late_events", "Events read after their window was judged, or more than "
                            "the allowed lateness behind their partition", ["side"], registry=self.metrics.registry)
        self.withdrawals = Counter("gongji_fraud_withdrawals", "Signals withdrawn, by rule", ["rule"],
                                   registry=self.metrics.registry)
        self.buckets = ChangelogBuckets()
        self.reader = Reader(catalog)
        # Event time: the person side's watermark per `settlements` partition (sent every second when
        # it moved); the institution side's wall-clock time it last heard from each (ledger, source).
        self.marks: dict[int, datetime] = {}
        self.marks_sent: dict[int, datetime] = {}
        self.heard: dict[tuple[str, str], float] = {}
        self.started = time.monotonic()
        self.unsaved, self.next_save = 0, self.started  # events handled since the last checkpoint, the next one
        self.working = asyncio.Lock()  # a batch, the timer's work, a rebalance: one at a time

    # ------------------------------------------------------------------ batches
    async def _handle(self, messages: list) -> None:
        """A part of a polled batch (the poison policy may split it): person events, then activity."""
        persons = [m for m in messages if m.topic != self.activity_name]
        activity = [m for m in messages if m.topic == self.activity_name]
        if persons:
            await self._person_batch(persons)
        if activity:
            await self._institution_batch(activity)
        self.metrics.consumed.inc(len(messages))

    async def _dead_one(self, message, reason: str) -> None:
        await asyncio.gather(*await self._dead_letters([(message, reason)]))

    async def _person_batch(self, messages) -> None:
        """A batch of person events through the rules in order, on buckets staged for the whole
        batch; then its signals, passed-on activity and dead letters sent and acknowledged; only
        then the buckets saved, each key once, to the partition of the event that last changed it."""
        steps, dead = [], []
        for message in messages:
            try:
                found = self._decode(message)
            except Exception as error:  # whatever reading it raises follows this message
                dead.append((message, f"not an input the fraud rules can read: {poison.describe(error)}"))
                continue
            if found is not None:
                steps.append((message, found))
        marks = self._late_persons(steps)
        staged = BatchStaged(self.buckets)
        try:
            outcome = Outcome()
            for message, found in steps:
                staged.partition = message.partition
                outcome.extend(self._rules(staged, found))
        except RULE_ERRORS:
            # A rule failed on an event: run the batch again one event at a time, so that only
            # what that event changed is dropped (with it to dead-letters), as event by event.
            staged, outcome = BatchStaged(self.buckets), Outcome()
            for message, found in steps:
                staged.partition = message.partition
                own = Staged(CopyingBuckets(staged))
                try:
                    step = self._rules(own, found)
                except RULE_ERRORS as error:
                    dead.append((message, f"not an input the fraud rules can read: {poison.describe(error)}"))
                    continue
                own.flush()
                outcome.extend(step)
        sends = await self._forward(outcome.forward)
        sends += await self._send_signals(outcome.signals)
        sends += await self._dead_letters(dead)
        await asyncio.gather(*sends)  # acknowledged before the buckets that raised them are saved
        staged.flush()  # queued for the next checkpoint
        self.marks.update(marks)  # the activity up to these times is on the activity topic

    def _late_persons(self, steps) -> dict[int, datetime]:
        """The watermarks the batch moves (newest settlement time per `settlements` partition); an
        event more than the allowed lateness behind its partition's is counted and logged as late
        (it is still applied: the rules revise what it changes)."""
        marks = dict(self.marks)
        lateness = timedelta(seconds=self.config.allowed_lateness_seconds)
        for message, found in steps:
            if not isinstance(found, (domain.VisitSettled, domain.VisitReversed)):
                continue
            mark = marks.get(message.partition)
            if mark is not None and found.setl_time + lateness < mark:
                self.late.labels("person").inc()
                self.late_log.late("person", "event %s on %s[%s]: %s behind its partition", found.claim_id,
                                   message.topic, message.partition, mark - found.setl_time)
            marks[message.partition] = found.setl_time if mark is None else max(mark, found.setl_time)
        return {partition: mark for partition, mark in marks.items() if self.marks.get(partition) != mark}

    async def _send_watermarks(self) -> None:
        """The watermarks that moved, to every partition of the activity topic (after the activity
        they cover, which was acknowledged before they were noted)."""
        moved = {str(p): t.isoformat() for p, t in self.marks.items() if self.marks_sent.get(p) != t}
        if not moved:
            return
        sent = dict(self.marks)
        value = orjson.dumps({"watermarks": moved})
        sends = [await changelog.send(self.producer, self.activity_name, partition, [(b"watermark", value)])
                 for partition in range(self.settings.partitions)]
        await asyncio.gather(*[future for futures in sends for future in futures])
        self.marks_sent.update(sent)

    async def checkpoint(self) -> None:
        """The buckets changed since the last checkpoint saved (acknowledged), then the offsets of
        what was handled committed: a crash replays only what came after, on the state saved with it."""
        if not (self.unsaved or self.buckets.queued):
            return  # nothing handled since the last one (a first assignment, a stop when idle)
        await self._save()
        await self.consumer.commit()
        self.unsaved, self.next_save = 0, time.monotonic() + self.config.save_seconds

    def _checkpoint_due(self) -> bool:
        return bool(self.unsaved or self.buckets.queued) and (self.unsaved >= self.config.batch_events
                                                              or time.monotonic() >= self.next_save)

    async def _save(self) -> None:
        """The buckets saved since the last call, to the changelog (acknowledged on return). Not
        acknowledged, they stay queued: the batch is read again after the outage, and finds its
        events already counted in memory, so it would not put those buckets again."""
        changes = self.buckets.changes()
        try:
            sends = [await changelog.send(self.producer, self.changelog_name, partition, records.items())
                     for partition, records in changes.items()]
            await asyncio.gather(*[future for futures in sends for future in futures])
        except BaseException:
            self.buckets.requeue(changes)
            raise

    def _decode(self, message):
        """The domain event a message carries (None: nothing for the rules); raises on bad input."""
        kind = header(message.headers, TYPE_HEADER)
        topics = self.settings.topics
        if message.topic == topics.claims:
            name, record = self.reader.read(message.value)
            if name != INPUT_RECORDS["claim"]:
                return None  # reversals (2208) reach the rules as their results on settlements
            return domain.claim_from_wire(record, self.config)
        if kind in RESULT_KINDS:
            name, record = self.reader.read(message.value)
            if name == OUTPUT_RECORDS["settlement"]:
                return domain.visit_from_wire(record)
            if name == OUTPUT_RECORDS["reversal"]:
                return domain.reversal_from_wire(record)
            if name == OUTPUT_RECORDS["rejection"]:
                return domain.ClaimRefused(record.get("claim_id") or "", record.get("psn_no") or "",
                                           record["err_code"])
            raise domain.UnreadableEvent(f"a {name} record under {TYPE_HEADER} {kind.decode()}")
        if kind is None:
            self.catalog.decode(message.value)  # a result without headers: undecodable goes to dead-letters
        return None  # credit results: nothing for the rules

    def _rules(self, staged, event) -> Outcome:
        config = self.config
        if isinstance(event, domain.VisitSettled):
            return rules.on_visit(config, staged, event)
        if isinstance(event, domain.ClaimFiled):
            return rules.on_claim(config, staged, event)
        if isinstance(event, domain.VisitReversed):
            return rules.on_reversal(config, staged, event)
        return rules.on_refusal(config, staged, event)

    async def _forward(self, activities: list[InstitutionActivity]) -> list:
        """Activity passed on to the institution side: one message per institution and batch (a list,
        in the order seen), keyed by fixmedins_code."""
        by_code: dict[str, list] = {}
        for activity in activities:
            by_code.setdefault(activity.fixmedins_code, []).append(activity.to_json())
        return await kafka.publish(self.producer, self.activity_name,
                                   [(code.encode(), orjson.dumps({"activities": batch}), [])
                                    for code, batch in by_code.items()])

    async def _institution_batch(self, messages) -> None:
        staged, signals, ledgers = BatchStaged(self.buckets), [], set()
        for message in messages:
            staged.partition = message.partition
            ledger = str(message.partition)  # the days waiting, per partition of this input
            ledgers.add(ledger)
            try:
                value = orjson.loads(message.value)
                if isinstance(value, dict) and "watermarks" in value:
                    self._note_watermarks(staged, ledger, value["watermarks"])
                    continue
                activities = [InstitutionActivity.from_json(item) for item in
                              (value["activities"] if isinstance(value, dict) and "activities" in value
                               else [value])]
            except (KeyError, ValueError, TypeError, AttributeError) as error:
                log.error("fraud: unreadable institution activity skipped: %s", error)
                continue
            for activity in activities:
                if spike.is_late(self.config, staged.get("clock", ledger, NO_WINDOW), activity):
                    self.late.labels("institution").inc()
                    self.late_log.late("institution", "activity %s: its day %s was judged", activity.claim_id,
                                       activity.setl_time.date())
                signals += rules.on_activity(self.config, staged, activity, ledger)
        for ledger in sorted(ledgers):
            staged.partition = int(ledger)
            signals += self._close(staged, ledger)
        await asyncio.gather(*await self._send_signals(signals))
        staged.flush()

    def _note_watermarks(self, staged: BatchStaged, ledger: str, marks: dict) -> None:
        clock = staged.get("clock", ledger, NO_WINDOW)
        known = clock.setdefault("marks", {})
        for source, text in marks.items():
            self.heard[(ledger, source)] = time.monotonic()
            if source not in known or domain.parse_time(text) > domain.parse_time(known[source]):
                known[source] = text
        staged.put("clock", ledger, NO_WINDOW, clock)

    def _close(self, staged, ledger: str) -> list[Signal]:
        """Judge the days of `ledger` its watermark has closed: the oldest of the `settlements`
        partitions' watermarks, leaving out those not heard from for `idle_seconds`."""
        now, expected = time.monotonic(), [str(p) for p in range(self.settings.partitions)]
        idle = {source for source in expected
                if now - self.heard.get((ledger, source), self.started) > self.config.idle_seconds}
        marks = {source: domain.parse_time(text)
                 for source, text in staged.get("clock", ledger, NO_WINDOW).get("marks", {}).items()}
        watermark = spike.watermark(marks, expected, idle)
        return [] if watermark is None else rules.close(self.config, staged, ledger, watermark)

    async def _close_days(self) -> None:
        """Every second: the days a partition going idle has closed, on the partitions of the
        activity topic this worker holds and has read from."""
        if not self.heard:  # nothing read from the activity topic yet
            return
        held = {tp.partition for tp in self.consumer.assignment() if tp.topic == self.activity_name}
        staged, signals = BatchStaged(self.buckets), []
        for ledger in sorted({ledger for ledger, _source in self.heard if int(ledger) in held}):
            staged.partition = int(ledger)
            signals += self._close(staged, ledger)
        if not staged.pending:
            return
        await asyncio.gather(*await self._send_signals(signals))
        staged.flush()

    async def _send_signals(self, signals: list[Signal]) -> list:
        detected_at = datetime.now(timezone.utc).isoformat()
        records = []
        for signal in signals:
            record = signal.to_wire(detected_at)
            self.raised.append(record)
            if signal.status == WITHDRAWN:
                self.withdrawals.labels(signal.rule_id).inc()
            else:
                self.metrics.outputs.labels(signal.rule_id).inc()
            # Rule and id only: the subject (a psn_no for a person) is personal, and is on the topic.
            log.info("fraud: %s %s %s", signal.rule_id, signal.signal_id, signal.status)
            records.append((signal.subject_id.encode(), self.catalog.encode("FraudSignal", record),
                            headers(FRAUD_SIGNAL, signal.signal_id)))
        return await kafka.publish(self.producer, self.settings.topics.fraud_signals, records)

    async def _dead_letters(self, dead: list) -> list:
        for message, reason in dead:
            self.metrics.dead_letters.inc()
            log.warning("fraud: dead letter from %s: %s", kafka.where(message), reason)
        return await kafka.publish(self.producer, self.settings.topics.dead_letters,
                                   [kafka.dead_letter_record(self.catalog, message, reason, SERVICE)
                                    for message, reason in dead])

    async def _watch(self) -> None:
        try:
            await self._send_watermarks()
            await self._close_days()
        except Exception as error:  # an outage: nothing saved, tried again in a second
            log.warning("fraud: watermarks not sent or days not closed: %s", poison.describe(error))

    async def restore(self, partitions: set[int]) -> None:
        await changelog.restore(self.settings, self.changelog_name, self.buckets, partitions)

    # ------------------------------------------------------------------ lifecycle
    async def run(self, stop: asyncio.Event) -> None:
        settings = self.settings
        await ensure_service_topics(settings, [*service_topics(settings.topics, "fraud"), self.activity_name])
        await create_topics(settings, [TopicSpec(self.changelog_name, settings.partitions,
                                                 settings.replication_factor, {"cleanup.policy": "compact"})])
        server = serve(self.metrics, settings.metrics_host, settings.metrics_port, settings.stall_seconds,
                       settings.metrics_token_value()) if settings.metrics_port else None
        self.producer = kafka.producer(settings)
        self.consumer = kafka.consumer(settings, self.group, partition_assignment_strategy=(RangePartitionAssignor,))
        self.consumer.subscribe([settings.topics.settlements, settings.topics.claims, self.activity_name],
                                listener=changelog.Rebalance(self.working, self.buckets, self.restore,
                                                             self.checkpoint))
        self.policy = kafka.policy(settings, SERVICE, lambda: kafka.kafka_answers(self.producer), self._dead_one)
        # A batch makes and drops many small dicts (the buckets it reads): collect the young ones
        # less often (700 allocations by default, which cost a tenth of the CPU here).
        gc.set_threshold(GC_YOUNG, *gc.get_threshold()[1:])
        try:
            await self.producer.start()
            await self.consumer.start()
            log.info("fraud: group %s on %s", self.group, settings.kafka_bootstrap_servers)
            await self._loop(stop)
            async with self.working:
                try:
                    await self.checkpoint()
                except Exception as error:  # what came after the last checkpoint is read again
                    log.warning("fraud: last checkpoint not made: %s", poison.describe(error))
        finally:
            await self.consumer.stop()
            await self.producer.stop()
            if server is not None:
                server.shutdown()

    async def _loop(self, stop: asyncio.Event) -> None:
        consumer, metrics = self.consumer, self.metrics
        step = kafka.BatchStep(self.settings, SERVICE, metrics, stop)
        next_watch = next_lag = time.monotonic()
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=int(self.config.batch_seconds * 1000),
                                             max_records=self.config.batch_events)
            metrics.polled()
            async with self.working:
                if time.monotonic() >= next_lag:
                    next_lag = time.monotonic() + kafka.LAG_EVERY
                    positions = {tp: await consumer.position(tp) for tp in consumer.assignment()}
                    kafka.record_lag(metrics, consumer, positions.get)
                held = consumer.assignment()
                messages = [message for partition in sorted(batches) if partition in held
                            for message in batches[partition]]
                if messages:
                    async def work() -> None:
                        await self.policy.handle(messages, self._handle)
                        self.unsaved += len(messages)
                        if self._checkpoint_due():
                            await self.checkpoint()

                    if not await step.take(consumer, batches, len(messages), work):
                        continue
                else:
                    metrics.idle()
                    if self._checkpoint_due() and not await step.take(consumer, {}, 0, self.checkpoint):
                        continue
                if time.monotonic() >= next_watch:
                    next_watch = time.monotonic() + WATCH_EVERY
                    await self._watch()
