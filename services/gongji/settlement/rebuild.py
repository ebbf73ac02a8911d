"""`gongji settlement rebuild`: restore the settlement state in Redis from Kafka, after Redis lost it.

The inputs are read again from the start up to the settlement group's committed offsets (every
effect before them was published before it was committed), and nothing is published again. What
took effect is not recomputed from the inputs' order, which no one knows across topics: the
`settlements` topic says it. Each claim, reversal or credit whose results there include a
settlement (or reversal, or credit result) is settled again, in the order those results were
published, with the registry entries applied in the order they were produced; an event refused
there (UNKNOWN_PERSON while its person was not registered yet, say) only keeps its id. Every result
the rebuild computes is compared with the first one published for that id, and any difference is
reported; with a difference the markers are not written (unless accepted), so the service keeps
refusing until an operator has looked.

Order across persons is known only to the millisecond of publication (and, within one, by input
partition and offset, as the service settles a poll): family mutual aid settled by two workers at
once on one holder's account can come out in another order, and is then reported as a difference.

What this needs of Kafka (docs/DURABILITY.md, "Durability and rebuild"): the registries compacted and kept,
and claims, credits and settlements retained for as long as the state they made matters.
"""

from __future__ import annotations

import heapq
import logging
import time
from dataclasses import dataclass, field

from aiokafka.structs import TopicPartition

from gongji.common import kafka, signing
from gongji.common.avro import DecodeError, SchemaCatalog
from gongji.settings import Settings
from gongji.common.redis import Durability
from gongji.contract.topics import settlement_inputs
from gongji.contract.wire import OUTPUT_RECORDS, RECORD_INPUTS, TYPE_HEADER, header
from gongji.settlement import regions
from gongji.settlement.catalogue import CatalogueItem
from gongji.settlement.codec import from_output, json_ready, to_event
from gongji.settlement.domain import Rejection, SettlementError
from gongji.settlement.events import Claim, Credit, Institution, Person, Reversal
from gongji.settlement.idempotency import fingerprint
from gongji.settlement.settler import Settler
from gongji.settlement.policy import PolicyBook
from gongji.settlement.redis_store import RedisStore, SeenMarkers
from gongji.settlement.seen import field as marker_field
from gongji.settlement.store import claim_key, credit_key

log = logging.getLogger("gongji.settlement")
EFFECTS = {"Settlement", "ReversalResult", "CreditResult"}


class RebuildError(SettlementError):
    """The rebuild cannot start (no committed offsets, Redis not behind without --force)."""


@dataclass
class Report:
    inputs: int = 0  # input messages read up to the committed offsets
    registry: int = 0  # person, institution and catalogue entries applied
    settled: int = 0  # events that took effect, settled again
    kept_ids: int = 0  # events refused when published: only their id is kept
    unanswered: int = 0  # inputs with no result published (dead letters): nothing to restore
    results: int = 0  # records read from the settlements topic
    differences: list[tuple[str, list[str]]] = field(default_factory=list)  # (event id, fields that differ)
    truncated: list[str] = field(default_factory=list)  # partitions whose first records retention deleted
    seconds: float = 0.0
    markers_written: bool = False

    def lines(self) -> list[str]:
        out = [f"read {self.inputs} input message(s) up to the committed offsets and {self.results} published "
               f"result(s)",
               f"restored {self.registry} registry entries, {self.settled} event(s) that took effect, the ids of "
               f"{self.kept_ids} refused one(s); {self.unanswered} input(s) had no result (dead letters)",
               f"compared {self.settled} result(s) with the published ones: {len(self.differences)} differ"]
        out += [f"  retention deleted the start of {where}: what it held cannot be restored"
                for where in self.truncated]
        out += [f"  differs: {ident}: {', '.join(names)}" for ident, names in self.differences[:20]]
        if len(self.differences) > 20:
            out.append(f"  … and {len(self.differences) - 20} more")
        out.append(("markers written: the settlement service resumes" if self.markers_written else
                    "markers NOT written: the service keeps refusing (rerun with --accept-differences to resume)")
                   + f" ({self.seconds:.1f} s)")
        return out


