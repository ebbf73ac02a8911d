"""`gongji bench`'s latency phase: claims sent at a steady rate while the settlement service and,
by default, the downstream services (ledger, clearing, fraud, each a process of its own in its own
consumer group, as deployed) consume.

End to end, as printed: from the moment a claim is due on the steady schedule (the bench hands it
to its Kafka producer at the next tick, within TICK) to the moment
the bench's own consumer (group-less, fetching as the services do) reads the claim's first result on
`settlements`; and, for claims the ledger books, to its journal row (`recorded_at`: the start of
the transaction that booked it). Every component shares the machine, so their CPU during the phase
is printed too. Before the timed phase each downstream group has committed to the end of
`settlements`: assigned and caught up (a positive marker, not a pause).
"""

from __future__ import annotations

import asyncio
import gc
import os
import statistics
import subprocess
import time
from pathlib import Path

from gongji.common import kafka
from gongji.local.errors import LocalError
from gongji.local.launch import Row, start_service, stop_processes
from gongji.settings import Settings

DOWNSTREAM = ("ledger", "clearing", "fraud")
TICK = 0.005  # seconds between the paced sender's wake-ups: the claims due by then go together


def machine_busy_seconds() -> float:
    """CPU-seconds every process on the machine has used so far (Linux /proc/stat: all but idle and iowait)."""
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, open("/proc/stat").readline().split()[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def percentiles(values: list[float]) -> dict[str, float]:
    """p50, p95, p99 and max of `values` (milliseconds)."""
    if len(values) < 2:
        return {"p50_ms": values[0], "p95_ms": values[0], "p99_ms": values[0], "max_ms": values[0]}
    cuts = statistics.quantiles(values, n=1000)
    return {"p50_ms": cuts[499], "p95_ms": cuts[949], "p99_ms": cuts[989], "max_ms": max(values)}


def describe(figures: dict[str, float]) -> str:
    return ", ".join(f"{name[:-3]} {figures[name]:.1f}" for name in ("p50_ms", "p95_ms", "p99_ms", "max_ms")) + " ms"


async def send_paced(producer, messages: list[Row], rate: float) -> dict[str, float]:
    """Send `messages` at `rate` a second, waking every TICK to hand those due by then to the
    producer in one batch per topic and partition (kafka.publish: the generator's own cost and its
    requests to the broker kept few, as it shares the cores); returns each id's first due time on
    the steady schedule (time.perf_counter()), so that the wait for the tick counts in its latency."""
    due: dict[str, float] = {}
    futures = []
    start = time.perf_counter()
    number = 0
    while number < len(messages):
        upto = min(len(messages), int((time.perf_counter() - start) * rate) + 1)
        by_topic: dict[str, list] = {}
        for index in range(number, upto):
            topic, key, value, ident, headers = messages[index]
            due.setdefault(ident, start + index / rate)
            by_topic.setdefault(topic, []).append((key, value, headers))
        for topic, records in by_topic.items():
            futures += await kafka.publish(producer, topic, records)
        number = upto
        await asyncio.sleep(max(start + number / rate - time.perf_counter(), TICK))
    await asyncio.gather(*futures)
    return due


def start_downstream(settings: Settings, policy_dir: Path | None, workdir: Path,
                     credentials: dict | None) -> dict[str, subprocess.Popen]:
    """Each downstream service SERVICES knows (the ledger only with a database) as its own process."""
    from gongji.services import SERVICES

    running = {}
    for name in [s for s in DOWNSTREAM if s in SERVICES and (s != "ledger" or settings.database_url)]:
        with open(workdir / f"{name}-paced.log", "ab") as log:
            (running[name],) = start_service(name, settings, policy_dir, log, credentials=credentials)
    return running


async def caught_up(settings: Settings, running: dict[str, subprocess.Popen], timeout: float = 600) -> None:
    """Until each running service's group has committed to the end of `settlements` as it stands."""
    deadline = time.monotonic() + timeout
    async with kafka.group_progress(settings, settings.topics.settlements) as progress:
        for name, process in running.items():
            while True:
                done, end = await progress(settings.kafka_group(name))
                if end > 0 and done >= end:
                    break
                if process.poll() is not None:
                    raise LocalError(f"bench: {name} exited with status {process.returncode} before the paced phase")
                if time.monotonic() > deadline:
                    raise LocalError(f"bench: {name} did not catch up with settlements within {timeout:.0f} s")
                await asyncio.sleep(0.1)


async def ledger_rows(settings: Settings, running: dict[str, subprocess.Popen], ids: list[str]) -> dict[str, float]:
    """Once the ledger has committed to the end of `settlements`: its rows' recorded_at (epoch
    seconds) by claim id, for those of `ids` it booked (settlements and reversals; not rejections)."""
    import psycopg

    await caught_up(settings, {"ledger": running["ledger"]})
    async with await psycopg.AsyncConnection.connect(settings.database_url, autocommit=True,
                                                     **_password(settings)) as connection:
        rows = await connection.execute(
            f"SELECT source_id, extract(epoch FROM recorded_at) FROM {settings.ledger_schema}.journal_entry "
            "WHERE source_id = ANY(%s) AND event_type IN ('settlement', 'reversal')", (ids,))
        return {source: float(epoch) for source, epoch in await rows.fetchall()}


def _password(settings: Settings) -> dict[str, str]:
    password = settings.database_password_value()
    return {"password": password} if password else {}


async def paced_phase(settings: Settings, producer, results, paced: list[Row], rate: int, *,
                      policy_dir: Path | None, workdir: Path, credentials: dict | None,
                      components: dict[str, list[int]], cpu_snapshot, downstream: bool = True) -> dict:
    """Send `paced` at `rate` with the downstream services running (unless not `downstream`); the
    latency figures, printed."""
    running = start_downstream(settings, policy_dir, workdir, credentials) if downstream else {}
    try:
        await caught_up(settings, running)
        components = {**components, **{f"{name} service": [p.pid] for name, p in running.items()}}
        # The generator's own pauses are not the system's latency: what it built so far (the claims it
        # sends, the results it read) is left out of its collections, which then stay short.
        gc.collect()
        gc.freeze()
        before, busy = cpu_snapshot(components), machine_busy_seconds()
        to_wall = time.time() - time.perf_counter()
        started = time.perf_counter()
        sent = await send_paced(producer, paced, rate)
        sending = time.perf_counter() - started
        ids = list(sent)
        await results.wait_for(ids, timeout=600)
        after, busy = cpu_snapshot(components), machine_busy_seconds() - busy
        figures: dict = {"events": len(paced), "rate": rate, "achieved_rate": len(paced) / sending,
                         "downstream": sorted(running)}
        figures["results"] = percentiles([(results.arrived[i] - sent[i]) * 1000 for i in ids])
        figures.update(figures["results"])
        # Where it went, by the result's Kafka timestamp (settlement's producer, on this clock).
        figures["until_result_sent"] = percentiles([(results.stamped[i] - to_wall - sent[i]) * 1000 for i in ids])
        figures["result_sent_to_read"] = percentiles([(results.arrived[i] - results.stamped[i] + to_wall) * 1000
                                                      for i in ids])
        with_downstream = "with " + ", ".join(sorted(running)) + " consuming" if running else "settlement alone"
        print(f"bench: latency at {rate} claims/s ({len(paced)} claims in {sending:.1f} s, {with_downstream}), "
              f"claim sent → result read on settlements: {describe(figures['results'])}", flush=True)
        print(f"bench: latency stages: claim sent → result sent (its Kafka timestamp) "
              f"{describe(figures['until_result_sent'])}; result sent → read {describe(figures['result_sent_to_read'])}",
              flush=True)
        if "ledger" in running:
            booked = await ledger_rows(settings, running, ids)
            if booked:
                figures["ledger"] = percentiles([(booked[i] - to_wall - sent[i]) * 1000 for i in booked])
                print(f"bench: latency claim sent → ledger row ({len(booked)} entries): "
                      f"{describe(figures['ledger'])}", flush=True)
        cpu = {name: after[name] - before[name] for name in after}
        cpu["other processes"] = max(0.0, busy - sum(cpu.values()))
        figures["cpu_seconds"] = cpu
        waited = time.perf_counter() - started
        print(f"bench: CPU from the first send to the last result ({waited:.1f} s, {os.cpu_count()} cores = "
              f"{waited * (os.cpu_count() or 1):.0f} CPU-s): "
              + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in cpu.items()), flush=True)
        return figures
    finally:
        stop_processes(running.values())
