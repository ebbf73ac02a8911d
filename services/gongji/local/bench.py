"""`gongji bench`: synthetic claims through the real stack, end to end; prints claims/s and latency.

The settlement service runs as its own process (`gongji run settlement`), as deployed. This process
pre-encodes the claims, sends them, and reads `settlements` back by header. Two phases: throughput,
the drain of a queued burst from first result to last (so the load generator's cost stays out of
it), with gongji.local.raw_loop draining the same burst just before as the floor it is judged
against (issue 12: settlement ≥ 0.8 × the raw loop); then latency, claims sent at a steady rate with
the downstream services consuming (gongji.local.bench_latency). Then, unless told not to, each
downstream consumer (ledger, clearing, fraud) alone, in a consumer group of its own, draining
everything `settlements` holds by then: results per second from its first committed offset to its
last, and its CPU per result.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from aiokafka import TopicPartition

from gongji.common import kafka
from gongji.common.avro import SchemaCatalog
from gongji.common.redis import client_for
from gongji.contract.wire import ID_HEADER, TYPE_HEADER, header
from gongji.local.errors import LocalError
from gongji.common.signing import signer
from gongji.common.topic_admin import ensure_topics
from gongji.local.credentials import for_role
from gongji.local import redis_memory
from gongji.local.bench_latency import DOWNSTREAM, paced_phase
from gongji.local.launch import encode, isolated, prepare_topics, servers, start_service, stop_processes
from gongji.local.tls import as_principal, principal
from gongji.local.synthetic import Traffic
from gongji.settings import Settings


class Results:
    """Reads `settlements` and notes when each id's first result arrives (time.perf_counter()) and
    when it was sent (its Kafka timestamp, epoch seconds)."""

    def __init__(self, settings: Settings, catalog: SchemaCatalog):
        self.settings = settings
        self.catalog = catalog
        self.arrived: dict[str, float] = {}
        self.stamped: dict[str, float] = {}
        self.kinds: dict[str, int] = {}

    async def run(self, stop: asyncio.Event) -> None:
        topic = self.settings.topics.settlements
        # It reads as a downstream service does (GONGJI_KAFKA_FETCH_MAX_WAIT_MS).
        consumer = kafka.consumer(self.settings, None)
        await consumer.start()
        try:
            partitions = consumer.partitions_for_topic(topic) or set()
            consumer.assign([TopicPartition(topic, p) for p in sorted(partitions)])
            await consumer.seek_to_beginning()
            while not stop.is_set():
                batches = await consumer.getmany(timeout_ms=100, max_records=5000)
                now = time.perf_counter()
                for messages in batches.values():
                    for message in messages:
                        # The service's headers name each result, so the bench needs no decoding.
                        ident = header(message.headers, ID_HEADER).decode()
                        if ident not in self.arrived:
                            self.arrived[ident] = now
                            self.stamped[ident] = message.timestamp / 1000
                            kind = header(message.headers, TYPE_HEADER).decode()
                            self.kinds[kind] = self.kinds.get(kind, 0) + 1
        finally:
            await consumer.stop()

    async def wait_for(self, ids, timeout: float, *, any_of: bool = False) -> None:
        """Until every one of `ids` has a result (or, with `any_of`, the first of them does)."""
        deadline = time.perf_counter() + timeout
        done = any if any_of else all
        while not done(ident in self.arrived for ident in ids):
            if time.perf_counter() > deadline:
                missing = sum(ident not in self.arrived for ident in ids)
                raise TimeoutError(f"{missing} of {len(ids)} results missing after {timeout:.0f} s")
            await asyncio.sleep(0.05)


async def _send(producer, messages) -> None:
    """Send `messages` as fast as the producer takes them; returns once the broker has them all."""
    futures = [await producer.send(topic, value, key=key, headers=headers) for topic, key, value, _, headers in messages]
    await asyncio.gather(*futures)


def _percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=1000)[int(q * 1000) - 1] if len(values) > 1 else values[0]


async def run_bench(claims: int, persons: int, policy_dir: Path | None = None, rate: int = 2000,
                    paced_claims: int | None = None, workers: int = 1, downstream: bool = True) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix="gongji-bench-"))
    tag = "b" + uuid.uuid4().hex[:6]
    stack, base = servers(workdir, key_prefix=tag)
    credentials = stack.credentials() if stack else None
    try:
        settings = isolated(base, tag)
        local = {name: server["pid"] for name, server in stack.state()["servers"].items()} if stack else {}
        figures = await _bench(settings, claims, persons, policy_dir, rate, paced_claims or min(claims, rate * 10),
                               workdir, workers, local, credentials, downstream)
        if downstream:
            figures["downstream"] = await _bench_downstream(settings, policy_dir, workdir, credentials)
        return figures
    finally:
        if stack:
            stack.stop()


def _stat(pid: int) -> list[str]:
    """/proc/PID/stat's fields after the command name (state is [0], ppid [1], utime [11] …)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def _cpu_seconds(pid: int) -> float:
    """User + system CPU a process has used so far (Linux /proc)."""
    fields = _stat(pid)
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _children() -> dict[int, list[int]]:
    """Each live process's children by its pid (Linux /proc)."""
    family: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                family.setdefault(int(_stat(int(entry))[1]), []).append(int(entry))
            except (OSError, IndexError, ValueError):  # gone meanwhile
                pass
    return family


