"""The bench's synthetic traffic settled offline (Avro encode → decode → to_event → Settler over the
memory store), for tests that compare a fast path with the reference over realistic results."""

from __future__ import annotations

import asyncio
from functools import lru_cache

from gongji.common.avro import SchemaCatalog
from gongji.contract.wire import INPUT_RECORDS, RECORD_INPUTS
from gongji.local.synthetic import Traffic
from gongji.settlement.codec import to_event
from gongji.settlement.domain import Output
from gongji.settlement.memory_store import MemoryStore
from gongji.settlement.settler import Settler
from tests.unit.builders import BOOK

CATALOG = SchemaCatalog()


@lru_cache(maxsize=4)
def wire(claims: int, persons: int, seed: int = 11) -> tuple[bytes, ...]:
    """Registry, openings and a stream of `claims` (with reversals and resends) as Avro messages."""
    traffic = Traffic(persons=persons, seed=seed, tag="t")
    events = [*traffic.registry(), *traffic.openings(), *traffic.stream(claims)]
    return tuple(CATALOG.encode(INPUT_RECORDS[kind], data) for kind, data in events)


@lru_cache(maxsize=4)
def settled(claims: int, persons: int, seed: int = 11, batch: int = 500) -> tuple[Output, ...]:
    """Every output of settling `wire(claims, persons, seed)` in batches of `batch`."""
    async def run() -> list[Output]:
        settler, outputs = Settler(MemoryStore(), BOOK), []
        messages = wire(claims, persons, seed)
        for start in range(0, len(messages), batch):
            events = []
            for message in messages[start:start + batch]:
                name, data = CATALOG.decode(message)
                events.append(to_event(RECORD_INPUTS[name], data))
            outputs += await settler.handle(events)
        return outputs
    return tuple(asyncio.run(run()))