async def _read_to(reader, targets: dict[TopicPartition, int], report: Report, kept=frozenset()):
    """Yield every message of `targets`' partitions from their start up to each target offset;
    a partition (not among the compacted `kept` topics) whose start is gone is noted in `report`."""
    targets = {tp: end for tp, end in targets.items() if end > 0}
    if not targets:
        return
    reader.assign(list(targets))
    await reader.seek_to_beginning(*targets)
    left, fresh = set(targets), set(targets)
    while left:
        for tp, messages in (await reader.getmany(*left, timeout_ms=500, max_records=5000)).items():
            if tp in fresh and messages:
                fresh.discard(tp)
                if messages[0].offset > 0 and tp.topic not in kept:
                    report.truncated.append(f"{tp.topic}[{tp.partition}] starts at {messages[0].offset}")
            for message in messages:
                if message.offset < targets[tp]:
                    yield message
        for tp in list(left):
            if await reader.position(tp) >= targets[tp]:
                left.discard(tp)


async def _offsets(settings: Settings, reader, topics: list[str]) -> tuple[dict, dict]:
    """(the group's committed offset per input partition, the end of `settlements` per partition)."""
    inputs = [TopicPartition(topic, p) for topic in topics for p in sorted(reader.partitions_for_topic(topic) or ())]
    done = await kafka.committed_offsets(settings, settings.settlement_group, inputs)
    async with kafka.PartitionEnds(settings) as outputs:
        ends = await outputs.ends(await outputs.partitions([settings.topics.settlements]))
    return done, ends


def _ident(data: dict, name: str) -> tuple[str, str] | None:
    """A result's or an input's event key: ("k", credit id) or ("c", claim id)."""
    if name in ("Credit", "CreditResult") or (name == "Rejection" and data.get("input_type") == "credit"):
        return ("k", data["credit_id"]) if data.get("credit_id") else None
    return ("c", data["claim_id"]) if data.get("claim_id") else None


def _differences(ours: dict, theirs: dict) -> list[str]:
    ours, theirs = json_ready(ours), json_ready(theirs)
    return sorted(name for name in set(ours) | set(theirs) if ours.get(name) != theirs.get(name))


def _matches(data: dict, result: dict) -> bool:
    """Whether an input's own fields agree with a result's (to find which of several inputs sent
    under one id, with different content, took effect)."""
    data, result = json_ready(data), json_ready(result)
    return all(data[name] == result[name] for name in set(data) & set(result)
               if isinstance(data[name], (str, int)) and name not in ("balc",))