def _family_cpu_seconds(pid: int, children: dict[int, list[int]]) -> float:
    """CPU of a process and of its descendants: those alive (a PostgreSQL server's backends, which
    do the ledger's writes) and those it has reaped (its cutime + cstime)."""
    fields = _stat(pid)
    own = sum(int(field) for field in fields[11:15]) / os.sysconf("SC_CLK_TCK")
    alive = 0.0
    for child in children.get(pid, ()):
        try:
            alive += _family_cpu_seconds(child, children)
        except OSError:  # exited since the listing: its parent's cutime counts it from now on
            pass
    return own + alive


def _cpu_snapshot(components: dict[str, list[int]]) -> dict[str, float]:
    """CPU-seconds so far of each component's processes with their descendants, and of the bench."""
    children = _children()
    snapshot = {name: sum(_family_cpu_seconds(pid, children) for pid in pids) for name, pids in components.items()}
    snapshot["bench (load generator)"] = sum(os.times()[:2])
    return snapshot


async def _bench(settings, claims, persons, policy_dir, rate, paced_claims, workdir, workers, local,
                 credentials=None, downstream=True) -> dict:
    catalog = SchemaCatalog()
    await prepare_topics(settings)
    traffic = Traffic(persons=persons, seed=11, tag=settings.key_prefix)

    key = signer(settings)  # the configured input key signs every message (the local stack's: always)
    print(f"bench: {workers} settlement process(es); encoding {persons} persons, {claims} + {paced_claims} claims ...", flush=True)
    registry = encode(catalog, settings, traffic.registry(), key)
    openings = encode(catalog, settings, traffic.openings(), key)
    burst = encode(catalog, settings, traffic.stream(claims), key)
    paced = encode(catalog, settings, traffic.stream(paced_claims), key)

    log = open(workdir / "settlement.log", "ab")

    def start_workers():
        return start_service("settlement", settings, policy_dir, log, workers, credentials=credentials)

    service = start_workers()
    producer = kafka.producer(settings)
    await producer.start()
    redis = client_for(settings)  # the operator's: MEMORY USAGE and INFO are no service's commands
    results = Results(settings, catalog)
    stop = asyncio.Event()
    reader = asyncio.create_task(results.run(stop))
    try:
        await _send(producer, registry)
        await asyncio.sleep(3)  # the registry topics are separate: let them land before the credits
        await _send(producer, openings)
        await results.wait_for([row[3] for row in openings], timeout=300)
        print(f"bench: {len(openings)} account credits settled", flush=True)

        # Throughput: stop the service, queue the whole burst, start it, time the drain from its
        # first result to its last, so the load generator's own cost stays out of the figure.
        stop_processes(service)
        memory = redis_memory.Footprint(used_before=await redis_memory.used_memory(redis))
        await _send(producer, burst)
        ids = list(dict.fromkeys(row[3] for row in burst))
        raw = await _raw_loop(settings, len(burst), credentials, workdir)
        service = start_workers()
        components = {"settlement service": [process.pid for process in service],
                      **{f"{name} server": [pid] for name, pid in local.items()}}
        await results.wait_for(ids, timeout=300, any_of=True)
        before = _cpu_snapshot(components)
        await results.wait_for(ids, timeout=900)
        after = _cpu_snapshot(components)
        first, last = min(results.arrived[i] for i in ids), max(results.arrived[i] for i in ids)
        if last <= first:
            raise SystemExit(f"bench: all {len(burst)} results arrived in one read: too few to time; "
                             "use more --claims")
        cpu = {name: after[name] - before[name] for name in after}
        figures = {"drain": {"events": len(burst), "seconds": last - first, "per_second": len(burst) / (last - first),
                             "cpu_seconds": cpu}}
        print(f"bench: throughput: {len(burst)} queued claims settled in {last - first:.2f} s = "
              f"{len(burst) / (last - first):,.0f} claims/s end to end (first result to last)", flush=True)
        service_cpu = cpu["settlement service"]
        if service_cpu >= 0.1:  # /proc counts in clock ticks (10 ms): below this the ratio is noise
            per_claim = (f"; the service spent {service_cpu / len(burst) * 1e6:.0f} µs of CPU a claim, "
                         f"{len(burst) / service_cpu:,.0f} claims per CPU-second")
        else:
            per_claim = "; too little service CPU to give a figure per claim: use more --claims"
        print("bench: CPU during the drain: " + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in cpu.items())
              + per_claim, flush=True)
        figures["raw_loop"] = raw
        _compare(raw, figures["drain"], service_cpu)

        # Latency: claims sent at a steady rate, the downstream services consuming.
        figures["paced"] = await paced_phase(settings, producer, results, paced, rate, policy_dir=policy_dir,
                                             workdir=workdir, credentials=credentials, components=components,
                                             cpu_snapshot=_cpu_snapshot, downstream=downstream)
        print(f"bench: results by kind: {results.kinds}")
        memory.used_after = await redis_memory.used_memory(redis)
        figures["redis"] = (await redis_memory.measure(redis, settings.key_prefix, memory)).to_dict()
        print(f"bench: Redis: {memory.summary()}", flush=True)
        return figures
    finally:
        await redis.aclose()
        stop.set()
        await reader
        await producer.stop()
        stop_processes(service)


