"""`gongji replay`'s faster path (orjson, the fast input checks, batches of 500, the encoder) gives
what it gave before, to the byte.

The reference is the path replay took before: json with exact decimals, pydantic's validation, the
Settler handed one event at a time, `json.dumps(json_ready(...))`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
from datetime import datetime
from decimal import Decimal

import pytest
from gongji.local.synthetic import Traffic
from gongji.common.money import to_yuan
from gongji.settlement import admission, codec, replay
from gongji.settlement.codec import json_ready
from gongji.settlement.domain import Output, Settlement
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
    """What `gongji replay` writes (replay_chunks), as its lines."""
    text = "".join([chunk async for chunk in replay.replay_chunks(lines, BOOK, errors, now=NOW, **batch)])
    assert text.endswith("\n")
    return text[:-1].split("\n")


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


@pytest.mark.parametrize("batch", [1, 7, 500])
def test_the_chunks_gongji_replay_writes_are_its_lines(batch):
    """replay_chunks (a batch's results in one write) gives the reference's lines, each with its
    newline, in order, whatever the batch; a refused line in the middle of a batch included."""
    lines = _lines(persons=40, count=400, seed=11)
    lines.insert(150, b'{"event_type": "claim", "claim_id": "X"}')

    async def both():
        text = await _reference(lines, io.StringIO())
        chunks = [chunk async for chunk in replay.replay_chunks(lines, BOOK, io.StringIO(), batch=batch, now=NOW)]
        return text, chunks

    text, chunks = asyncio.run(both())
    assert len(text) > 400 and "".join(chunks) == "".join(line + "\n" for line in text)
    assert all(chunk.endswith("\n") and chunk != "\n" for chunk in chunks)


def test_json_numbers_are_read_as_exact_decimals():
    errors = io.StringIO()
    assert replay.parse_line(1, b'{"a": 8000.10, "b": [1, {"c": 0.1}], "d": 3}', errors) == \
        {"a": Decimal("8000.10"), "b": [1, {"c": Decimal("0.1")}], "d": 3}
    assert replay.parse_line(1, b'{"a": "x", "a": "y"}', errors) == {"a": "y"}
    assert replay.parse_line(2, "\ufeff{}".encode(), errors) is None and "line 2: not JSON" in errors.getvalue()


@pytest.mark.parametrize("line", [b'{"a":1E2}', b'{"a" :\t-2e-3}', b'{"b": [1, 1.0]}', b'{"c": {"d":\n0.5}}',
                                  b'{"e": "1.5", "f": 7.25}', '{"g": 3.5}'])
def test_every_number_with_a_fraction_or_an_exponent_is_read_exactly(line):
    data = replay.parse_line(1, line, io.StringIO())
    assert Decimal in {type(value) for value in _leaves(data)}


def _leaves(value):
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list):
        return [leaf for item in value for leaf in _leaves(item)]
    return [value]


@pytest.mark.parametrize("fen", [0, 1, 5, 10, 99, 100, 101, 1999, -1, -5, -100, -123456, 10**15 + 7, -(10**17)])
def test_amounts_in_json_lines_are_the_text_json_ready_writes(fen):
    assert codec._YuanText()[fen] == json.dumps(json_ready(to_yuan(fen)))


def test_a_settlement_with_quotes_and_controls_in_its_text_is_the_json_dumps_line():
    lines = _lines(persons=20, count=60, seed=3)
    outputs = asyncio.run(_outputs(lines))
    settled = next(output for output in outputs if type(output.value) is Settlement)
    odd = dataclasses.replace(settled.value, claim_id='a"b\\c', mulaid_holder_psn_no="p\\1", balc=-3,
                              setldetail=tuple(dataclasses.replace(row, setl_proc_info='x\n\t"\x01\u2028é中')
                                               for row in settled.value.setldetail))
    for output in [*outputs, Output(settled.key, odd)]:
        kind, wire = codec.from_output(output)
        assert codec.json_line(output) == json.dumps({"event_type": kind, **json_ready(wire)}, ensure_ascii=False)


async def _outputs(lines):
    return [output async for output in replay.replay_outputs(lines, BOOK, io.StringIO(), now=NOW)]
