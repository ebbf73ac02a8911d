"""The gateway when a server it needs is away, against a real valkey-server this test stops and starts
again: a request meets the outage and is answered in the national shape (infcode -1, what failed,
ask again with the same msgid), never aiohttp's HTTP 500 with a traceback; the operator reads one
line naming Redis; /healthz turns 503 and back to 200; the same msgid asked after the outage settles."""

from __future__ import annotations

import asyncio
import logging

from tests.health_probe import health
from tests.integration.support import running_service
from tests.integration.test_gateway import World, counted, gateway, post
from tests.integration.test_poison import OwnRedis, until

from gongji.common.observe import redacted
from gongji.local.processes import free_port


async def test_redis_away_answers_in_the_national_shape_turns_health_503_and_the_msgid_settles_after(
        stack, uniq, tmp_path, caplog):
    server = OwnRedis(tmp_path, stack)
    server.start()
    port = free_port()
    world = World(stack, uniq, tmp_path, stall_seconds=0.5, retry_initial_seconds=0.1, retry_max_seconds=0.5)
    world.settings = world.settings.model_copy(update={"redis_url": server.url})
    his = world.callers.by_id["his"]
    caplog.set_level(logging.INFO)
    try:
        async with running_service(world.settings):
            await world.register()
            async with gateway(world.settings.model_copy(update={"metrics_port": port})) as running:
                request = world.request("MSG0100")
                assert (await asyncio.to_thread(health, port))[0] == 200
                server.stop()
                status, during = await post(running.url, request, his)
                await until(lambda: health(port)[0] == 503, "/healthz 503 while Redis is away")
                server.start()
                await until(lambda: health(port)[0] == 200, "/healthz 200 once Redis answers")
                _, after = await post(running.url, request, his)  # the same msgid, asked again
                failed = counted(running, "failed")
    finally:
        server.stop()
    assert status == 503 and during["infcode"] == -1, (status, during)
    assert during["err_msg"] == ("the gateway's store (Redis) is unreachable (ConnectionError); "
                                 "try again with the same msgid"), during
    assert failed == 1
    assert after["infcode"] == 0, after
    # One line for the operator naming the server, its address and the setting; no traceback; no psn_no.
    said = [r.getMessage() for r in caplog.records if r.name == "gongji.reachable" and "gateway" in r.getMessage()]
    told = [line for line in said if "does not answer" in line]
    assert len(told) == 1 and told[0].startswith(f"gateway: Redis at {redacted(server.url)} does not answer ("), said
    assert said[-1].startswith("gateway: working again after "), said
    assert not [r for r in caplog.records if r.exc_info and r.name.startswith(("gongji", "aiohttp"))]
    assert not [r for r in caplog.records if world.person["psn_no"] in r.getMessage()]