async def rebuild(settings: Settings, catalog: SchemaCatalog, book: PolicyBook, client, *, force: bool = False,
                  accept_differences: bool = False, batch: int = 500) -> Report:
    started = time.monotonic()
    report = Report()
    topics = settings.topics
    accepted = settlement_inputs(topics)  # as the service takes them
    inputs = list(accepted)
    markers = SeenMarkers(client, settings.key_prefix, settings.settlement_group, Durability.from_settings(settings))
    ring = signing.key_ring(settings)  # input the service dead-lettered for its signature has no effect here either
    await markers.durability.check(client)
    reader = kafka.consumer(settings, None)
    await reader.start()
    try:
        await reader._client.force_metadata_update()
        committed, ends = await _offsets(settings, reader, inputs)
        if not committed:
            raise RebuildError(f"the group {settings.settlement_group} has committed nothing: there is no state to "
                               "rebuild")
        marks = await markers.read([marker_field(tp) for tp in committed])
        behind = [tp for tp, done in committed.items()
                  if marks[marker_field(tp)] is None or marks[marker_field(tp)] < done]
        if not behind and not force:
            raise RebuildError("Redis holds the state up to every committed offset; nothing to rebuild "
                               "(--force rebuilds anyway)")

        # What took effect, and in which order: the settlements topic.
        first_result: dict[tuple[str, str], tuple[str, dict]] = {}
        effect_at: dict[tuple[str, str], int] = {}  # id → when its first effect was published (ms)
        async for message in _read_to(reader, ends, report):
            report.results += 1
            try:
                name, data = catalog.decode(message.value)
            except DecodeError:
                continue
            ident = _ident(data, name)
            if ident is None:
                continue
            first_result.setdefault(ident, (name, data))
            if name in EFFECTS and ident not in effect_at:
                effect_at[ident] = message.timestamp
                first_result[ident] = (name, data)  # the result that took effect is the authority

        # The inputs up to the committed offsets.
        steps = []  # (ms, rank, topic, partition, offset, sequence, what, event); registry first at one instant
        occurrences: dict[tuple[str, str], list] = {}
        async for message in _read_to(reader, committed, report,
                                      kept={topics.persons, topics.institutions, topics.catalogue}):
            report.inputs += 1
            verdict = ring.verify(message.topic, message.key, message.headers, message.value) if ring else None
            if verdict is not None and verdict.refused:
                report.unanswered += 1
                continue
            try:
                name, data = catalog.decode(message.value)
            except DecodeError:
                report.unanswered += 1
                continue
            event = to_event(RECORD_INPUTS[name], data) if name in accepted[message.topic] else None
            signer = verdict.key if verdict else None
            if signer is not None and header(message.headers, TYPE_HEADER) != RECORD_INPUTS[name].encode():
                event = None
            if event is None or isinstance(event, Rejection):  # dead-lettered when it was read
                report.unanswered += 1
            elif isinstance(event, (Person, Institution, CatalogueItem)):
                steps.append((message.timestamp, 0, message.topic, message.partition, message.offset, len(steps),
                              "registry", (event, signer and signer.key_id, signer and signer.regions)))
            else:
                occurrences.setdefault(_ident(data, name), []).append((message, event, data))
    finally:
        await reader.stop()

    for ident, seen in occurrences.items():
        if ident in effect_at:
            wanted = first_result[ident][1]
            distinct = {fingerprint(event) for _, event, _ in seen}
            taken = next((item for item in seen if len(distinct) == 1 or _matches(item[2], wanted)), seen[0])
            # At one instant, the order the service settled a poll in: by input partition and offset.
            steps.append((effect_at[ident], 1, taken[0].topic, taken[0].partition, taken[0].offset, len(steps),
                          "settle", taken[1]))
        elif ident in first_result:
            message, event, _ = seen[0]
            steps.append((message.timestamp, 1, message.topic, message.partition, message.offset, len(steps),
                          "keep", event))
        else:
            report.unanswered += 1

    store = RedisStore(client, settings.key_prefix)
    await markers.clear()  # first: the service refuses while the state is half built
    await store.wipe()
    settler = Settler(store, book)
    heapq.heapify(steps)
    run: list = []

    async def flush() -> None:
        if not run:
            return
        events = [event for _, event in run]
        if run[0][0] == "registry":
            taken = await _within_regions(store, events)
            report.unanswered += len(events) - len(taken)  # dead-lettered for their key's regions
            events = taken
            await settler.handle(events)
            report.registry += len(events)
        elif run[0][0] == "keep":
            await store.read(set(), set(), set(), {(_key(event), event.psn_no) for event in events})
            report.kept_ids += len(events)
        else:
            outputs = await settler.handle(events)
            by_id = {_ident(wire, OUTPUT_RECORDS[kind]): wire for kind, wire in map(from_output, outputs)}
            for event in events:
                ident = _ident_of(event)
                name, published = first_result[ident]
                ours = by_id.get(ident)
                names = ["(no result)"] if ours is None else _differences(ours, published)
                if names:
                    report.differences.append((ident[1], names))
            report.settled += len(events)
        run.clear()

    while steps:
        *_, what, event = heapq.heappop(steps)
        if run and (run[0][0] != what or len(run) >= batch):
            await flush()
        run.append((what, event))
    await flush()

    if not (report.differences or report.truncated) or accept_differences:
        await markers.seal({marker_field(tp): (-2, offset) for tp, offset in committed.items()})
        report.markers_written = True
    report.seconds = time.monotonic() - started
    return report


async def _within_regions(store: RedisStore, checks: list) -> list:
    """The registry entries whose key may speak for their regions, judged against the registry
    rebuilt so far, as the service judged them against the one it had (gongji.settlement.regions)."""
    events = [event for event, _key_id, _regions in checks]
    if all(key_regions is None for _event, _key_id, key_regions in checks):
        return events
    psn_nos, codes = regions.needed(events)
    snapshot = await store.read(psn_nos, codes, set())
    verdicts = regions.check(checks, snapshot.persons, snapshot.institutions)
    return [event for event, reason in zip(events, verdicts) if reason is None]


def _key(event) -> str:
    return credit_key(event.credit_id) if isinstance(event, Credit) else claim_key(event.claim_id)


def _ident_of(event: Claim | Reversal | Credit) -> tuple[str, str]:
    return ("k", event.credit_id) if isinstance(event, Credit) else ("c", event.claim_id)
