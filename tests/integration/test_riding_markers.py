"""A batch's markers riding on the settlement store's round trips (gongji.settlement.seen.Riding), on
one Redis node: read with the batch's first read, sealed with its last commits. What a batch costs
in round trips, a Redis behind the batch refused before any write of state, and the order the ride
allows: a marker that moved before the batch's writes were all kept is harmless, since the batch
was published by nobody and comes again."""

from __future__ import annotations

from collections import Counter
from types import SimpleNamespace

import pytest
from aiokafka import TopicPartition

from gongji.common import redis as common_redis
from gongji.common.observe import Metrics
from gongji.common.redis import Durability, connect
from gongji.local.synthetic import Traffic
from gongji.settlement.codec import from_output, json_ready, to_event
from gongji.settlement.policy import load_policy_book
from gongji.settlement.redis_store import RedisStore, SeenMarkers
from gongji.settlement.seen import Gate, Refused
from gongji.settlement.settler import Settler
from tests.integration.support import service_credentials
from tests.integration.test_settlement_durability import FakeConsumer

BOOK = load_policy_book()
CLAIMS = TopicPartition("claims", 0)


@pytest.fixture
async def client(stack):
    client = connect(stack.redis_url, **service_credentials(stack, "settlement"))
    yield client
    await client.aclose()


def batch(first: int, size: int) -> list:
    return [SimpleNamespace(topic="claims", partition=0, offset=offset) for offset in range(first, first + size)]


def events(family: float = 0.0, claims: int = 40, resends: float = 0.02):
    traffic = Traffic(persons=20, seed=31, family=family)
    setup = [to_event(kind, data) for kind, data in traffic.registry() + traffic.openings()]
    stream = [to_event(kind, data) for kind, data in traffic.stream(claims, reversals=0.0, resends=resends)]
    return setup, [event for event in stream if type(event).__name__ == "Claim"]


def wire(outputs) -> list:
    return [json_ready(from_output(output)[1]) for outcome in outputs for output in outcome]


async def gate_for(client, prefix: str, committed: dict) -> tuple[Gate, FakeConsumer]:
    gate = Gate(SeenMarkers(client, prefix, "group", Durability("aof")), Metrics("settlement"))
    consumer = FakeConsumer(committed)
    await gate.bind(consumer).on_partitions_assigned(set(committed))
    return gate, consumer


class NotAhead(RedisStore):
    """Makes every pass's read when the pass comes, as 7d1dd05 did."""

    def reading(self, *args, **kwargs) -> None:
        return None


class Trips:
    """Counts the round trips made on one Redis node (every lean round trip goes through run_lean)."""

    def __init__(self, monkeypatch):
        self.count = 0
        real = common_redis.run_lean

        async def counted(*args, **kwargs):
            self.count += 1
            return await real(*args, **kwargs)
        monkeypatch.setattr(common_redis, "run_lean", counted)


async def test_a_batch_of_claims_costs_two_round_trips_with_its_markers_riding(client, uniq, monkeypatch):
    """Apart (Gate.admit, read, commit, Gate.seal): four round trips (and the templates the batch's
    records name, written once); riding: two, the same results, the marker moved to the batch's end."""
    setup, claims = events(resends=0.0)
    apart_settler, riding_settler = Settler(RedisStore(client, uniq + "a"), BOOK), Settler(RedisStore(client, uniq + "b"), BOOK)
    await apart_settler.handle(setup)
    await riding_settler.handle(setup)
    apart, _ = await gate_for(client, uniq + "a", {CLAIMS: 0})
    riding, _ = await gate_for(client, uniq + "b", {CLAIMS: 0})
    trips = Trips(monkeypatch)
    for start in range(0, 30, 10):  # the second and third find the marker of the one before
        messages = batch(start, 10)
        trips.count = 0
        assert await apart.admit(messages) == messages
        expected = await apart_settler.handle_each(claims[start:start + 10])
        await apart.seal(messages)
        apart_trips, trips.count = trips.count, 0
        guard = await riding.riding(messages)
        got = await riding_settler.handle_each(claims[start:start + 10], guard)
        assert guard.admission is None and guard.sealed
        # the same reads and writes otherwise (the templates a record names, written once): two round
        # trips fewer; the first batch also opens the markers' own connection apart
        if start:
            assert trips.count == apart_trips - 2, (apart_trips, trips.count)
        else:
            assert trips.count <= apart_trips - 2, (apart_trips, trips.count)
        assert wire(got) == wire(expected)
    assert (await riding.markers.read(["claims:0"]))["claims:0"] == 30


