"""`gongji replay`'s own engine (gongji.settlement.sequential) and its faster edges (orjson, the
fast input checks, the encoder) give what the service's path gives, to the byte.

The reference is the path replay took before: json with exact decimals, pydantic's validation, the
Settler handed one event at a time, `json.dumps(json_ready(...))`.
"""

from __future__ import annotations

import asyncio
import io
import json
from datetime import datetime
from decimal import Decimal

import pytest
from hypothesis import given

from gongji.local.synthetic import Traffic
from gongji.settlement import admission, replay
from gongji.settlement.codec import from_output
from gongji.settlement.memory_store import MemoryStore
from gongji.settlement.sequential import Sequential
from gongji.settlement.settler import Settler
from tests.unit.builders import BOOK
from tests.unit.test_batch_invariance import SETTINGS, streams

pytestmark = pytest.mark.unit

NOW = datetime.fromisoformat("2024-01-01T00:00:00+08:00")


def _state(store: MemoryStore) -> dict:
    """What a store holds, less the opaque tokens."""
    return {"states": {psn: (state.balance, state.years, state.pending) for psn, state in store.states.items()},
            "records": store.records, "holds": store.holds, "owners": store.owners, "persons": store.persons}


async def _both(events: list) -> tuple:
    engine = Sequential(BOOK)
    mine = [from_output(output) for event in events for output in await engine.handle(event)]
    settler = Settler(MemoryStore(), BOOK)
    theirs = [from_output(output) for event in events for output in await settler.handle([event])]
    return mine, _state(engine.store), theirs, _state(settler.store)


@SETTINGS
@given(events=streams())
def test_one_event_at_a_time_on_the_store_is_the_settler_one_at_a_time(events):
    """The batch-invariance streams: family aid (valid, unknown, inactive and cross-region holders,
    chains, cycles, rebinding), reversals of others' and unknown claims and before their original,
    identical and conflicting resends, credits."""
    mine, my_state, theirs, their_state = asyncio.run(_both(events))
    assert mine == theirs
    assert my_state == their_state


def _lines(persons: int, count: int, seed: int) -> list[bytes]:
    """A synthetic file as `gongji replay` reads it: money as text, every fifth line as JSON numbers."""
    traffic = Traffic(persons=persons, seed=seed, family=0.3)
    events = traffic.registry() + traffic.openings() + list(traffic.stream(count, reversals=0.05, resends=0.05))
    conflict = next(data for kind, data in reversed(events) if kind == "claim")
    events.append(("claim", {**conflict, "acct_used_flag": "0" if conflict["acct_used_flag"] == "1" else "1"}))
    lines = []
    for number, (kind, data) in enumerate(events):
        if number % 5:
            text = json.dumps({"event_type": kind, **data}, default=str, ensure_ascii=False)
        else:
            text = json.dumps({"event_type": kind, **data}, default=float, ensure_ascii=False)
        lines.append(text.encode())
    return lines + [b"", b"[1]", b'{"event_type": "claim", "claim_id": 1.5}', "{\"a\": \"\ud800\"}".encode("utf-8", "surrogatepass")]


class _NoOrjson:
    JSONDecodeError = replay.orjson.JSONDecodeError

    @staticmethod
    def loads(line):
        raise replay.orjson.JSONDecodeError("off", "", 0)


async def _reference(lines: list[bytes], errors: io.StringIO) -> list[str]:
    return [json.dumps(output, ensure_ascii=False)
            async for output in replay.replay_lines(lines, BOOK, errors, batch=1, now=NOW)]


async def _replay(lines: list[bytes], errors: io.StringIO, batch: int | None = None) -> list[str]:
    return [text async for text in replay.replay_text(lines, BOOK, errors, batch=batch, now=NOW)]


def test_a_large_synthetic_file_replays_to_the_byte_as_before(monkeypatch):
    lines = _lines(persons=400, count=6000, seed=5)
    fast_errors, slow_errors = io.StringIO(), io.StringIO()
    fast = asyncio.run(_replay(lines, fast_errors))
    batched = asyncio.run(_replay(lines, io.StringIO(), batch=200))
    monkeypatch.setattr(replay, "orjson", _NoOrjson)
    monkeypatch.setattr(admission, "FAST", {})
    slow = asyncio.run(_reference(lines, slow_errors))
    assert len(slow) > 6000 and fast == slow and batched == slow
    assert fast_errors.getvalue() == slow_errors.getvalue() and fast_errors.getvalue().count("\n") == 2
    kinds = {json.loads(text)["event_type"] for text in slow}
    assert kinds == {"settlement", "reversal", "rejection", "credit"}
    assert sum('"acct_mulaid_pay": "0.00"' not in text for text in slow if '"settlement"' in text) > 50


def test_json_numbers_are_read_as_exact_decimals():
    errors = io.StringIO()
    assert replay.parse_line(1, b'{"a": 8000.10, "b": [1, {"c": 0.1}], "d": 3}', errors) == \
        {"a": Decimal("8000.10"), "b": [1, {"c": Decimal("0.1")}], "d": 3}
    assert replay.parse_line(1, b'{"a": "x", "a": "y"}', errors) == {"a": "y"}
    assert replay.parse_line(2, "\ufeff{}".encode(), errors) is None and "line 2: not JSON" in errors.getvalue()
