"""What the Redis store wrote before stays good on a live Redis: records in the first form (named
JSON, the fingerprint as hex) and in the first layout (a key per record `{psn}:rec:<key>`, a key
per id `id:<key>`), registry entries unpacked, and records in the packed form before the lean one.
The new code reads them, answers their resends, refuses their ids to another person, reverses them,
with results identical to a store that never held them; a process that never saw a lean record's
templates reads them from Redis; and the window closes years on the new layout, records and their
ids, on one server and on a cluster."""

from __future__ import annotations

import dataclasses

import pytest

from gongji.settlement import lean, packed
from gongji.settlement.codec import from_output, json_ready
from gongji.settlement.idempotency import fingerprint
from gongji.settlement.redis_store import RedisStore, owner_hash
from gongji.settlement.settler import Settler
from gongji.settlement.memory_store import MemoryStore
from tests.integration.support import figures
from tests.integration.test_settler_exactly_once import BOOK, reference, states_of, traffic_events


async def _keys(store: RedisStore, pattern: str) -> list[bytes]:
    client = store.client
    if hasattr(client, "get_primaries"):  # a cluster: every primary's keys
        return [key for node in client.get_primaries()
                async for key in client.scan_iter(match=pattern, count=1000, target_nodes=node)]
    return [key async for key in client.scan_iter(match=pattern, count=1000)]


async def _to_first_layout(store: RedisStore, psn_nos: list[str]) -> int:
    """Move every record and id the new code wrote to the first layout and form, as the code before
    it would have left them (no "first" field in the states, no layout marker). Returns how many records."""
    client, prefix = store.client, store.prefix
    moved = 0
    for psn in psn_nos:
        recs = store._key(psn, "recs")
        for field, value in (await client.hgetall(recs)).items():
            key = field.decode()
            record = packed.load_value(value, psn, key.split(":", 1)[1])
            old = {"fp": record.fingerprint, "data": packed.dump_named(record)}
            if getattr(record, "reversed_by", None):
                old["reversed_by"] = record.reversed_by
            await client.hset(store._key(psn, "rec:" + key), mapping=old)
            moved += 1
        await client.delete(recs)
        await client.hdel(store._key(psn, "state"), "first")
    owners = {owner_hash(psn): psn for psn in psn_nos}
    for bucket in await _keys(store, f"{prefix}:ids:*"):
        for field, owner in (await client.hgetall(bucket)).items():
            await client.set(f"{prefix}:id:{field.decode()}", owners[owner])
        await client.delete(bucket)
    await client.delete(f"{prefix}:layout")
    return moved


@pytest.mark.parametrize("store", ["redis", "redis-cluster"], indirect=True)  # the first form is Redis's
async def test_records_of_the_first_form_and_layout_are_read_resent_and_reversed_as_before(store, monkeypatch):
    assert isinstance(store, RedisStore)
    traffic, setup, stream = traffic_events(family=0.3, seed=33)
    half = len(stream) // 2
    psn_nos = [p["psn_no"] for p in traffic.persons]
    with monkeypatch.context() as old_code:
        old_code.setattr(packed, "dump_person", lambda person: person.model_dump_json().encode())
        settler = Settler(store, BOOK)
        await settler.handle(setup)
        for start in range(0, half, 40):
            await settler.handle(stream[start:start + 40])
    written = await _to_first_layout(store, psn_nos)
    assert written > half // 2
    # The new service's start moves them (ids too), once.
    assert await store.upgrade() > written and await store.upgrade() == 0
    assert not await _keys(store, f"{store.prefix}:id:*") and not await _keys(store, f"{store.prefix}:*:rec:*")
    # The new code on the same Redis: the second half resends and reverses claims of the first.
    settler = Settler(store, BOOK)
    results = {}
    for start in range(half, len(stream), 40):
        for output in await settler.handle(stream[start:start + 40]):
            _, wire = from_output(output)
            results.setdefault(wire.get("claim_id") or wire.get("credit_id"), json_ready(wire))
    expected, ref = await reference(setup + stream)
    later = {event.claim_id for event in stream[half:]}
    assert {key: expected[key] for key in later} == {key: results[key] for key in later}
    old_ids = {event.claim_id for event in stream[:half]}
    assert any(getattr(event, "orig_claim_id", None) in old_ids for event in stream[half:])  # old ones reversed
    assert any(event.claim_id in old_ids for event in stream[half:])  # and resent
    assert figures(await states_of(store, psn_nos)) == figures(await states_of(ref, psn_nos))
    # An id of the first layout is still another person's.
    first = stream[0]
    thief = first.model_copy(update={"psn_no": next(p for p in psn_nos if p != first.psn_no)})
    [output] = await settler.handle([thief])
    assert from_output(output)[1]["err_code"] == "DUPLICATE_CONFLICT"


