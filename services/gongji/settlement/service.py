"""The settlement service: consumes claims, credits and the registries; publishes results.

A plain aiokafka loop (measured here about six times faster than a faust agent handling events
one by one): poll a batch, decode, settle it with the Settler against Redis, publish every result,
and only then commit the offsets. A crash anywhere before the commit means the batch comes again,
and the Redis store turns the second pass into the identical results with no second effect.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from aiokafka import AIOKafkaProducer
from aiokafka.structs import ConsumerRecord

from gongji.common import kafka, poison, signing
from gongji.common.avro import DecodeError, SchemaCatalog, UnknownSchemaError
from gongji.common.observe import Metrics
from gongji.common.redis import Durability
from gongji.common.schemas import SchemaDirectory
from gongji.settings import Settings
from gongji.common.topic_admin import ensure_service_topics
from gongji.contract.topics import service_topics, settlement_inputs
from gongji.contract.wire import ACCUMULATORS, ACCUMULATORS_RECORD, INQUIRY_RECORDS, OUTPUT_RECORDS, RECORD_INPUTS, \
    TYPE_HEADER, header
from gongji.contract.wire import headers as wire_headers
from gongji.settlement.codec import ResultEncoder, to_event
from gongji.settlement.domain import Output, Rejection
from gongji.settlement.settler import Settler, StoreContention
from gongji.settlement.policy import PolicyBook
from gongji.settlement.redis_store import RedisStore, SeenMarkers
from gongji.settlement import regions
from gongji.settlement.business import BusinessMetrics
from gongji.settlement.seen import Gate, Refused, Riding, StateLost

log = logging.getLogger("gongji.settlement")
SERVICE = "settlement"
REPORT_EVERY = 30.0  # seconds between progress lines in the log


@dataclass
class Stats:
    """Running totals, for logs, the demo view and the benchmark."""

    batches: int = 0
    consumed: int = 0
    outputs: Counter = field(default_factory=Counter)  # settlement, reversal, rejection, credit
    rejections: Counter = field(default_factory=Counter)  # by err_code
    dead_letters: int = 0

    def summary(self, assignment, retried_batches: int) -> str:
        partitions = ",".join(f"{tp.topic}[{tp.partition}]" for tp in sorted(assignment))
        return (f"consumed={self.consumed} batches={self.batches} outputs={dict(self.outputs)} "
                f"rejections={dict(self.rejections)} dead_letters={self.dead_letters} "
                f"retried_batches={retried_batches} partitions={partitions}")

    def add(self, kinds: Counter, codes: Counter) -> None:
        """Add a batch's tallies of what it published: outputs by kind, rejections by err_code."""
        self.outputs.update(kinds)
        self.rejections.update(codes)


def records(everything: list[tuple[Output, bool]], encode: Callable[[Output], tuple[str, bytes, str]]) \
        -> tuple[list, list, Counter, Counter]:
    """A batch's outputs as (key, value, headers) records: the results for `settlements`, the replies
    for `inquiry-results` (those asked); and the results' tallies, by kind and rejections by err_code."""
    results, replies = [], []
    kinds: Counter = Counter()
    codes: Counter = Counter()
    for output, asked in everything:
        kind, value, ident = encode(output)
        # Headers let a consumer route or count without decoding the record.
        record = (output.key.encode() or None, value, wire_headers(kind, ident))
        if asked:
            replies.append(record)
            continue
        results.append(record)
        kinds[kind] += 1
        if kind == "rejection":
            codes[output.value.err_code] += 1
    return results, replies, kinds, codes


def _named(rejection: Rejection) -> bool:
    """Whether a refused input's rejection names it: a claim or reversal by claim_id, a credit by
    credit_id, a person by psn_no. An institution's rejection could not, nor one whose id was the
    problem (a rejection echoes only clean ids)."""
    if rejection.input_type in ("claim", "reversal", *INQUIRY_RECORDS):
        return rejection.claim_id is not None
    if rejection.input_type == "credit":
        return rejection.credit_id is not None
    return rejection.input_type == "person" and rejection.psn_no is not None


