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
import sys

from redis.asyncio import Redis, RedisCluster
from hiredis import pack_command as _pack_command
from redis._parsers.hiredis import NOT_ENOUGH_DATA
from redis.exceptions import (AuthenticationError, ConnectionError, DataError, NoScriptError, RedisClusterException,
                              RedisError, ResponseError)
from redis.connection import HiredisRespSerializer

_SERIALIZER = HiredisRespSerializer()


class _HiredisPacking:
    def pack_command(self, *args):
        return _SERIALIZER.pack(*args)


def connect(url: str, cluster: bool = False, username: str | None = None, password: str | None = None):
    """A redis.asyncio client for `url` (redis://, rediss://, unix://; a user:password in it is
    used), replies as bytes; with `cluster`, a Redis Cluster client that finds the other nodes from
    this one. `username` and `password` serve where the URL has none (the URL's win). Reads have no
    per-reply timeout: wrap round trips in `deadline`."""
    credentials = {name: value for name, value in (("username", username), ("password", password)) if value is not None}
    if cluster:
        return RedisCluster.from_url(url, socket_timeout=None, socket_connect_timeout=5, **credentials)
    client = Redis.from_url(url, socket_timeout=None, socket_connect_timeout=5, **credentials)
    base = client.connection_pool.connection_class
    client.connection_pool.connection_class = type(f"Hiredis{base.__name__}", (_HiredisPacking, base), {})
    return client


def client_for(settings):
    """The client a service's settings name: GONGJI_REDIS_URL, GONGJI_REDIS_CLUSTER, and the
    credentials (GONGJI_REDIS_USERNAME, GONGJI_REDIS_PASSWORD or its _FILE)."""
    return connect(settings.redis_url, settings.redis_cluster, **settings.redis_credentials())


class CredentialsRefused(Exception):
    """Redis refused the user and password (or their absence): a start-up error, in one line."""


async def check_credentials(client, url: str | None) -> None:
    """PING once: a server that refuses the credentials stops start-up (CredentialsRefused) instead
    of looking like an outage retried for ever. Any other failure is left to the service's own
    handling (a server still starting, say)."""
    from gongji.common.observe import redacted

    try:
        await client.ping()
    except (RedisError, RedisClusterException) as error:
        # A cluster client wraps the refusal of its first node in "cannot be connected".
        refusal = error if isinstance(error, AuthenticationError) else error.__cause__
        if not isinstance(refusal, AuthenticationError):
            return
        raise CredentialsRefused(f"Redis at {redacted(url)} refused the credentials ({refusal}); check the user and "
                                 "password in GONGJI_REDIS_URL or GONGJI_REDIS_USERNAME and GONGJI_REDIS_PASSWORD(_FILE)"
                                 ) from None


async def service_client(settings, service: str):
    """The client of `service`'s settings (client_for), its credentials checked once: a refusal
    stops the command with one line naming the service and the settings."""
    client = client_for(settings)
    try:
        await check_credentials(client, settings.redis_url)
    except CredentialsRefused as error:
        await client.aclose()
        sys.exit(f"gongji: {service}: {error}")
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


async def run_pipeline(client, build, scripts: tuple[LuaScript, ...] = (), timeout: float = 10.0,
                       lean: bool | Lane = False) -> list:
    """Queue commands with `build(pipe)` and run them in one round trip (per node), under one
    deadline; on NOSCRIPT, load `scripts` and run again. Only for idempotent or conditional writes:
    a second run may repeat what the first did on nodes that had the scripts. `lean`, on one node:
    `pipe` is a Commands and the replies are read straight off the connection (run_lean), the
    Lane's if one is given."""
    for attempt in range(2):
        async with deadline(timeout):
            try:
                if lean and not isinstance(client, RedisCluster):
                    commands = Commands()
                    build(commands)
                    return await run_lean(client, commands, lean if isinstance(lean, Lane) else None)
                async with client.pipeline(transaction=False) as pipe:
                    build(pipe)
                    return await pipe.execute()
            except NoScriptError:
                if attempt:
                    raise
        for script in scripts:
            await client.script_load(script.source)
    raise AssertionError("unreachable")