async def _raw_loop(settings: Settings, claims: int, credentials: dict | None, workdir: Path) -> dict:
    """gongji.local.raw_loop over the queued burst, as the settlement principal, in a group of its own,
    right before the service drains the same burst: its figures (claims, seconds, cpu_seconds)."""
    out_topic = f"{settings.topic_prefix}bench-raw-loop"
    await ensure_topics(settings, [out_topic], settings.partitions)
    env = {**os.environ, **for_role(as_principal(settings, principal("settlement")), credentials, "settlement").to_env()}
    command = [sys.executable, "-m", "gongji.local.raw_loop", str(claims), f"{settings.key_prefix}-raw-loop", out_topic]
    with open(workdir / "raw-loop.log", "ab") as log:
        process = await asyncio.create_subprocess_exec(*command, env=env, stdout=subprocess.PIPE, stderr=log)
        output, _ = await asyncio.wait_for(process.communicate(), 900)
    if process.returncode:
        raise LocalError(f"bench: the raw loop exited with status {process.returncode}; see {workdir / 'raw-loop.log'}")
    raw = json.loads(output.decode().strip().splitlines()[-1])
    if raw["seconds"] <= 0:
        raise SystemExit("bench: the raw loop took the burst in one batch: too few to time; use more --claims")
    raw["per_second"] = raw["claims"] / raw["seconds"]
    cpu = f", {raw['cpu_seconds'] / raw['claims'] * 1e6:.0f} µs of CPU a claim" if raw["cpu_seconds"] >= 0.1 else ""
    print(f"bench: raw loop (decode, one Lua call a claim, produce, commit): {raw['claims']} claims in "
          f"{raw['seconds']:.2f} s = {raw['per_second']:,.0f} claims/s{cpu}", flush=True)
    return raw