async def test_a_redis_behind_the_batch_is_refused_before_any_state_is_written(client, uniq):
    """Committed up to 5 and no marker (Redis lost it): the first read finds it, nothing is settled,
    the partition is paused and sought back to the batch's first offset."""
    setup, claims = events()
    store = RedisStore(client, uniq)
    settler = Settler(store, BOOK)
    await settler.handle(setup)
    assert await SeenMarkers(client, uniq, "group").seal({"claims:0": (-2, 5)}) == []
    gate, consumer = await gate_for(client, uniq, {CLAIMS: 5})
    assert not gate.refusing
    await gate.markers.clear()  # lost after the assignment's look: the batch's own read must find it
    guard = await gate.riding(batch(5, 10))
    psn_nos = {claim.psn_no for claim in claims[:10]}
    before = (await store.read(psn_nos, set(), set())).states
    with pytest.raises(Refused):
        await settler.handle_each(claims[:10], guard)
    assert consumer.paused == {CLAIMS} and consumer.sought == {CLAIMS: 5} and gate.needed == {CLAIMS: 5}
    assert (await store.read(psn_nos, set(), set())).states == before
    assert (await gate.markers.read(["claims:0"]))["claims:0"] is None


async def test_a_batch_whose_last_step_is_a_registry_entry_is_sealed_apart(client, uniq):
    """The seal rides only on commits: a batch ending with a registry entry leaves it to the service."""
    setup, claims = events()
    settler = Settler(RedisStore(client, uniq), BOOK)
    await settler.handle(setup)
    gate, _ = await gate_for(client, uniq, {CLAIMS: 0})
    person = setup[0]
    guard = await gate.riding(batch(0, 4))
    await settler.handle_each([*claims[:3], person], guard)
    assert guard.admission is None and not guard.sealed
    assert (await gate.markers.read(["claims:0"]))["claims:0"] is None  # not moved: the service seals


async def test_family_claims_seal_on_the_last_pass_and_match_the_batch_settled_apart(client, uniq, monkeypatch):
    """Family claims are deferred by the first pass, which reads what the next will need after its
    commits, in their round trip; the seal rides on the last pass's commits."""
    setup, claims = events(family=0.6, claims=80, resends=0.0)
    apart_settler, riding_settler = Settler(NotAhead(client, uniq + "a"), BOOK), Settler(RedisStore(client, uniq + "b"), BOOK)
    await apart_settler.handle(setup)
    await riding_settler.handle(setup)
    gate, _ = await gate_for(client, uniq + "b", {CLAIMS: 0})
    guard = await gate.riding(batch(0, 40))
    reads = Counter()
    real = RedisStore._run

    async def counted(store, build, along=None):
        reads[store.prefix] += getattr(build, "__name__", "") == "queue"  # a read's own round trip
        return await real(store, build, along)
    monkeypatch.setattr(RedisStore, "_run", counted)
    expected = await apart_settler.handle_each(claims[:40])
    assert wire(await riding_settler.handle_each(claims[:40], guard)) == wire(expected)
    assert guard.sealed and (await gate.markers.read(["claims:0"]))["claims:0"] == 40
    # the second pass's read rode on the first's commits (only the first pass defers)
    assert reads[uniq + "b"] == reads[uniq + "a"] - 1 > 0, reads


async def test_a_marker_ahead_of_its_batchs_writes_lets_the_batch_settle_again_as_it_would(client, uniq):
    """The ride lets a batch's marker move before all of its writes are kept (a later pass after a
    stale commit; a round trip run again after NOSCRIPT; Redis losing the writes that followed it).
    Such a batch was published by nobody, so it comes again: admitted, it settles to the results an
    uninterrupted run gives, and its marker stays."""
    setup, claims = events(family=0.6, claims=80)
    reference, settler = Settler(RedisStore(client, uniq + "a"), BOOK), Settler(RedisStore(client, uniq + "b"), BOOK)
    await reference.handle(setup)
    await settler.handle(setup)
    expected = await reference.handle_each(claims[:40])
    gate, _ = await gate_for(client, uniq + "b", {CLAIMS: 0})
    await settler.handle_each(claims[:15])  # the writes Redis kept
    assert await gate.markers.seal({"claims:0": (-1, 40)}) == []  # and the marker, moved early
    gate.fresh = set()
    guard = await gate.riding(batch(0, 40))
    assert wire(await settler.handle_each(claims[:40], guard)) == wire(expected)
    assert guard.sealed and (await gate.markers.read(["claims:0"]))["claims:0"] == 40