async def _to_packed_form(store: RedisStore, psn_nos: list[str], events) -> int:
    """Rewrite every claim record in the packed form written before the lean one (with the whole
    fingerprint, which the lean form keeps 8 bytes of). Returns how many."""
    whole: dict = {}
    for event in events:  # the first of an id is the one on record
        whole.setdefault(getattr(event, "claim_id", None), fingerprint(event))
    moved = 0
    for psn in psn_nos:
        recs = store._key(psn, "recs")
        for field, value in (await store.client.hgetall(recs)).items():
            record = packed.load_value(value, psn, field.decode().split(":", 1)[1])
            if field.startswith(b"c:"):
                record = dataclasses.replace(record, fingerprint=whole[record.settlement.claim_id])
                mark = b"\n" + record.reversed_by.encode() if record.reversed_by else b""
                await store.client.hset(recs, field, value[:4] + bytes((16,)) + bytes.fromhex(record.fingerprint)
                                        + packed.dump_packed(record) + mark)
                moved += 1
    return moved


def _forget_templates() -> dict:
    """A new process: no template read or written yet."""
    saved = dict(lean.TEMPLATES)
    lean.TEMPLATES.clear()
    lean._IDS.clear()
    return saved


async def _settle_halves(store, seed: int, between) -> tuple[dict, dict, list, list]:
    """The first half of some traffic settled, `between(store, psn_nos)` run, then the second half
    (resends and reversals of the first among it) by a process that never saw a template: its results,
    and the reference's."""
    traffic, setup, stream = traffic_events(family=0.3, seed=seed)
    half = len(stream) // 2
    psn_nos = [p["psn_no"] for p in traffic.persons]
    settler = Settler(store, BOOK)
    await settler.handle(setup)
    for start in range(0, half, 40):
        await settler.handle(stream[start:start + 40])
    await between(store, psn_nos, setup + stream)
    saved = _forget_templates()
    try:
        results = {}
        for start in range(half, len(stream), 40):
            for output in await Settler(store, BOOK).handle(stream[start:start + 40]):
                _, wire = from_output(output)
                results.setdefault(wire.get("claim_id") or wire.get("credit_id"), json_ready(wire))
    finally:
        lean.TEMPLATES.update(saved)
    expected, ref = await reference(setup + stream)
    later = {event.claim_id for event in stream[half:]}
    old_ids = {event.claim_id for event in stream[:half]}
    assert any(getattr(event, "orig_claim_id", None) in old_ids for event in stream[half:])  # old ones reversed
    assert any(event.claim_id in old_ids for event in stream[half:])  # and resent
    assert figures(await states_of(store, psn_nos)) == figures(await states_of(ref, psn_nos))
    return {key: expected[key] for key in later}, {key: results[key] for key in later}, psn_nos, stream


@pytest.mark.parametrize("store", ["redis", "redis-cluster"], indirect=True)
async def test_records_of_the_packed_form_are_resent_and_reversed_as_before(store):
    moved = []

    async def to_packed(store, psn_nos, events):
        moved.append(await _to_packed_form(store, psn_nos, events))
    expected, results, _, _ = await _settle_halves(store, 33, to_packed)
    assert moved[0] > 100
    assert results == expected


@pytest.mark.parametrize("store", ["redis", "redis-cluster"], indirect=True)
async def test_a_process_that_never_saw_a_records_templates_reads_them_from_redis(store):
    sizes = []

    async def measure(store, psn_nos, events):
        for psn in psn_nos:
            sizes.extend(len(value) for field, value in (await store.client.hgetall(store._key(psn, "recs"))).items()
                         if field.startswith(b"c:"))
    expected, results, _, _ = await _settle_halves(store, 33, measure)
    assert results == expected
    templates = await store.client.hgetall(f"{store.prefix}:tpl")
    assert 5 < len(templates) < len(sizes) / 4  # shared: far fewer than records
    assert all(lean.template_id(text.decode()) == int(tid) for tid, text in templates.items())
    assert sum(sizes) / len(sizes) < 150, sum(sizes) / len(sizes)  # the packed form: ~530


@pytest.mark.parametrize("store", ["redis"], indirect=True)
async def test_a_template_whose_id_another_holds_leaves_its_texts_whole(store):
    """A clash of 32-bit ids (made here by writing another text under every id first): the record
    keeps its texts, the other template stays, and results are the same."""
    traffic, setup, stream = traffic_events(family=0.3, seed=33)
    used: dict[int, str] = {}
    settler = Settler(MemoryStore(), BOOK)
    await settler.handle(setup)
    await settler.handle(stream[:120])
    for (psn, key), record in settler.store.records.items():
        packed.value(record, psn, key.split(":", 1)[1], used)
    await store.client.hset(f"{store.prefix}:tpl", mapping={str(tid): "another" for tid in used})
    try:
        expected, results, _, _ = await _settle_halves(store, 33, lambda store, psn_nos, events: _nothing())
    finally:
        lean.REFUSED.clear()
    assert results == expected
    held = await store.client.hgetall(f"{store.prefix}:tpl")
    assert len(used) > 5 and all(held[str(tid).encode()] == b"another" for tid in used)


