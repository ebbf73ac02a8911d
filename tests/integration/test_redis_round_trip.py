"""The settlement store's lean round trip (gongji.common.redis.run_lean) on a real Redis-protocol
server: the replies a redis-py pipeline gives, errors raised only once every reply is read, and a
connection cut off halfway never answers the next round trip with the last one's replies."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError, ResponseError
from tests.integration.support import admin_credentials

from gongji.common.redis import Lane, LuaScript, connect, run_pipeline


@pytest.fixture(params=[3, 2])
async def client(request, stack):
    """The service's client (RESP3, hiredis packing), and a RESP2 one (HGETALL answers a flat list)."""
    if request.param == 3:
        client = connect(stack.redis_url, **admin_credentials(stack))
    else:
        client = Redis.from_url(stack.redis_url, protocol=2, socket_timeout=None, **admin_credentials(stack))
    yield client
    await client.aclose()


@pytest.fixture(params=["pool", "lane"])
def lean(request, client):
    """A connection from the pool each round trip, or one kept (the settlement store's)."""
    return True if request.param == "pool" else Lane(client)


def _mixed(uniq: str, script: LuaScript):
    def build(pipe):
        pipe.set(f"{uniq}:s", "v")
        pipe.get(f"{uniq}:s")
        pipe.get(f"{uniq}:none")
        pipe.hset(f"{uniq}:h", "a", "1")
        pipe.hsetnx(f"{uniq}:h", "a", "2")
        pipe.hsetnx(f"{uniq}:h", "b", b"\x00\xff")
        pipe.hgetall(f"{uniq}:h")
        pipe.hgetall(f"{uniq}:none")
        pipe.hget(f"{uniq}:h", "b")
        pipe.hmget(f"{uniq}:h", ["a", "b", "c"])
        pipe.hmget(f"{uniq}:h", "a")
        script.queue(pipe, [f"{uniq}:h"], ["a", 7])
        pipe.execute_command("WAITAOF", 0, 0, 0)
    return build


async def test_a_lean_round_trip_answers_as_a_redis_py_pipeline(client, lean, uniq):
    script = LuaScript(f"-- {uniq}\nreturn {{redis.call('HGET', KEYS[1], ARGV[1]), tonumber(ARGV[2]) + 1, 'ok'}}")
    keys = (f"{uniq}:h", f"{uniq}:s")
    await run_pipeline(client, _mixed(uniq, script), (script,), lean=lean)  # NOSCRIPT: loaded, all run again
    await client.delete(*keys)
    replies = await run_pipeline(client, _mixed(uniq, script), (script,), lean=lean)
    await client.delete(*keys)
    piped = await run_pipeline(client, _mixed(uniq, script), (script,))
    # The server's replies as they come (redis-py's callback makes SET's OK a True), HGETALL's a dict.
    assert (replies[0], piped[0]) == (b"OK", True)
    assert replies[1:] == piped[1:]
    assert replies[1:10] == [b"v", None, 1, 0, 1, {b"a": b"1", b"b": b"\x00\xff"}, {}, b"\x00\xff",
                          [b"1", b"\x00\xff", None]]
    assert replies[10:12] == [[b"1"], [b"1", 8, b"ok"]]


async def test_an_error_reply_is_raised_after_every_reply_is_read(client, lean, uniq):
    def build(pipe):
        pipe.set(f"{uniq}:k", "1")
        pipe.hget(f"{uniq}:k", "f")  # WRONGTYPE
        pipe.set(f"{uniq}:after", "2")
    with pytest.raises(ResponseError, match="WRONGTYPE"):
        await run_pipeline(client, build, lean=lean)
    # The commands after the error ran, and the connection is in step with its replies.
    assert await run_pipeline(client, lambda pipe: [pipe.get(f"{uniq}:after"), pipe.get(f"{uniq}:k")],
                              lean=lean) == [b"2", b"1"]


async def test_a_round_trip_cut_off_by_its_deadline_leaves_no_reply_for_the_next(client, lean, uniq):
    await client.set(f"{uniq}:k", "here")
    with pytest.raises(TimeoutError):
        await run_pipeline(client, lambda pipe: pipe.execute_command("BLPOP", f"{uniq}:list", 0.3),
                           timeout=0.05, lean=lean)
    await client.rpush(f"{uniq}:list", "late")  # what the cut-off BLPOP would have answered
    for _ in range(3):
        assert await run_pipeline(client, lambda pipe: pipe.get(f"{uniq}:k"), lean=lean) == [b"here"]


async def test_a_round_trip_after_the_server_dropped_its_connection_reconnects(client, lean, uniq):
    await client.set(f"{uniq}:k", "here")
    async with client.client() as other:  # a connection of its own: the round trips take another
        [me] = await run_pipeline(client, lambda pipe: pipe.execute_command("CLIENT", "ID"), lean=lean)
        assert await other.execute_command("CLIENT", "KILL", "ID", me) in (1, True)
    answers = []
    for _ in range(2):  # the dropped connection may fail one round trip (the service retries the batch)
        try:
            answers.append(await run_pipeline(client, lambda pipe: pipe.get(f"{uniq}:k"), lean=lean))
        except ConnectionError:
            answers.append("failed")
    assert answers[-1] == [b"here"]


async def test_a_lane_keeps_its_connection_and_a_second_caller_takes_another(client, uniq):
    lane = Lane(client)
    ids = [(await run_pipeline(client, lambda pipe: pipe.execute_command("CLIENT", "ID"), lean=lane))[0]
           for _ in range(3)]
    assert len(set(ids)) == 1
    first, second = await asyncio.gather(
        run_pipeline(client, lambda pipe: [pipe.execute_command("CLIENT", "ID"), pipe.execute_command("BLPOP",
                     f"{uniq}:none", 0.05)], lean=lane),
        run_pipeline(client, lambda pipe: pipe.execute_command("CLIENT", "ID"), lean=lane))
    assert first[0] == ids[0] and second[0] != ids[0]


async def test_a_lane_released_gives_its_connection_back_to_the_pool(client):
    lane = Lane(client)
    await run_pipeline(client, lambda pipe: pipe.execute_command("PING"), lean=lane)
    kept, pool = lane.connection, client.connection_pool
    assert kept in pool._in_use_connections and kept not in pool._available_connections
    await lane.release()
    assert kept in pool._available_connections and kept not in pool._in_use_connections
