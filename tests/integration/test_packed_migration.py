"""Records and registry entries written in the first form (before records were packed) stay good on a live Redis: the
new code reads them, answers their resends, reverses them, with results identical to a store that
never held the first form."""

from __future__ import annotations

import pytest

from gongji.settlement import packed
from gongji.settlement.codec import from_output, json_ready
from gongji.settlement.redis_store import RedisStore
from gongji.settlement.settler import Settler
from tests.integration.support import figures
from tests.integration.test_settler_exactly_once import BOOK, reference, states_of, traffic_events


def _first_form(record, psn_no, event_id):
    return record.fingerprint.encode(), packed.dump_named(record)


async def test_records_of_the_first_form_are_read_resent_and_reversed_as_before(store, monkeypatch):
    if not isinstance(store, RedisStore):
        pytest.skip("the first form is the Redis store's")
    traffic, setup, stream = traffic_events(family=0.3, seed=33)
    half = len(stream) // 2
    with monkeypatch.context() as old_code:
        old_code.setattr(packed, "fields", _first_form)
        old_code.setattr(packed, "dump_person", lambda person: person.model_dump_json().encode())
        settler = Settler(store, BOOK)
        await settler.handle(setup)
        for start in range(0, half, 40):
            await settler.handle(stream[start:start + 40])
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
    psn_nos = [p["psn_no"] for p in traffic.persons]
    assert figures(await states_of(store, psn_nos)) == figures(await states_of(ref, psn_nos))