class SettlementService:
    def __init__(self, settings: Settings, catalog: SchemaCatalog, book: PolicyBook, redis_client):
        self.settings = settings
        self.catalog = catalog
        self.results = ResultEncoder(catalog, {**OUTPUT_RECORDS, ACCUMULATORS: ACCUMULATORS_RECORD})
        self.settler = Settler(RedisStore(redis_client, settings.key_prefix), book)
        self.bounds = settings.settlement_bounds()
        self.probe = poison.redis_probe(redis_client, settings.key_prefix)
        self.accepted = settlement_inputs(settings.topics, inquiries=True)
        self.asked = {record: kind for kind, record in INQUIRY_RECORDS.items()}  # on `inquiries`
        self.schemas = SchemaDirectory(settings, catalog)
        # Signed input: None without a keys file (nothing verified); KeyFileError stops start-up.
        self.ring = signing.key_ring(settings)
        self.stats = Stats()
        self.metrics = Metrics(SERVICE)
        self.business = BusinessMetrics(self.metrics.registry, book.regions)
        # Results are published only once Redis has made their state durable, and only onto state
        # Redis still holds (gongji.settlement.seen).
        # The gateway's questions change no state: their partitions need no marker.
        self.gate = Gate(SeenMarkers(redis_client, settings.key_prefix, settings.settlement_group,
                                     Durability.from_settings(settings)), self.metrics,
                         unmarked=frozenset({settings.topics.inquiries}))

    async def prepare_topics(self) -> None:
        await ensure_service_topics(self.settings, service_topics(self.settings.topics, SERVICE))

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until `stop` is set; a batch in flight is finished and committed first. Raises
        DurabilityUnavailable at once if Redis cannot give the configured durability."""
        await self.gate.markers.durability.check(self.gate.markers.client)
        await self.settler.store.upgrade()  # what the first Redis layout left, moved once
        await self.prepare_topics()
        next_report = time.monotonic() + REPORT_EVERY

        def report(consumer) -> None:
            nonlocal next_report
            if time.monotonic() >= next_report:
                next_report = time.monotonic() + REPORT_EVERY
                log.info("progress %s", self.stats.summary(consumer.assignment(), self.metrics.retries()))

        # A store that kept finding states changed under it (a rebalance's zombie), or a Redis that
        # lost state the partitions follow, is retried as an outage is; anything else that fails while
        # Redis and Kafka answer follows its message.
        watch = asyncio.create_task(self.gate.watch(stop))
        try:
            await kafka.consume_batches(self.settings, self.settings.settlement_group, list(self.accepted),
                                        self.metrics, self.process, stop, started=self.schemas.publish,
                                        polled=report, probe=self.probe, catalog=self.catalog,
                                        outages=(StoreContention, StateLost), listener=self.gate.bind,
                                        dead_lettered=self.gate.seal)
        finally:
            watch.cancel()
            await asyncio.gather(watch, return_exceptions=True)

    async def _decode_learning(self, value: bytes, unknown: UnknownSchemaError) -> tuple[str, dict, Callable | None]:
        """A producer with a newer schema: look for it on the schemas topic, then try once more."""
        if await self.schemas.learn(unknown.fingerprint):
            return self.catalog.decode_unscaled(value)
        raise unknown

    async def _settle(self, events: list, guard: Riding | None) -> list[list[Output]]:
        """Settle the batch; each event's results apart. An event that raises anything (a bug of
        ours, a value the engine or Redis refuses) fails the batch: gongji.common.poison splits it
        until that event is alone, dead-letters it and settles the rest, in order."""
        return await self.settler.handle_each(events, guard)

    async def _within_regions(self, events: list, signers: list, answers: list[tuple[Output | None, bool]],
                              dead: list, guard: Riding | None) -> list:
        """The events whose signing key may speak for their regions (gongji.settlement.regions); the
        others go to `dead` and leave their place in `answers`. One Redis read of the registry
        entries concerned, only when a key limited to regions signed something in the batch."""
        if not any(signer is not None and signer.regions is not None for signer in signers):
            return [event for _message, event in events]
        psn_nos, codes = regions.needed(event for _message, event in events)
        snapshot = await self.settler.store.read(psn_nos, codes, set(), along=guard and guard.admission)
        verdicts = regions.check([(event, signer and signer.key_id, signer and signer.regions)
                                  for (_message, event), signer in zip(events, signers)],
                                 snapshot.persons, snapshot.institutions)
        slots = [index for index, (answer, _) in enumerate(answers) if answer is None]
        kept, refused = [], set()
        for (message, event), reason, slot in zip(events, verdicts, slots):
            if reason is None:
                kept.append(event)
            else:
                dead.append((message, reason))
                refused.add(slot)
        answers[:] = [answer for index, answer in enumerate(answers) if index not in refused]
        return kept

    async def process(self, messages: list[ConsumerRecord], producer: AIOKafkaProducer) -> list[Output]:
        """Settle one batch and publish its results; returns them. Raises when anything fails (an
        outage or a poison message: consume_batches tells which)."""
        # Durable before visible, onto state Redis still holds: on one Redis node the batch's markers
        # ride on the Settler's round trips (Riding), else they are read and sealed apart.
        guard = await self.gate.riding(messages)
        if guard is None:
            messages = await self.gate.admit(messages)
        try:
            return await self._process(messages, producer, guard)
        except Refused:
            return []
        except Exception:
            if guard is not None:  # as Gate.seal does: primaries found, and the marker's script loaded, again
                await self.gate.markers.forget_nodes()
            raise

    async def _process(self, messages: list[ConsumerRecord], producer: AIOKafkaProducer,
                       guard: Riding | None) -> list[Output]:
        # Each message is answered once, in its place: a result, a rejection the sender can match
        # to what they sent (by claim, credit or person id), or else a dead letter. A question from
        # the gateway (topic inquiries) is answered on inquiry-results, never on settlements.
        answers: list[tuple[Output | None, bool]] = []  # (None: the Settler's results go there, asked)
        events, dead = [], []
        # Nothing orders a registry change against a claim on another topic; the registries go
        # first, so a person and their first claim polled together settle (each topic keeps its order).
        registries = (self.settings.topics.persons, self.settings.topics.institutions, self.settings.topics.catalogue)
        signers: list[signing.Key | None] = []  # per event: the key that signed it
        if any(message.topic in registries for message in messages):
            messages_in_order = sorted(messages, key=lambda message: message.topic not in registries)
        else:  # claims and credits only, nearly every batch
            messages_in_order = messages
        for message in messages_in_order:
            signer = None
            if self.ring is not None:
                verdict = self.ring.verify(message.topic, message.key, message.headers, message.value)
                if verdict.refused:
                    dead.append((message, verdict.refused))
                    continue
                signer = verdict.key
            try:
                try:  # no await on the common path: a coroutine a message cost as much as a field
                    # Decimals stay the wire's unscaled integers: admission reads them as they are.
                    name, data, decimals = self.catalog.decode_unscaled(message.value)
                except UnknownSchemaError as unknown:
                    name, data, decimals = await self._decode_learning(message.value, unknown)
            except DecodeError as error:
                dead.append((message, f"undecodable: {error}"))
                continue
            if name not in self.accepted.get(message.topic, ()):
                dead.append((message, f"a {name} record does not belong on topic {message.topic}"))
                continue
            asked = message.topic == self.settings.topics.inquiries
            kind = self.asked[name] if asked else RECORD_INPUTS[name]
            if signer is not None and header(message.headers, TYPE_HEADER) != kind.encode():
                dead.append((message, f"signed as type {header(message.headers, TYPE_HEADER)!r} but a {name} record"))
                continue
            event = to_event(kind, data, self.bounds, None, decimals)  # None: now
            if isinstance(event, Rejection):
                if _named(event):
                    answers.append((Output(event.psn_no or "", event), asked))
                else:  # the sender could not tell which of theirs it answers: the bytes go back
                    dead.append((message, event.err_msg))
            else:
                events.append((message, event))
                signers.append(signer)
                answers.append((None, asked))
        events = await self._within_regions(events, signers, answers, dead, guard)
        settled = iter(await self._settle(events, guard))
        everything = [(output, asked) for answer, asked in answers
                      for output in ((answer,) if answer is not None else next(settled))]
        outputs = [output for output, asked in everything if not asked]
        if guard is None or not guard.sealed:
            await self.settler.admit(guard)  # a batch that read nothing
            await self.gate.seal(messages)  # durable before visible

        topics = self.settings.topics
        results, replies, kinds, codes = records(everything, self.results.encode)
        sends = await kafka.publish(producer, topics.settlements, results)
        if replies:
            sends += await kafka.publish(producer, topics.inquiry_results, replies)
        letters = [kafka.dead_letter_record(self.catalog, message, reason, SERVICE) for message, reason in dead]
        if letters:
            sends += await kafka.publish(producer, topics.dead_letters, letters)
        await asyncio.gather(*sends)

        self.stats.batches += 1
        self.stats.consumed += len(messages)
        self.stats.dead_letters += len(dead)
        self.stats.outputs["inquiry"] += len(replies)
        self.metrics.consumed.inc(len(messages))
        self.metrics.dead_letters.inc(len(dead))
        self.stats.add(kinds, codes)
        for kind, number in kinds.items():  # one label lookup per kind, not per output
            self.metrics.outputs.labels(kind).inc(number)
        for code, number in codes.items():
            self.metrics.rejected.labels(code).inc(number)
        self.business.count(outputs)
        return outputs
