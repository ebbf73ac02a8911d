"""Issue 12's fraud figure on its own: N synthetic settlement results (and the claims they answer,
some reversals) queued on `settlements` and `claims` of a fresh local stack, then `gongji run fraud`
started as a process of its own drains them; prints results/s (first event consumed to last) and
the service's CPU per result (its claims included).

    .venv/bin/python -m tests.fraud_bench [--results 40000] [--persons 8000] [--batch N] [--rate R] [--spy]

With --rate, the first half is drained (the state built) and the second half sent at R events a
second while the service consumes: its CPU for that half (the steady-rate case of `gongji bench`).

With --spy, py-spy (pip install py-spy into .venv) records the drain as raw stacks to
/tmp/fraud-bench-spy.txt. The population: `persons` people at 200 institutions over 60 days, a claim
of one to three drug lines before each result, 3% of the visits reversed a day later."""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from datetime import datetime, timedelta
from pathlib import Path

from gongji.common.topic_admin import ensure_topics
from gongji.contract import wire
from gongji.local.processes import free_port
from tests.integration.support import CATALOG, as_service, producer, settings_for
from tests.integration.test_fraud_service import RECORD, claim, reversal, settlement

DAY0 = datetime.fromisoformat("2023-03-01T00:00:00+08:00")


def stream(results: int, persons: int, seed: int = 12) -> list[tuple[str, str, dict]]:
    """(topic kind, record kind, record) in settlement-time order."""
    rng = random.Random(seed)
    times = sorted(DAY0 + timedelta(days=rng.uniform(0, 60)) for _ in range(results))
    out, reversals = [], []
    for n, when in enumerate(times):
        psn, inst = f"P{rng.randrange(persons)}", f"H{rng.randrange(200)}"
        for line in range(rng.randrange(1, 4)):
            kind, data = claim(f"C{n}", psn, inst, when.isoformat(), drug=f"X{rng.randrange(40):02d}",
                               cnt=str(rng.choice((3, 7, 14, 30))))
            if line:  # more lines on one claim
                first = out[-1][2]
                first["fee_details"].append({**data["fee_details"][0], "feedetl_sn": str(line + 1)})
                continue
            out.append(("claims", kind, data))
        result = settlement(f"C{n}", psn, inst, when.isoformat(), medfee="120.00", part=rng.choice(("40.00", "900.00")))
        out.append(("settlements", *result))
        if rng.random() < 0.03:
            reversals.append((when + timedelta(days=1), result))
        while reversals and reversals[0][0] <= when:
            at, original = reversals.pop(0)
            out.append(("settlements", *reversal(f"R{original[1]['claim_id']}", original, at.isoformat())))
    return out


def encoded(settings, records) -> list[tuple[str, bytes, bytes, list]]:
    topics = settings.topics
    return [(topics.claims if topic == "claims" else topics.settlements, data["psn_no"].encode(),
             CATALOG.encode(RECORD[kind], data), [] if kind == "claim" else wire.headers(kind, data["claim_id"]))
            for topic, kind, data in records]


async def produce(settings, records) -> None:
    async with producer(settings) as sender:
        for start in range(0, len(records), 5000):
            sends = []
            for name, key, value, heads in encoded(settings, records[start:start + 5000]):
                sends.append(await sender.send(name, value, key=key, headers=heads))
            await asyncio.gather(*sends)


async def produce_paced(settings, records, rate: float) -> float:
    """`records` at `rate` a second, paced as `gongji bench` paces (bench_latency.send_paced);
    returns the seconds it took."""
    from gongji.local.bench_latency import send_paced

    rows = [(name, key, value, str(number), heads)
            for number, (name, key, value, heads) in enumerate(encoded(settings, records))]
    async with producer(settings) as sender:
        start = time.perf_counter()
        await send_paced(sender, rows, rate)
        return time.perf_counter() - start


