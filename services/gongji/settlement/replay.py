"""`gongji replay FILE`: settle a JSON Lines file offline, from empty state, in file order.

The same Settler and engine as the streaming service, over the in-memory store, BATCH events at a
time as the service's polls hand them over (the results are the same for any size). One JSON line
out per output event. No input line can stop it: a line that is not UTF-8 or not a JSON object is
reported on standard error and skipped; an invalid event is an INVALID_CLAIM rejection like any
other refusal; an event that fails inside settlement (a bug of ours) is reported and skipped, as the
service sends it to dead-letters.
"""

from __future__ import annotations

import json
import sys

import orjson
from collections.abc import AsyncIterator, Iterable
from datetime import datetime, timezone
from decimal import Decimal
from typing import IO

from gongji.common.money import shown
from gongji.settlement.codec import from_output, json_line, json_ready, to_event
from gongji.contract.wire import DEFAULT_BOUNDS, Bounds
from gongji.settlement.domain import Output, Rejection
from gongji.settlement.events import Event
from gongji.settlement import rules as settlement_rules
from gongji.settlement.planning import Rules
from gongji.settlement.settler import Settler
from gongji.settlement.policy import PolicyBook
from gongji.settlement.memory_store import MemoryStore

#: Events handed to the Settler at a time: as the service's polls (`gongji run settlement --batch`).
BATCH = 500


async def replay_lines(lines: Iterable[str | bytes], book: PolicyBook, errors: IO[str] = sys.stderr,
                       batch: int = BATCH, bounds: Bounds = DEFAULT_BOUNDS,
                       now: datetime | None = None, rules: Rules = settlement_rules,
                       store: MemoryStore | None = None) -> AsyncIterator[dict]:
    """Settle each line in order; yields the output events as JSON-ready dicts. `batch` events are
    handed to the Settler at a time, as the service's polls do: the results are the same for any
    size (`gongji replay --batch N` lets anyone check it). `now` is the present that setl_time is
    judged against (the wall clock at the start if None); `rules` are gongji.settlement.rules but
    in a test that plants a bug; `store`: the state to start from and leave behind (default: empty)."""
    async for outputs in replay_batches(lines, book, errors, batch, bounds, now, rules, store):
        for output in outputs:
            yield _wire(output)


async def replay_chunks(lines: Iterable[str | bytes], book: PolicyBook, errors: IO[str] = sys.stderr,
                        batch: int = BATCH, bounds: Bounds = DEFAULT_BOUNDS,
                        now: datetime | None = None) -> AsyncIterator[str]:
    """What `gongji replay` prints: each output event as its JSON line, ended by a newline, the lines
    joined a batch at a time (one write each)."""
    async for outputs in replay_batches(lines, book, errors, batch, bounds, now):
        if outputs:
            yield "\n".join([json_line(output) for output in outputs]) + "\n"


async def replay_outputs(lines: Iterable[str | bytes], book: PolicyBook, errors: IO[str] = sys.stderr,
                         batch: int = BATCH, bounds: Bounds = DEFAULT_BOUNDS,
                         now: datetime | None = None, rules: Rules = settlement_rules,
                         store: MemoryStore | None = None) -> AsyncIterator[Output]:
    """The results of settling each line in order (replay_lines)."""
    async for outputs in replay_batches(lines, book, errors, batch, bounds, now, rules, store):
        for output in outputs:
            yield output


async def replay_batches(lines: Iterable[str | bytes], book: PolicyBook, errors: IO[str] = sys.stderr,
                         batch: int = BATCH, bounds: Bounds = DEFAULT_BOUNDS,
                         now: datetime | None = None, rules: Rules = settlement_rules,
                         store: MemoryStore | None = None) -> AsyncIterator[list[Output]]:
    """The results of settling each line in order, a list each time the Settler was handed a batch
    (or a line was refused before it), so a caller's work per result is no generator step."""
    now = now or datetime.now(timezone.utc)
    settler = Settler(store if store is not None else MemoryStore(), book, rules)
    pending: list[tuple[int, Event]] = []
    append = pending.append

    for number, line in enumerate(lines, start=1):
        data = parse_line(number, line, errors)
        if data is None:
            continue
        kind = data.get("event_type")
        event = to_event(kind if isinstance(kind, str) else f"<{type(kind).__name__}>", data, bounds, now)
        if isinstance(event, Rejection):  # answered in its place: what came before is settled first
            results = await _settle(settler, pending, errors) if pending else []
            pending.clear()
            results.append(Output(event.psn_no or "", event))
            yield results
        else:
            append((number, event))
            if len(pending) >= batch:
                results = await _settle(settler, pending, errors)
                pending.clear()
                yield results
    if pending:
        yield await _settle(settler, pending, errors)


async def _settle(settler: Settler, pending: list[tuple[int, Event]], errors: IO[str]) -> list[Output]:
    """The batch's results; if settling raises (a bug of ours), the batch one event at a time, and
    the event that fails is one line on `errors`, as the service isolates it for dead-letters."""
    try:
        return await settler.handle([event for _, event in pending])
    except Exception:
        pass
    outputs: list[Output] = []
    for number, event in pending:
        try:
            outputs += await settler.handle([event])
        except Exception as error:
            _internal(number, error, errors)
    return outputs


def _internal(number: int, error: Exception, errors: IO[str]) -> None:
    print(f"line {number}: internal error while settling: {type(error).__name__}: {shown(str(error))}; skipped",
          file=errors)


def _wire(output: Output) -> dict:
    kind, wire = from_output(output)
    return {"event_type": kind, **json_ready(wire)}


def parse_line(number: int, line: str | bytes, errors: IO[str]) -> dict | None:
    """One line as a JSON object, or None after saying on `errors` why it is skipped."""
    try:  # the usual line: an object of strings and integers, read exactly by orjson
        data = orjson.loads(line)
    except orjson.JSONDecodeError:
        pass
    else:
        if type(data) is dict and not _floats(data):
            return data
    if isinstance(line, bytes):
        try:
            line = line.decode("utf-8")
        except UnicodeDecodeError as error:
            print(f"line {number}: not UTF-8 (byte 0x{line[error.start]:02x} at column {error.start + 1}); skipped",
                  file=errors)
            return None
    if not line.strip():
        return None
    try:
        data = json.loads(line, parse_float=Decimal)
    except json.JSONDecodeError as error:
        print(f"line {number}: not JSON ({error.msg} at column {error.colno}); skipped", file=errors)
        return None
    except RecursionError:
        print(f"line {number}: not JSON this program reads (nested too deeply); skipped", file=errors)
        return None
    except Exception as error:  # a number Python will not read: 5,000 digits, an exponent of 10^20
        print(f"line {number}: not JSON this program reads ({type(error).__name__}: {shown(str(error))}); skipped",
              file=errors)
        return None
    if not isinstance(data, dict):
        print(f"line {number}: a JSON {type(data).__name__}, not an object; skipped", file=errors)
        return None
    return data


def _floats(value: object) -> bool:
    """Whether orjson read a number with a fraction or exponent (as a binary float): such a line is
    read again by json with exact decimals."""
    for item in value.values() if type(value) is dict else value:
        kind = type(item)
        if kind is float or (kind is dict or kind is list) and _floats(item):
            return True
    return False
