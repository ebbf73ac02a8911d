"""What the Redis store wrote before stays good on a live Redis: records in the first form (named
JSON, the fingerprint as hex) and in the first layout (a key per record `{psn}:rec:<key>`, a key
per id `id:<key>`), registry entries unpacked. The new code reads them, answers their resends,
refuses their ids to another person, reverses them, with results identical to a store that never
held them; and the window closes years on the new layout, on one server and on a cluster."""

from __future__ import annotations

import pytest

from gongji.settlement import packed
from gongji.settlement.codec import from_output, json_ready
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
    if isinstance(store, RedisStore):
        for psn, state in states.items():
            values = (await store.client.hgetall(store._key(psn, "recs"))).values()
            assert all(int(value[:4]) >= state.kept_from for value in values)
            fields = await store.client.hkeys(store._key(psn, "state"))
            assert all(int(field.split(b":")[0]) >= state.kept_from for field in fields if field[:1].isdigit())
