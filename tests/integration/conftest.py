"""Integration fixtures: every store implementation, on the real Redis-protocol server."""

from __future__ import annotations

import pytest

from gongji.common.redis import connect
from gongji.settlement.redis_store import RedisStore
from gongji.settlement.store import MemoryStore


@pytest.fixture(params=["memory", "redis"])
async def store(request, uniq, stack):
    """Each SettlementStore in turn: the in-memory one replay uses, the Redis one the service uses."""
    if request.param == "memory":
        yield MemoryStore()
        return
    client = connect(stack.redis_url)
    yield RedisStore(client, prefix=uniq)
    await client.aclose()
