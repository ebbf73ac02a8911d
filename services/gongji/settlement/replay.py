"""`gongji replay FILE`: settle a JSON Lines file offline, from empty state, in file order.

The same Settler and engine as the streaming service, over the in-memory store. One JSON line
out per output event; lines that are not JSON at all are reported on standard error.
"""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator, Iterable
from decimal import Decimal
from typing import IO

from gongji.settlement.codec import from_output, json_ready, to_event
from gongji.settlement.domain import Rejection
from gongji.settlement.handler import Output, Settler
from gongji.settlement.policy import PolicyBook
from gongji.settlement.store import MemoryStore


async def replay_lines(lines: Iterable[str], book: PolicyBook, errors: IO[str] = sys.stderr,
                       batch: int = 1) -> AsyncIterator[dict]:
    """Settle each line in order; yields the output events as JSON-ready dicts. `batch` events are
    handed to the Settler at a time, as the service's polls do: the results are the same for any
    size (`gongji replay --batch N` lets anyone check it)."""
    settler = Settler(MemoryStore(), book)
    pending: list = []

    async def flush():
        outputs = await settler.handle(pending) if pending else []
        pending.clear()
        return outputs

    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line, parse_float=Decimal)
        except json.JSONDecodeError as error:
            print(f"line {number}: not JSON ({error.msg} at column {error.colno}); skipped", file=errors)
            continue
        if not isinstance(data, dict):
            print(f"line {number}: a JSON {type(data).__name__}, not an object; skipped", file=errors)
            continue
        event = to_event(str(data.get("event_type")), data)
        if isinstance(event, Rejection):  # answered in its place: what came before is settled first
            results = await flush() + [Output(event.psn_no or "", event)]
        else:
            pending.append(event)
            results = await flush() if len(pending) >= batch else []
        for output in results:
            yield _wire(output)
    for output in await flush():
        yield _wire(output)


def _wire(output: Output) -> dict:
    kind, wire = from_output(output)
    return {"event_type": kind, **json_ready(wire)}
