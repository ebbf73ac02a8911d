"""Fixtures shared by every test tier: the servers, unique names, a Redis client.

Servers come from GONGJI_KAFKA_BOOTSTRAP_SERVERS and GONGJI_REDIS_URL when both are set (a real
Kafka and Redis), otherwise from one local stack started for the session. Tests isolate
themselves with `uniq` in topic names, group ids and Redis keys, never by cleaning up.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from gongji.local.stack import Endpoints, LocalStack

TIERS = ("unit", "integration", "e2e")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark each test with its tier, taken from its folder: tests/<tier>/..."""
    tests_dir = Path(__file__).parent
    for item in items:
        try:
            tier = item.path.relative_to(tests_dir).parts[0]
        except ValueError:
            continue
        if tier in TIERS:
            item.add_marker(tier)


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory):
    """Kafka, Redis and PostgreSQL addresses (`kafka_bootstrap_servers`, `redis_url`, `database_url`,
    `group_timeouts`)."""
    kafka = os.environ.get("GONGJI_KAFKA_BOOTSTRAP_SERVERS")
    redis_url = os.environ.get("GONGJI_REDIS_URL")
    if kafka and redis_url:
        yield Endpoints(kafka, redis_url, database_url=os.environ.get("GONGJI_DATABASE_URL"))
        return
    with LocalStack(tmp_path_factory.mktemp("stack")) as local:
        yield local.endpoints()


@pytest.fixture
def uniq() -> str:
    """A short name unique to this test, for topic prefixes, group ids and key prefixes."""
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def redis_client(stack):
    """A redis.asyncio client on the stack's server as its admin (bytes in, bytes out)."""
    from tests.integration.support import admin_credentials

    client = aioredis.Redis.from_url(stack.redis_url, decode_responses=False, **admin_credentials(stack))
    yield client
    await client.aclose()
