"""The fraud service (`gongji run fraud`): faust agents over `settlements` and `claims`, rules from
gongji.fraud.rules, state in changelog-backed faust tables, signals to `fraud.signals`.

Two agents, each in the consumer group `<topic_prefix><fraud_group>` (the faust app id, which also
prefixes the changelog topics):
- `persons` reads settlements and claims (both keyed by psn_no, so co-partitioned) and keeps each
  person's windows: windowed tables per Shanghai day and ISO week, a table per year, and a table of
  recent visits, drug supplies and claims waiting for their outcome. What it sees at an institution
  it passes on, keyed by fixmedins_code, to an internal topic.
- `institutions` reads that topic and keeps each institution's days (a windowed table).

Event time (issue 14): the person side notes the newest settlement time read on each `settlements`
partition (its watermark) once the batch's activity is acknowledged, and every second sends the
watermarks that moved to every partition of the activity topic. The institution side keeps them
per partition (the `clock` table) and judges a day once the oldest watermark of the partitions not
idle (silent for `idle_seconds`) has passed the day's end plus `allowed_lateness_seconds`; it
does so after each batch and every second (a partition going idle moves it too), under one lock
with the batches. An event later than that is counted (`gongji_fraud_late_events`) and logged.

Both agents take their streams in batches (`take_events`, up to `fraud.batch_events` events or
what came within `fraud.batch_seconds`). Order of effects per batch, so that a crash loses nothing
and doubles nothing beyond an identical re-send: the batch's events run through the rules in order
on buckets staged for the whole batch (each event sees what the ones before it changed, exactly as
one by one); signals, passed-on activity (one message per institution and batch) and dead letters
are sent and acknowledged by the broker; only then are the buckets written to the tables, each
changed bucket once, its changelog record on the partition of the event that last changed it (the
partition faust would have chosen). Faust flushes the producer before it commits offsets, and acks
a batch's events only after it is processed. A crash before the buckets are saved replays the
batch, which raises the same signals again under the same signal_ids (readers keep the first); a
crash after finds the ids already counted. A rule failing on an event sends the batch through
again one event at a time, so only that event is dropped (to dead-letters); anything else that
fails in a batch goes through gongji.common.poison as in every service (an outage is retried with
backoff, a failing event is isolated and dead-lettered), so no exception ends an agent. Faust's
exactly_once guarantee is not used: Tansu has no transactions.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path

import faust
from prometheus_client import Counter

from gongji.common import kafka, poison, reachable
from gongji.common.avro import SchemaCatalog
from gongji.settings import Settings
from gongji.common.observe import Metrics, serve
from gongji.common.topic_admin import ensure_service_topics
from gongji.contract.topics import service_topics
from gongji.contract.wire import FRAUD_SIGNAL, INPUT_RECORDS, OUTPUT_RECORDS, TYPE_HEADER, header, headers
from gongji.fraud import domain, rules, spike
from gongji.fraud.domain import NO_WINDOW, WITHDRAWN, InstitutionActivity, Outcome, Signal, Staged
from gongji.fraud.store import BatchStaged, CopyingBuckets, PinnedTable, TableBuckets

log = logging.getLogger("gongji.fraud")
SERVICE = "fraud"
# The results on `settlements` the rules read (by their type header); credit results are not theirs.
RESULT_KINDS = tuple(kind.encode() for kind in ("settlement", "reversal", "rejection"))
RULE_ERRORS = (Exception,)  # whatever a rule raises on an event drops that event alone


class FraudService:
    """The faust app and its agents, built from settings; `run(stop)` runs it until `stop` is set."""

    def __init__(self, settings: Settings, catalog: SchemaCatalog):
        self.settings = settings
        self.catalog = catalog
        self.config = settings.fraud
        self.metrics = Metrics(SERVICE)
        # The latest signals this process sent (for tests and a look from a debugger); bounded, as a
        # long-running service must not keep every signal it ever raised.
        self.raised: deque[dict] = deque(maxlen=1000)
        self.app_id = settings.kafka_group("fraud")  # faust's group id, and its changelog topics' prefix
        self.activity_name = f"{self.app_id}-institution-activity"
        self.late = Counter("gongji_fraud_late_events", "Events read after their window was judged, or more than "
                            "the allowed lateness behind their partition", ["side"], registry=self.metrics.registry)
        self.withdrawals = Counter("gongji_fraud_withdrawals", "Signals withdrawn, by rule", ["rule"],
                                   registry=self.metrics.registry)
        # Event time: the person side's watermark per `settlements` partition (sent every second when
        # it moved); the institution side's wall-clock time it last heard from each (ledger, source).
        self.marks: dict[int, datetime] = {}
        self.marks_sent: dict[int, datetime] = {}
        self.heard: dict[tuple[str, str], float] = {}
        self.started = time.monotonic()
        self.institution_lock = asyncio.Lock()

    def _build(self, datadir: Path) -> faust.App:
        settings, topics = self.settings, self.settings.topics
        app = faust.App(
            self.app_id,
            datadir=datadir,
            broker=[f"kafka://{server}" for server in settings.kafka_bootstrap_servers.split(",")],
            broker_credentials=kafka.faust_credentials(settings),
            store="memory://",
            autodiscover=False,
            web_enabled=False,
            topic_partitions=settings.partitions,
            topic_replication_factor=settings.replication_factor,
            processing_guarantee="at_least_once",
            producer_acks=-1,
            consumer_auto_offset_reset="earliest",
            broker_session_timeout=settings.kafka_session_timeout_ms / 1000,
            broker_heartbeat_interval=settings.kafka_heartbeat_interval_ms / 1000,
            broker_rebalance_timeout=settings.kafka_rebalance_timeout_ms / 1000,
            table_cleanup_interval=3600.0,
            broker_commit_every=10_000,  # and every second
            broker_commit_interval=1.0,
            logging_config=None,
            Table=PinnedTable,
        )
        self.buckets = TableBuckets(app, settings.partitions)
        inputs = app.topic(topics.settlements, topics.claims, key_type=bytes, value_type=bytes,
                           key_serializer="raw", value_serializer="raw")
        self.activity_topic = app.topic(self.activity_name, key_type=bytes,
                                        key_serializer="raw", value_serializer="json",
                                        partitions=settings.partitions)
        self.signal_topic = app.topic(topics.fraud_signals, key_serializer="raw", value_serializer="raw")
        self.dead_topic = app.topic(topics.dead_letters, key_serializer="raw", value_serializer="raw")

        @app.agent(inputs, name="fraud-persons")
        async def persons(stream):
            async for events in stream.take_events(self.config.batch_events, within=self.config.batch_seconds):
                await self._guarded(events, self._person_batch)

        @app.agent(self.activity_topic, name="fraud-institutions")
        async def institutions(stream):
            async for events in stream.take_events(self.config.batch_events, within=self.config.batch_seconds):
                await self._guarded(events, self._institution_batch)

        @app.timer(1.0)
        async def watch():
            self.metrics.polled()  # the agents' loop is alive while the app runs its timers
            await self._observe_lag(app)
            try:
                await self._send_watermarks()
                await self._close_days()
            except Exception as error:  # an outage: nothing saved, tried again in a second
                log.warning("fraud: watermarks not sent or days not closed: %s", poison.describe(error))

        return app

    # ------------------------------------------------------------------ agents
    async def _guarded(self, events, handle) -> None:
        """`handle(events)` under the poison-message policy, until done: an outage is waited out
        with backoff (the events are not acked meanwhile), a failing event is dead-lettered."""
        loop = handle.__name__
        while True:
            self.metrics.batch_started(loop)
            try:
                await self.policy.handle(list(events), handle)
                self.metrics.batch_done(loop)
                self.outage.reset()
                self.said.done()
                return
            except poison.Outage as error:
                self.metrics.batch_failed(loop)
                self.metrics.retried.inc()
                delay = self.outage.next()
                await self.said.failed(f"batch of {len(events)} not done ({error})", delay)
                await asyncio.sleep(delay)

    async def _dead_event(self, event, reason: str) -> None:
        await (await self._dead_letter(event.message, reason))

    async def _probe(self) -> None:
        await kafka.kafka_answers(self.prober)

    async def _person_batch(self, events) -> None:
        """A batch of person events through the rules in order, on buckets staged for the whole
        batch; then its signals, passed-on activity and dead letters sent and acknowledged; only
        then the buckets saved, each key once, to the partition of the event that last changed it."""
        steps, dead = [], []
        for event in events:
            message = event.message
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
        # Dead letters last: a batch failing in what comes before (and split by the policy) sends
        # them once, from the part that goes through.
        sends = await self._forward(outcome.forward)
        sends += [await self._send_signal(signal) for signal in outcome.signals]
        sends += [await self._dead_letter(message, reason) for message, reason in dead]
        await asyncio.gather(*sends)  # acknowledged before the buckets that raised them are saved
        staged.flush()
        await self._drain_changelog()
        self.marks.update(marks)  # the activity up to these times is on the activity topic
        self.metrics.consumed.inc(len(events))

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
                log.info("fraud: late event %s on %s[%s]: %s behind its partition", found.claim_id, message.topic,
                         message.partition, mark - found.setl_time)
            marks[message.partition] = found.setl_time if mark is None else max(mark, found.setl_time)
        return {partition: mark for partition, mark in marks.items() if self.marks.get(partition) != mark}

    async def _send_watermarks(self) -> None:
        """The watermarks that moved, to every partition of the activity topic (after the activity
        they cover, which was acknowledged before they were noted)."""
        moved = {str(p): t.isoformat() for p, t in self.marks.items() if self.marks_sent.get(p) != t}
        if not moved:
            return
        sent = dict(self.marks)
        await asyncio.gather(*[await self.activity_topic.send(key=b"watermark", value={"watermarks": moved},
                                                              partition=partition)
                               for partition in range(self.settings.partitions)])
        self.marks_sent.update(sent)

    async def _drain_changelog(self) -> None:
        """Hand the batch's changelog records (queued by the table writes in faust's producer buffer)
        to the producer now, all at once. Left to faust, the buffer is sent one record at a time,
        and each incoming message waits for it to ebb one record (and one wait_for) at a time.
        Faust still flushes the producer before it commits offsets."""
        buffer = self.app.producer.buffer
        pending = buffer.pending
        while not pending.empty():
            await buffer._send_pending(pending.get_nowait())
        buffer.message_sent.set()

    def _decode(self, message):
        """The domain event a message carries (None: nothing for the rules); raises on bad input."""
        kind = header(message.headers, TYPE_HEADER)
        topics = self.settings.topics
        if message.topic == topics.claims:
            name, record = self.catalog.decode(message.value)
            if name != INPUT_RECORDS["claim"]:
                return None  # reversals (2208) reach the rules as their results on settlements
            return domain.claim_from_wire(record, self.config)
        if kind in RESULT_KINDS:
            name, record = self.catalog.decode(message.value)
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
        return [await self.activity_topic.send(key=code.encode(), value={"activities": batch})
                for code, batch in by_code.items()]

    async def _institution_batch(self, events) -> None:
        async with self.institution_lock:
            staged, signals, ledgers = BatchStaged(self.buckets), [], set()
            for event in events:
                staged.partition = event.message.partition
                ledger = str(event.message.partition)  # the days waiting, per partition of this input
                ledgers.add(ledger)
                value = event.value
                if isinstance(value, dict) and "watermarks" in value:
                    self._note_watermarks(staged, ledger, value["watermarks"])
                    continue
                try:
                    activities = [InstitutionActivity.from_json(item) for item in
                                  (value["activities"] if isinstance(value, dict) and "activities" in value
                                   else [value])]
                except (KeyError, ValueError, TypeError) as error:
                    log.error("fraud: unreadable institution activity skipped: %s", error)
                    continue
                for activity in activities:
                    if spike.is_late(self.config, staged.get("clock", ledger, NO_WINDOW), activity):
                        self.late.labels("institution").inc()
                        log.info("fraud: late activity %s at %s: its day %s was judged", activity.claim_id,
                                 activity.fixmedins_code, activity.setl_time.date())
                    signals += rules.on_activity(self.config, staged, activity, ledger)
            for ledger in sorted(ledgers):
                staged.partition = int(ledger)
                signals += self._close(staged, ledger)
            await asyncio.gather(*[await self._send_signal(signal) for signal in signals])
            staged.flush()
            await self._drain_changelog()

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
        async with self.institution_lock:
            held = {tp.partition for tp in self.app.consumer.assignment() if tp.topic == self.activity_name}
            staged, signals = BatchStaged(self.buckets), []
            for ledger in sorted({ledger for ledger, _source in self.heard if int(ledger) in held}):
                staged.partition = int(ledger)
                signals += self._close(staged, ledger)
            if not staged.pending:
                return
            await asyncio.gather(*[await self._send_signal(signal) for signal in signals])
            staged.flush()
            await self._drain_changelog()

    async def _send_signal(self, signal: Signal):
        record = signal.to_wire(datetime.now(timezone.utc).isoformat())
        self.raised.append(record)
        if signal.status == WITHDRAWN:
            self.withdrawals.labels(signal.rule_id).inc()
        else:
            self.metrics.outputs.labels(signal.rule_id).inc()
        # Rule and id only: the subject (a psn_no for a person) is personal, and is on the topic.
        log.info("fraud: %s %s %s", signal.rule_id, signal.signal_id, signal.status)
        return await self.signal_topic.send(
            key=signal.subject_id.encode(), value=self.catalog.encode("FraudSignal", record),
            headers=headers(FRAUD_SIGNAL, signal.signal_id))

    async def _dead_letter(self, message, reason: str):
        self.metrics.dead_letters.inc()
        log.warning("fraud: dead letter from %s[%s]@%s: %s", message.topic, message.partition, message.offset, reason)
        return await self.dead_topic.send(key=message.key,
                                          value=kafka.dead_letter(self.catalog, message, reason, SERVICE),
                                          headers=kafka.dead_letter_headers(SERVICE))

    async def _observe_lag(self, app: faust.App) -> None:
        """Per assigned partition: its end less the offset faust last committed (what the agents
        handled and acked, not what was fetched), so that /healthz sees input left waiting."""
        consumer = app.consumer
        try:  # _committed_offset: None where the group never committed
            kafka.record_lag(self.metrics, consumer, consumer._committed_offset.get)
        except Exception:  # not assigned yet, or a rebalance under way
            pass

    # ------------------------------------------------------------------ lifecycle
    async def run(self, stop: asyncio.Event) -> None:
        await ensure_service_topics(self.settings, [*service_topics(self.settings.topics, "fraud"), self.activity_name])
        with data_dir(self.settings.fraud_data_dir, self.app_id) as datadir:
            await self._run(stop, datadir)

    async def _run(self, stop: asyncio.Event, datadir: Path) -> None:
        server = serve(self.metrics, self.settings.metrics_host, self.settings.metrics_port,
                       self.settings.stall_seconds, self.settings.metrics_token_value()) \
            if self.settings.metrics_port else None
        app = self.app = self._build(datadir)
        app.finalize()
        self.prober = kafka.producer(self.settings)  # asks the brokers for metadata when a batch fails
        self.policy = kafka.policy(self.settings, SERVICE, self._probe, self._dead_event)
        self.policy.describe_item = lambda event: kafka.where(event.message)
        self.outage = poison.Backoff(self.settings.retry_initial_seconds, self.settings.retry_max_seconds)
        self.said = reachable.OutageLog(SERVICE, reachable.needed(self.settings, SERVICE),
                                        self.settings.retry_max_seconds, self.settings.probe_timeout_seconds)
        try:
            await self.prober.start()
            await app.start()
            log.info("fraud: app %s on %s", self.app_id, self.settings.kafka_bootstrap_servers)
            await stop.wait()
        finally:
            await app.stop()
            await self.prober.stop()
            if server is not None:
                server.shutdown()


@contextmanager
def data_dir(configured: Path | None, app_id: str) -> Iterator[Path]:
    """Faust's data directory for `app_id`, `<app id>-data` as faust names it, but under
    `configured` (GONGJI_FRAUD_DATA_DIR, made if missing), or else under a temporary directory
    removed on leaving; never the working directory. The tables are in memory and rebuilt from
    their changelog topics on start, so nothing in it outlives the process."""
    if configured is not None:
        configured.mkdir(parents=True, exist_ok=True)
        yield configured / f"{app_id}-data"
        return
    with tempfile.TemporaryDirectory(prefix="gongji-fraud-") as scratch:
        yield Path(scratch) / f"{app_id}-data"