async def _nothing():
    return None


def _later(events, years: int):
    """The events moved `years` years on (ids made new), a credit's month too."""
    moved = []
    for event in events:
        change = {}
        for name in ("claim_id", "credit_id", "orig_claim_id"):
            if getattr(event, name, None):
                change[name] = f"{getattr(event, name)}+{years}"
        if getattr(event, "setl_time", None):
            change["setl_time"] = event.setl_time.replace(year=event.setl_time.year + years)
        if getattr(event, "ym", None):
            change["ym"] = f"{int(event.ym[:4]) + years}{event.ym[4:]}"
        moved.append(event.model_copy(update=change))
    return moved


async def test_closing_years_drops_their_records_and_accumulators_from_redis_as_from_memory(store):
    traffic, setup, stream = traffic_events(family=0.3, seed=41)
    third = stream[:200]
    # The same traffic four and eight years on (leap days stay leap days), then resends of the first.
    events = [*setup, *third, *_later(third, 4), *_later(third, 8), *third[:40]]
    settler = Settler(store, BOOK)
    outputs = []
    for start in range(0, len(events), 40):
        outputs += [json_ready(from_output(output)[1]) for output in await settler.handle(events[start:start + 40])]
    one_by_one, ref = MemoryStore(), None
    ref = Settler(one_by_one, BOOK)
    expected = []
    for event in events:
        expected += [json_ready(from_output(output)[1]) for output in await ref.handle([event])]
    assert outputs == expected
    psn_nos = [p["psn_no"] for p in traffic.persons]
    assert figures(await states_of(store, psn_nos)) == figures(await states_of(one_by_one, psn_nos))
    closed = [output for output in outputs if output.get("err_code") == "REVERSAL_WINDOW_CLOSED"]
    assert len(closed) >= 30  # the first year's resends, refused, not settled again
    states = await states_of(store, psn_nos)
    last = min(event.setl_time.year for event in _later(third, 8) if hasattr(event, "setl_time"))
    assert all(state.kept_from >= last - 1 and min(state.years) >= state.kept_from
               for state in states.values() if state.years)
    # The ids of the records the window closed went with them: what is left is the ids of records
    # kept, and of events refused (an id is claimed before the event is judged).
    refused = {output.get("claim_id") or output.get("credit_id") for output in outputs if output.get("err_code")}
    if isinstance(store, RedisStore):
        kept = set()
        for psn, state in states.items():
            records = await store.client.hgetall(store._key(psn, "recs"))
            assert all(int(value[:4]) >= state.kept_from for value in records.values())
            kept |= {field.decode() for field in records}
            fields = await store.client.hkeys(store._key(psn, "state"))
            assert all(int(field.split(b":")[0]) >= state.kept_from for field in fields if field[:1].isdigit())
        ids = {field.decode() for bucket in await _keys(store, f"{store.prefix}:ids:*")
               for field in await store.client.hkeys(bucket)}
    else:
        kept, ids = {key for _, key in store.records}, set(store.owners)
    assert kept <= ids
    assert {key.split(":", 1)[1] for key in ids - kept} <= refused
    assert len(ids) < len(events) * 3 // 4  # a third of the events' years closed


@pytest.mark.parametrize("store", ["redis"], indirect=True)
async def test_templates_are_written_again_once_the_store_has_not_seen_them_for_template_seconds(store, monkeypatch):
    """Not a round trip every pass (it cost ~8% of settlement's CPU a claim), but never trusted for
    longer than TEMPLATE_SECONDS: a Redis that lost the hash gets it back from the next commit after."""
    from gongji.settlement import redis_store

    clock = [1000.0]
    monkeypatch.setattr(redis_store.time, "monotonic", lambda: clock[0])
    traffic, setup, stream = traffic_events(family=0.0, seed=33)
    settler = Settler(store, BOOK)
    await settler.handle(setup)
    await settler.handle(stream[:40])
    key = f"{store.prefix}:tpl"
    written = await store.client.hgetall(key)
    assert written
    await store.client.delete(key)
    await settler.handle(stream[40:80])
    assert not (await store.client.hgetall(key)).keys() & written.keys()  # within the window: trusted
    clock[0] += redis_store.TEMPLATE_SECONDS + 1
    await settler.handle(stream[80:120])
    again = await store.client.hgetall(key)
    assert again.keys() & written.keys() and all(again.get(tid, text) == text for tid, text in written.items())
