"""`gongji replay`'s faster path (orjson, the fast input checks, batches of 500, the encoder) gives
what it gave before, to the byte.

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
from gongji.local.synthetic import Traffic
from gongji.settlement import admission, replay
from tests.unit.builders import BOOK

pytestmark = pytest.mark.unit

NOW = datetime.fromisoformat("2024-01-01T00:00:00+08:00")


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


async def _replay(lines: list[bytes], errors: io.StringIO, **batch) -> list[str]:
    return [text async for text in replay.replay_text(lines, BOOK, errors, now=NOW, **batch)]


def test_a_large_synthetic_file_replays_to_the_byte_as_before(monkeypatch):
    lines = _lines(persons=400, count=6000, seed=5)
    fast_errors, slow_errors = io.StringIO(), io.StringIO()
    fast = asyncio.run(_replay(lines, fast_errors))
    batched = asyncio.run(_replay(lines, io.StringIO(), batch=7))
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