def consumed(port: int) -> float | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1) as response:
            text = response.read().decode()
    except OSError:
        return None
    return next((float(line.split()[-1]) for line in text.splitlines() if line.startswith("gongji_consumed_total ")),
                0.0)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def drain(stack, records, spy: bool, partitions: int, batch: int | None = None, rate: float | None = None,
                fraud: dict | None = None) -> dict:
    """The service drains `records`; with `rate`, it drains the first half, then the second half is
    sent at `rate` events a second while it consumes (the figures are that paced half's)."""
    tag = f"fb{uuid.uuid4().hex[:6]}"
    settings = settings_for(stack, tag, fraud_group=f"{tag}-fraud").model_copy(update={"partitions": partitions})
    changes = {**({"batch_events": batch} if batch else {}), **(fraud or {})}
    settings = settings.model_copy(update={"fraud": settings.fraud.model_copy(update=changes)})
    await ensure_topics(settings, [settings.topics.settlements, settings.topics.claims], settings.partitions)
    paced = records[len(records) // 2:] if rate else []
    await produce(settings, records[:len(records) - len(paced)])
    port = free_port()
    env = {**os.environ, **as_service(settings, "fraud").to_env(), "GONGJI_METRICS_PORT": str(port)}
    total = len(records)
    results = sum(topic == "settlements" for topic, _, _ in records)
    with tempfile.NamedTemporaryFile(prefix="fraud-bench-", suffix=".log", delete=False) as log:
        process = subprocess.Popen([sys.executable, "-m", "gongji.cli", "run", "fraud"], env=env, stdout=log,
                                   stderr=log)
    spying = None
    try:
        if paced:  # the first half drained (the state built), then the second at a steady rate
            await _until_consumed(port, process, total - len(paced))
            first = (time.monotonic(), total - len(paced), cpu_seconds(process.pid))
            spying = _spy(process.pid) if spy else None
            sending = await produce_paced(settings, paced, rate)
            await _until_consumed(port, process, total)
            last = (time.monotonic(), total, cpu_seconds(process.pid))
            results = sum(topic == "settlements" for topic, _, _ in paced)
            return {"results": results, "events": len(paced), "seconds": sending, "per_second": len(paced) / sending,
                    "cpu_us_per_result": (last[2] - first[2]) / results * 1e6, "cpu_seconds": last[2] - first[2],
                    "log": log.name}
        first = None
        deadline = time.monotonic() + 900
        while True:
            done = consumed(port)
            now = time.monotonic()
            if process.poll() is not None:
                raise SystemExit(f"fraud exited {process.returncode}; see {log.name}")
            if now > deadline:
                raise SystemExit(f"fraud did not drain in 900 s ({done} of {total}); see {log.name}")
            if first is None and done:
                first = (now, done, cpu_seconds(process.pid))
                if spy:
                    spying = _spy(process.pid)
            if done is not None and done >= total:
                last = (now, done, cpu_seconds(process.pid))
                break
            await asyncio.sleep(0.25)  # each look at /metrics costs the service CPU too
    finally:
        if spying is not None:
            spying.send_signal(2)
            spying.wait(30)
        process.terminate()
        process.wait(30)
    seconds, cpu = last[0] - first[0], last[2] - first[2]
    share = results * (last[1] - first[1]) / total  # the results among the events timed
    return {"results": results, "events": total, "seconds": seconds, "per_second": share / seconds,
            "cpu_us_per_result": cpu / share * 1e6, "log": log.name}


def _spy(pid: int) -> subprocess.Popen:
    return subprocess.Popen([os.environ.get("PY_SPY", str(Path(sys.executable).parent / "py-spy")), "record", "--pid",
                             str(pid), "-r", "100", "--nonblocking", "-f", "raw", "-o", "/tmp/fraud-bench-spy.txt"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def _until_consumed(port: int, process: subprocess.Popen, count: int, timeout: float = 900) -> None:
    deadline = time.monotonic() + timeout
    while (consumed(port) or 0) < count:
        if process.poll() is not None:
            raise SystemExit(f"fraud exited {process.returncode}")
        if time.monotonic() > deadline:
            raise SystemExit(f"fraud did not consume {count} events in {timeout:.0f} s")
        await asyncio.sleep(0.25)  # each look at /metrics costs the service CPU too


def main() -> None:
    from gongji.local.stack import LocalStack

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=int, default=40_000)
    parser.add_argument("--persons", type=int, default=8_000)
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--batch", type=int, default=None, help="GONGJI_FRAUD__BATCH_EVENTS (default: the setting's)")
    parser.add_argument("--rate", type=float, default=None,
                        help="events a second: drain the first half, then send the second half at this rate")
    parser.add_argument("--save-seconds", type=float, default=None, help="GONGJI_FRAUD__SAVE_SECONDS")
    parser.add_argument("--spy", action="store_true")
    args = parser.parse_args()
    records = stream(args.results, args.persons)
    fraud = {} if args.save_seconds is None else {"save_seconds": args.save_seconds}
    with tempfile.TemporaryDirectory(prefix="gongji-fraud-bench-") as scratch, LocalStack(scratch) as local:
        figure = asyncio.run(drain(local.endpoints(), records, args.spy, args.partitions, args.batch, args.rate,
                                   fraud))
    if args.rate:
        print(f"fraud bench: {figure['events']:,} events ({figure['results']:,} results) sent at "
              f"{figure['per_second']:,.0f}/s while the service consumed: {figure['cpu_seconds']:.2f} CPU-s, "
              f"{figure['cpu_us_per_result']:.0f} µs of CPU a result (log {figure['log']})", flush=True)
        return
    print(f"fraud bench: {figure['results']:,} results ({figure['events']:,} events with their claims) drained at "
          f"{figure['per_second']:,.0f} results/s, {figure['cpu_us_per_result']:.0f} µs of CPU a result "
          f"(log {figure['log']})", flush=True)


if __name__ == "__main__":
    main()
