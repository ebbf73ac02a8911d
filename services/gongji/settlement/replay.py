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


async def replay_lines(lines: Iterable[str], book: PolicyBook, errors: IO[str] = sys.stderr) -> AsyncIterator[dict]:
    """Settle each line in order; yields the output events as JSON-ready dicts."""
    settler = Settler(MemoryStore(), book)
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
        results = [Output(event.psn_no or "", event)] if isinstance(event, Rejection) else await settler.handle([event])
        for output in results:
            kind, wire = from_output(output)
            yield {"event_type": kind, **json_ready(wire)}
