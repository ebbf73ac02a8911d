"""The dashboard against the real broker: its /events stream (a full snapshot on connect, then as
records arrive), the lookback on start, consumer lag from committed offsets, /healthz and /metrics
on their own port."""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp
from aiokafka import TopicPartition
from tests.dashboard_records import dead_letter, fraud_signal, institution, rejection, send, settlement
from tests.integration.support import settings_for

from gongji.common import kafka
from gongji.common.pseudonym import Pseudonym
from gongji.common.topic_admin import ensure_topics
from gongji.dashboard.commands import region_names
from gongji.dashboard.service import start_dashboard
from gongji.local.processes import free_port

TOKEN = "integration-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


async def snapshots(session: aiohttp.ClientSession, url: str):
    """Snapshots from the page's event stream, as a browser's EventSource gets them."""
    async with session.get(url + "events") as response:
        assert response.status == 200 and response.headers["Content-Type"].startswith("text/event-stream")
        event, data = None, []
        async for raw in response.content:
            line = raw.decode().rstrip("\n")
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                data.append(line[6:])
            elif not line and data:
                if event == "snapshot":
                    yield json.loads("\n".join(data))
                event, data = None, []


async def until(stream, check, timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    async for snap in stream:
        if check(snap):
            return snap
        assert time.monotonic() < deadline, f"the dashboard never showed it; last snapshot: {snap}"
    raise AssertionError("event stream ended")


async def test_snapshot_on_connect_then_live_figures_lookback_and_lag(stack, uniq):
    settings = settings_for(stack, uniq, dashboard_port=0, dashboard_lookback_seconds=600, dashboard_token=TOKEN,
                            pseudonym_key="integration-key", metrics_port=free_port())
    topics = settings.topics
    await ensure_topics(settings,
                        [topics.settlements, topics.dead_letters, topics.fraud_signals, topics.institutions,
                         topics.claims], settings.partitions, compacted={topics.institutions})
    # Before the dashboard starts: one settlement an hour old (outside the lookback), one recent.
    await send(settings, [("Settlement", settlement("OLD", hifp="999.00"))],
               timestamp_ms=int((time.time() - 3600) * 1000))
    await send(settings, [("Settlement", settlement("P1", hifp="100.00", acct="20.00")),
                          ("Institution", institution("H1", "3"))])
    # The settlement service's group: 7 claims sent in one batch, offsets committed after the first 2.
    producer = kafka.producer(settings, linger_ms=50)
    await producer.start()
    await asyncio.gather(*[await producer.send(topics.claims, b"x", partition=0) for _ in range(7)])
    await producer.stop()
    group = kafka.consumer(settings, settings.settlement_group)
    await group.start()
    group.assign([TopicPartition(topics.claims, 0)])
    await group.commit({TopicPartition(topics.claims, 0): 2})
    await group.stop()

    running = await start_dashboard(settings, region_names())  # labels from the shipped policy files
    try:
        async with aiohttp.ClientSession(headers=AUTH) as session:
            stream = snapshots(session, running.url)
            first = await anext(stream)  # at once on connect, whatever it has read so far
            assert first["instance"] and "counts" in first and "lag" in first
            snap = await until(stream, lambda s: s["counts"]["settlements"] >= 1 and any(
                row["service"] == "settlement" and row["lag"] is not None for row in s["lag"]))
            assert snap["counts"]["settlements"] == 1  # the hour-old one is not read back
            assert snap["money"]["fund_pay_sumamt"] == 100.0
            lag = {row["service"]: row for row in snap["lag"]}
            assert lag["settlement"]["lag"] == 5 and lag["settlement"]["topics"] == {topics.claims: 5}
            assert lag["clearing"]["lag"] is None  # no offsets: not running

            await send(settings, [("Settlement", settlement("P2", insured="990100", treated="152501", inst="H1",
                                                            hifp="50.00", maf="10.00", mulaid="7.00")),
                                  ("Rejection", rejection("P3", "NOT_INSURED")),
                                  ("DeadLetter", dead_letter()),
                                  ("FraudSignal", fraud_signal("P2"))])
            snap = await until(stream, lambda s: s["counts"]["settlements"] == 2 and s["counts"]["fraud_signals"] == 1
                               and s["counts"]["dead_letters"] == 1 and s["counts"]["rejections"] == 1)
            assert {f["code"]: f["amount"] for f in snap["funds"]}["610100"] == 10.0
            assert snap["money"]["acct_mulaid_pay"] == 7.0
            assert snap["rejections"] == [{"code": "NOT_INSURED", "count": 1}]
            assert snap["signals"][0]["subject_id"] == Pseudonym(b"integration-key")("P2")
            assert [(f["insured"], f["treated"], f["settlements"], f["fund_paid"]) for f in snap["flows"]] == [
                ("990100 Seed-000 province", "152501 二连浩特市", 1, 60.0)]
            assert [row["level"] for row in snap["levels"]] == ["Level 3 hospitals"]
            assert snap["rate"]["series"][-1][1] >= 0

            # A second page, connecting now, is right at once.
            late = await anext(snapshots(session, running.url))
            assert late["counts"]["settlements"] == 2

            own = f"http://127.0.0.1:{settings.metrics_port}/"  # their own port, loopback: no credential
            async with aiohttp.ClientSession() as anyone:
                async with anyone.get(own + "healthz") as health:
                    assert health.status == 200 and (await health.json())["healthy"]
                async with anyone.get(own + "metrics") as metrics:
                    text = await metrics.text()
                    assert "gongji_dashboard_pages" in text and "gongji_consumed_total" in text
            for path in ("healthz", "metrics"):  # not on the page's port
                async with session.get(running.url + path) as response:
                    assert response.status == 404
            async with session.get(running.url) as page:
                assert "plotly.min.js" in await page.text()
            async with session.get(running.url + "static/plotly.min.js") as script:
                assert script.status == 200 and len(await script.read()) > 1_000_000
    finally:
        await running.stop()
