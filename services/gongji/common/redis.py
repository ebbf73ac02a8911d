"""Redis clients as every Gongji service builds them.

redis-py's asyncio connection packs commands in pure Python even when hiredis is installed; the
synchronous client uses hiredis for it. Measured here, a pipelined EVALSHA with 30 arguments
cost 33 µs of client time packed in Python and 18 µs packed by hiredis, so the connection class
is given hiredis's packer.

redis-py also wraps every single reply of a pipeline in its own asyncio timeout (a socket_timeout
of 5 s by default), about 6% of a settlement worker's CPU. The client is built without it, and
the stores put one deadline on each whole round trip instead (`deadline`).
"""

from __future__ import annotations

import asyncio

import hashlib

from redis.asyncio import Redis, RedisCluster
from redis.exceptions import NoScriptError
from redis.connection import HiredisRespSerializer

_SERIALIZER = HiredisRespSerializer()


class _HiredisPacking:
    def pack_command(self, *args):
        return _SERIALIZER.pack(*args)


def connect(url: str, cluster: bool = False):
    """A redis.asyncio client for `url` (redis://, rediss://, unix://), replies as bytes; with
    `cluster`, a Redis Cluster client that finds the other nodes from this one. Reads have no
    per-reply timeout: wrap round trips in `deadline`."""
    if cluster:
        return RedisCluster.from_url(url, socket_timeout=None, socket_connect_timeout=5)
    client = Redis.from_url(url, socket_timeout=None, socket_connect_timeout=5)
    base = client.connection_pool.connection_class
    client.connection_pool.connection_class = type(f"Hiredis{base.__name__}", (_HiredisPacking, base), {})
    return client


class LuaScript:
    """A Lua script run by its SHA. redis-py's cluster pipeline does not load registered scripts,
    so the stores load theirs themselves (SCRIPT LOAD reaches every primary) the first time a
    server answers NOSCRIPT, as it also does after a restart empties its script cache."""

    def __init__(self, source: str):
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()

    def queue(self, pipe, keys: list[str], args: list) -> None:
        # Through execute_command: redis-py's cluster pipeline refuses its evalsha() method, yet
        # routes EVALSHA by its keys, which share one slot by their {psn_no} hash tag.
        pipe.execute_command("EVALSHA", self.sha, len(keys), *keys, *args)


async def run_pipeline(client, build, scripts: tuple[LuaScript, ...] = (), timeout: float = 10.0) -> list:
    """Queue commands with `build(pipe)` and run them in one round trip (per node), under one
    deadline; on NOSCRIPT, load `scripts` and run again. Only for idempotent or conditional writes:
    a second run may repeat what the first did on nodes that had the scripts."""
    for attempt in range(2):
        async with deadline(timeout):
            async with client.pipeline(transaction=False) as pipe:
                build(pipe)
                try:
                    return await pipe.execute()
                except NoScriptError:
                    if attempt:
                        raise
        for script in scripts:
            await client.script_load(script.source)
    raise AssertionError("unreachable")


def deadline(seconds: float = 10.0):
    """One timeout for a whole round trip (a pipeline of thousands of commands)."""
    return asyncio.timeout(seconds)