def _compare(raw: dict, drain: dict, service_cpu: float) -> None:
    """The ratio issue 12 sets a target for: settlement's rate over the raw loop's (≥ 0.8 wanted)."""
    ratio = drain["per_second"] / raw["per_second"]
    drain["raw_loop_ratio"] = ratio
    cpu = ""
    if service_cpu >= 0.1 and raw["cpu_seconds"] >= 0.1:
        cpu = (f"; CPU a claim: raw loop {raw['cpu_seconds'] / raw['claims'] * 1e6:.0f} µs, "
               f"settlement {service_cpu / drain['events'] * 1e6:.0f} µs")
    print(f"bench: settlement / raw loop = {drain['per_second']:,.0f} / {raw['per_second']:,.0f} claims/s "
          f"= {ratio:.2f} (target ≥ 0.80){cpu}", flush=True)


async def _bench_downstream(settings: Settings, policy_dir: Path | None, workdir: Path,
                            credentials: dict | None = None) -> dict:
    """Each downstream consumer alone on the settlements topic as it stands: results/s and CPU."""
    from gongji.services import SERVICES

    figures = {}
    async with kafka.group_progress(settings, settings.topics.settlements) as progress:
        for name in [s for s in DOWNSTREAM if s in SERVICES and (s != "ledger" or settings.database_url)]:
            # A group of its own, and for the ledger a schema of its own: it books everything anew.
            mine = settings.model_copy(update={f"{name}_group": f"{settings.key_prefix}-bench-{name}",
                                               "ledger_schema": f"{settings.ledger_schema}_bench"})
            group = mine.kafka_group(name)
            with open(workdir / f"{name}.log", "ab") as log:
                (process,) = start_service(name, mine, policy_dir, log, credentials=credentials)
            try:
                first = last = None
                start_cpu = 0.0
                deadline = time.monotonic() + 900
                while time.monotonic() < deadline:
                    done, end = await progress(group)
                    now = time.monotonic()
                    if first is None and done > 0:
                        first, start_cpu = (now, done), _cpu_seconds(process.pid)
                    if first is not None and done >= end and end > 0:
                        last = (now, done)
                        break
                    if process.poll() is not None:
                        raise LocalError(f"bench: {name} exited with status {process.returncode}; see {log.name}")
                    await asyncio.sleep(0.1)
                cpu = _cpu_seconds(process.pid) - start_cpu
            finally:
                stop_processes([process])
            if first is None or last is None:
                print(f"bench: {name}: did not drain within 900 s", flush=True)
                continue
            count, seconds = last[1] - first[1], last[0] - first[0]
            if count <= 0 or seconds <= 0:
                print(f"bench: {name}: drained in one commit: too few results to time; use more --claims", flush=True)
                continue
            figures[name] = {"results": count, "seconds": seconds, "per_second": count / seconds, "cpu_seconds": cpu}
            per_result = f", {cpu / count * 1e6:.0f} µs of CPU a result" if cpu >= 0.1 else ""
            print(f"bench: downstream {name}: {count:,} results in {seconds:.2f} s = {count / seconds:,.0f} results/s "
                  f"(first commit to last){per_result}", flush=True)
    return figures
