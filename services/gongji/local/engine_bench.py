"""The settlement engine's CPU an event, apart from parsing, validation and the wire (issue 12).

`python -m gongji.local.engine_bench FILE [--now TIME] [--batch N] [--rounds R]`: FILE is the JSON
lines `gongji replay` reads (`gongji synthetic` writes one). Its lines are parsed and validated once;
then, R times, a fresh in-memory store settles every event through the Settler (planning, the
rules, the store) in batches of N, as replay does. Prints one line per round and the best: µs an
event and an event's share of claims. A benchmark prints figures; no test times anything.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import time
from datetime import datetime, timezone

from gongji.contract.wire import DEFAULT_BOUNDS
from gongji.settlement.codec import to_event
from gongji.settlement.domain import Rejection
from gongji.settlement.events import Claim
from gongji.settlement.memory_store import MemoryStore
from gongji.settlement.policy import load_policy_book
from gongji.settlement.replay import parse_line
from gongji.settlement.settler import Settler


def events_of(path: str, now: datetime) -> list:
    """The file's valid events, in order (lines that are not an event are left out)."""
    events = []
    with open(path, "rb") as source:
        for number, line in enumerate(source, start=1):
            data = parse_line(number, line, _Quiet())
            if data is None:
                continue
            event = to_event(str(data.get("event_type")), data, DEFAULT_BOUNDS, now)
            if not isinstance(event, Rejection):
                events.append(event)
    return events


class _Quiet:
    def write(self, text: str) -> int:
        return len(text)


async def settle_all(events: list, batch: int) -> float:
    """Seconds of CPU to settle `events` from an empty store, `batch` at a time."""
    settler = Settler(MemoryStore(), load_policy_book())
    handle = settler.handle
    start = time.process_time()
    for first in range(0, len(events), batch):
        await handle(events[first:first + batch])
    return time.process_time() - start


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m gongji.local.engine_bench", description=__doc__.split("\n")[0])
    parser.add_argument("file")
    parser.add_argument("--now", default="2100-01-01T00:00:00+08:00", help="the present setl_time is judged against")
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    events = events_of(args.file, datetime.fromisoformat(args.now).astimezone(timezone.utc))
    claims = sum(isinstance(event, Claim) for event in events)
    gc.collect()
    gc.freeze()  # as tune_gc: the parsed events are not the engine's cost
    gc.set_threshold(50_000, 20, 20)
    best = None
    for round_ in range(1, args.rounds + 1):
        seconds = asyncio.run(settle_all(events, args.batch))
        best = seconds if best is None else min(best, seconds)
        print(f"round {round_}: {len(events)} events ({claims} claims) in {seconds:.2f} s of CPU: "
              f"{seconds / len(events) * 1e6:.1f} µs an event")
        gc.collect()
    print(f"best: {best / len(events) * 1e6:.1f} µs an event, {len(events) / best:,.0f} events/s")


if __name__ == "__main__":
    main()