class Commands:
    """Commands for one round trip, packed by hiredis as they are queued: the part of a redis-py
    pipeline the settlement store queues, without the pipeline's bookkeeping for each command (its
    stack, a reply callback, a read through the connection's layers): 5 µs of the service's CPU a
    command, and ~150 µs a round trip (measured: 20 commands 215 – 265 µs through a pipeline, 71 – 79
    µs here; 2,000 commands 14.3 ms, 3.5 ms here)."""

    __slots__ = ("packed", "maps")

    def __init__(self):
        self.packed: list[bytes] = []
        self.maps: list[int] = []  # positions of HGETALL replies: a dict, also under RESP2

    def execute_command(self, *args) -> None:
        try:
            self.packed.append(_pack_command(args))
        except TypeError as error:  # as redis-py says it
            raise DataError(error) from None

    def get(self, key) -> None:
        self.execute_command("GET", key)

    def set(self, key, value) -> None:
        self.execute_command("SET", key, value)

    def hget(self, key, field) -> None:
        self.execute_command("HGET", key, field)

    def hgetall(self, key) -> None:
        self.maps.append(len(self.packed))
        self.execute_command("HGETALL", key)

    def hmget(self, key, fields, *more) -> None:
        self.execute_command("HMGET", key, *([fields] if isinstance(fields, (str, bytes)) else fields), *more)

    def hset(self, key, field, value) -> None:
        self.execute_command("HSET", key, field, value)

    def hsetnx(self, key, field, value) -> None:
        self.execute_command("HSETNX", key, field, value)


class Lane:
    """A connection of a client's pool kept for round trips made one after another (a settling
    loop's): taking one from redis-py's pool and giving it back (its lock, counts and events, ~15
    µs) is paid once. Checked before each use as the pool checks what it hands out (data left
    over, or closed: connected again). A round trip while another is on it takes one from the pool."""

    def __init__(self, client):
        self.client = client
        self.connection = None
        self.busy = False

    async def take(self):
        self.busy = True
        try:
            if self.connection is None:
                self.connection = await self.client.connection_pool.get_connection()
            else:
                await self.connection.connect()
                if await self.connection.can_read():
                    await self.connection.disconnect()
                    await self.connection.connect()
        except BaseException:
            self.busy = False
            raise
        return self.connection

    async def release(self) -> None:
        """Give the connection back to the pool (the lane is no longer used); one a round trip is on
        stays with it."""
        connection, self.connection = self.connection, None
        if connection is not None and not self.busy:
            await self.client.connection_pool.release(connection)


async def run_lean(client, commands: Commands, lane: Lane | None = None) -> list:
    """`commands` in one round trip on a connection of `client`'s pool (one node; `lane`'s when it
    is free), their replies as the server gives them (no redis-py callback: SET answers b"OK", not
    True), HGETALL's a dict; raises the first error reply once every reply is read (the connection
    stays in step). A connection that fails or is cancelled halfway is dropped."""
    pool = client.connection_pool
    held = lane is not None and not lane.busy
    connection = await (lane.take() if held else pool.get_connection())
    try:
        await connection.send_packed_command(commands.packed, check_health=False)
        parser = connection._parser
        reader, push = parser._reader, parser._hiredis_PushNotificationType
        replies = []
        while len(replies) < len(commands.packed):
            reply = reader.gets()
            while reply is NOT_ENOUGH_DATA:
                await parser.read_from_socket()
                reply = reader.gets()
            if push is not None and isinstance(reply, push):
                continue  # RESP3 push (none is asked for): not a reply
            if isinstance(reply, ConnectionError):
                raise reply
            replies.append(reply)
    except BaseException:
        await connection.disconnect(nowait=True)
        raise
    finally:
        if held:
            lane.busy = False
        else:
            await pool.release(connection)
    for position in commands.maps:
        flat = replies[position]
        if isinstance(flat, list):
            replies[position] = dict(zip(flat[::2], flat[1::2]))
    for reply in replies:
        if isinstance(reply, ResponseError):
            raise reply
    return replies


def deadline(seconds: float = 10.0):
    """One timeout for a whole round trip (a pipeline of thousands of commands)."""
    return asyncio.timeout(seconds)


class DurabilityUnavailable(Exception):
    """The Redis server cannot give the durability the settings ask for: a start-up error."""


class NotDurable(RedisError):
    """A wait for durability ended short of what was asked (a replica gone, a disk stalled): the
    batch is not published, and is retried as for any outage."""


async def primaries(client) -> list:
    """One plain client per primary: `client` itself, or for a Redis Cluster one per primary node
    (commands on one connection reach one node, which WAIT and WAITAOF need)."""
    if not isinstance(client, RedisCluster):
        return [client]
    from redis.asyncio.connection import ConnectionPool

    await client.initialize()
    return [Redis(connection_pool=ConnectionPool(connection_class=node.connection_class, **node.connection_kwargs))
            for node in client.get_primaries()]


class Durability:
    """What a batch's writes must reach before its results are published (GONGJI_REDIS_DURABILITY).

    WAIT and WAITAOF wait for the writes of *their own connection*; the replication stream and the
    append-only file are both in write order, so one write queued just before the wait, on the same
    connection (the batch's marker, `SeenMarkers.seal`), covers every write the batch made before it.
    """

    def __init__(self, mode: str = "aof", replicas: int = 1, timeout_ms: int = 5000):
        self.mode = mode
        self.replicas = replicas if mode in ("aof-replicas", "aof-all", "replicas") else 0
        self.local = 1 if mode in ("aof", "aof-all") else 0
        self.timeout_ms = timeout_ms

    @classmethod
    def from_settings(cls, settings) -> "Durability":
        return cls(settings.redis_durability, settings.redis_durability_replicas, settings.redis_durability_timeout_ms)

    def __str__(self) -> str:
        return self.mode if self.mode in ("aof", "none") else f"{self.mode} ({self.replicas} replica(s))"

    def queue(self, pipe) -> bool:
        """Queue the wait on `pipe` after its writes; False when there is nothing to wait for."""
        if self.mode == "none":
            return False
        if self.mode == "replicas":
            pipe.execute_command("WAIT", self.replicas, self.timeout_ms)
        else:
            pipe.execute_command("WAITAOF", self.local, self.replicas, self.timeout_ms)
        return True

    def verify(self, reply) -> None:
        """Raise NotDurable unless the wait's reply says enough copies are safe."""
        if self.mode == "replicas":
            if int(reply) < self.replicas:
                raise NotDurable(f"WAIT: {int(reply)} of {self.replicas} replica(s) acknowledged "
                                 f"within {self.timeout_ms} ms")
        else:
            local, remote = int(reply[0]), int(reply[1])
            if local < self.local or remote < self.replicas:
                raise NotDurable(f"WAITAOF: local {local} of {self.local}, replicas {remote} of {self.replicas} "
                                 f"fsynced within {self.timeout_ms} ms")

    async def check(self, client) -> None:
        """At start-up: raise DurabilityUnavailable (one line, the fix named) unless every primary
        can give this durability."""
        if self.mode == "none":
            return
        for node in await primaries(client):
            try:
                persistence = await node.info("persistence")
                replication = await node.info("replication")
            except RedisError as error:
                raise DurabilityUnavailable(f"cannot read INFO from Redis ({error}); set GONGJI_REDIS_DURABILITY=none "
                                            "to run without waiting for durability") from error
            if self.local and not int(persistence.get("aof_enabled", 0)):
                raise DurabilityUnavailable(
                    f"GONGJI_REDIS_DURABILITY={self.mode} needs the append-only file, and Redis has appendonly no; "
                    "run it with --appendonly yes (or choose replicas or none)")
            if self.replicas:
                connected = int(replication.get("connected_slaves", 0))
                if connected < self.replicas:
                    raise DurabilityUnavailable(
                        f"GONGJI_REDIS_DURABILITY={self.mode} waits for {self.replicas} replica(s), and a primary has "
                        f"{connected}; add replicas or lower GONGJI_REDIS_DURABILITY_REPLICAS")
            if self.mode != "replicas":
                try:
                    await node.execute_command("WAITAOF", self.local, 0, 1)
                except RedisError as error:
                    raise DurabilityUnavailable(f"Redis refused WAITAOF ({error}); it needs Redis 7.2 or Valkey 7.2 "
                                                "or later, else GONGJI_REDIS_DURABILITY=replicas or none") from error
            if node is not client:
                await node.aclose()
