"""`gongji bench --gateway`: signed 2207 requests over HTTP to the gateway, as deployed, on one machine.

The settlement service and the gateway run as their own processes (`gongji run settlement`,
`gongji run gateway`), each on its own credentials. This process registers synthetic persons (and
their accounts' opening credits), then sends one 2207 request per claim of the synthetic traffic, many
persons (so every partition of `claims`), at a steady rate with at most `concurrency` requests in
flight, and times each from just before its send to its answer read. It prints the rate achieved,
the latency's p50, p90, p99 and max, each kind of answer (settled, pending, refused by err_code),
and the CPU each process spent while the requests ran.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
import time
import uuid
from collections import Counter
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import aiohttp
from aiokafka import TopicPartition
from aiokafka.partitioner import murmur2

from gongji.common import kafka
from gongji.common.avro import SchemaCatalog
from gongji.common.signing import signer
from gongji.contract.wire import ID_HEADER, SHANGHAI, header
from gongji.gateway.callers import Caller, load_callers
from gongji.gateway.national import LOCAL_TIME, PENDING, claim_id
from gongji.local import gateway_callers
from gongji.local.bench import Results, _cpu_snapshot, _percentile, _send
from gongji.local.errors import LocalError
from gongji.local.launch import encode, isolated, prepare_topics, servers, start_service, stop_processes
from gongji.local.processes import free_port
from gongji.local.synthetic import Traffic

WARM_UP = 20  # sequential requests before the timed ones: connections opened, code paths warm


def request_2207(claim: dict, msgid: str) -> dict:
    """The national 2207 envelope of a synthetic claim: local times, money as strings."""
    when = datetime.fromisoformat(claim["setl_time"]).astimezone(SHANGHAI).strftime(LOCAL_TIME)
    feedetail = [{name: str(value) if isinstance(value, Decimal) else value for name, value in line.items()
                  if value is not None} for line in claim["fee_details"]]
    data = {"psn_no": claim["psn_no"], "mdtrt_id": claim["mdtrt_id"], "med_type": claim["med_type"],
            "insutype": claim["insutype"], "acct_used_flag": claim["acct_used_flag"], "setl_time": when,
            "feedetail": feedetail}
    for optional in ("dise_codg", "oprn_oprt_code"):
        if claim.get(optional):
            data[optional] = claim[optional]
    return {"infno": "2207", "msgid": msgid, "fixmedins_code": claim["fixmedins_code"], "inf_time": when,
            "input": {"data": data}}


def answer_kind(status: int, answer: dict) -> str:
    """How an answer is counted: "infcode 0", "pending", "infcode -1 <err_code>" or "HTTP <status>"."""
    if status != 200:
        return f"HTTP {status}"
    if answer.get("infcode") == 0:
        return "infcode 0"
    if answer.get("err_msg") == PENDING:
        return "pending"
    return f"infcode -1 {str(answer.get('err_msg', '')).split(':', 1)[0]}"


async def run_gateway_bench(requests: int, persons: int, rate: int = 500, concurrency: int = 100,
                            policy_dir: Path | None = None, workers: int = 1) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix="gongji-bench-"))
    tag = "g" + uuid.uuid4().hex[:6]
    stack, base = servers(workdir, key_prefix=tag)
    credentials = stack.credentials() if stack else None
    try:
        settings = isolated(base, tag)
        if settings.gateway_callers_file is None:  # servers of the environment: a caller of this run's own
            settings = settings.model_copy(update={"gateway_callers_file": gateway_callers.generate(workdir)})
        settings = settings.model_copy(update={"gateway_host": "127.0.0.1", "gateway_port": free_port()})
        local = {name: server["pid"] for name, server in stack.state()["servers"].items()} if stack else {}
        return await _bench(settings, requests, persons, rate, concurrency, policy_dir, workers, workdir, local,
                            credentials)
    finally:
        if stack:
            stack.stop()


async def _register(settings, traffic: Traffic, catalog: SchemaCatalog) -> None:
    """The persons, institutions and the accounts' opening credits, settled before any request."""
    key = signer(settings)
    producer = kafka.producer(settings)
    await producer.start()
    results = Results(settings, catalog)
    stop = asyncio.Event()
    reader = asyncio.create_task(results.run(stop))
    try:
        await _send(producer, encode(catalog, settings, traffic.registry(), key))
        await asyncio.sleep(3)  # the registry topics are separate: let them land before the credits (as bench)
        openings = encode(catalog, settings, traffic.openings(), key)
        await _send(producer, openings)
        await results.wait_for([row[3] for row in openings], timeout=300)
    finally:
        stop.set()
        await reader
        await producer.stop()


async def _ready(url: str, processes, log: Path, timeout: float = 120) -> None:
    """Until the gateway answers GET /openapi.json (its reply consumer positioned first)."""
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        while True:
            try:
                async with session.get(url + "openapi.json") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            if any(process.poll() is not None for process in processes):
                raise LocalError(f"bench: the gateway exited with status {processes[0].returncode}; see {log}")
            if time.monotonic() > deadline:
                raise LocalError(f"bench: the gateway did not answer within {timeout:.0f} s; see {log}")
            await asyncio.sleep(0.2)


async def _post(session, url: str, caller: Caller, body: bytes) -> tuple[float, str, float]:
    """(seconds from just before the send to the answer read, the answer's kind, when it was sent:
    wall-clock seconds, to set beside the Kafka timestamps)."""
    headers = {**caller.headers(int(time.time()), body), "Content-Type": "application/json"}
    sent, start = time.time(), time.perf_counter()
    async with session.post(url, data=body, headers=headers) as response:
        status, text = response.status, await response.text()
    seconds = time.perf_counter() - start
    try:
        answer = json.loads(text)
    except ValueError:
        answer = {}
    return seconds, answer_kind(status, answer if isinstance(answer, dict) else {}), sent


async def _drive(url: str, caller: Caller, bodies: list[tuple[str, bytes]], rate: int, concurrency: int) -> dict:
    """Each (claim id, body) sent at its turn (`rate` a second) once fewer than `concurrency` are in flight."""
    slots = asyncio.Semaphore(concurrency)
    timings: list[float] = []
    spans: dict[str, tuple[float, float]] = {}  # claim id: (sent, answered), wall clock
    kinds: Counter = Counter()
    held = 0  # requests that waited for a slot past their turn

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        for number in range(min(WARM_UP, len(bodies))):
            await _post(session, url, caller, bodies[number][1])
        timed = bodies[WARM_UP:]

        async def one(ident: str, body: bytes) -> None:
            try:
                seconds, kind, sent = await _post(session, url, caller, body)
                timings.append(seconds)
                kinds[kind] += 1
                spans[ident] = (sent, sent + seconds)
            finally:
                slots.release()

        tasks = []
        start = time.perf_counter()
        for number, (ident, body) in enumerate(timed):
            delay = start + number / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            if slots.locked():
                held += 1
            await slots.acquire()
            tasks.append(asyncio.create_task(one(ident, body)))
        await asyncio.gather(*tasks)
        seconds = time.perf_counter() - start
    return {"requests": len(timed), "seconds": seconds, "timings": timings, "kinds": kinds, "held": held,
            "spans": spans}


async def _bench(settings, requests, persons, rate, concurrency, policy_dir, workers, workdir, local,
                 credentials) -> dict:
    catalog = SchemaCatalog()
    await prepare_topics(settings)
    traffic = Traffic(persons=persons, seed=11, tag=settings.key_prefix)
    claims = [traffic.claim()[1] for _ in range(requests + WARM_UP)]
    requests_ = [request_2207(claim, f"{settings.key_prefix}-{n:09d}") for n, claim in enumerate(claims)]
    bodies = [(claim_id(r["fixmedins_code"], r["msgid"]), json.dumps(r).encode()) for r in requests_]
    spread = len({(murmur2(claim["psn_no"].encode()) & 0x7FFFFFFF) % settings.partitions for claim in claims})
    print(f"bench: gateway: {workers} settlement process(es), 1 gateway; registering {persons} persons ...",
          flush=True)
    log = open(workdir / "services.log", "ab")
    settlement = start_service("settlement", settings, policy_dir, log, workers, credentials=credentials)
    gateway: list = []
    try:
        await _register(settings, traffic, catalog)
        gateway = start_service("gateway", settings, policy_dir, log, credentials=credentials)
        url = f"http://{settings.gateway_host}:{settings.gateway_port}/"
        await _ready(url, gateway, workdir / "services.log")
        caller = load_callers(settings.gateway_callers_file).by_id[gateway_callers.KEY_ID]
        print(f"bench: gateway: {requests} signed 2207 requests at {rate} requests/s, at most {concurrency} in flight, "
              f"{len({c['psn_no'] for c in claims})} persons over {spread} of {settings.partitions} partitions "
              f"(after {WARM_UP} sequential to warm up) ...", flush=True)
        components = {"gateway": [p.pid for p in gateway], "settlement service": [p.pid for p in settlement],
                      **{f"{name} server": [pid] for name, pid in local.items()}}
        before, machine = _cpu_snapshot(components), _machine_busy()
        driven = await _drive(url, caller, bodies, rate, concurrency)
        after, machine = _cpu_snapshot(components), _machine_busy() - machine
        stamps = {topic: await _stamps(settings, topic, catalog)
                  for topic in (settings.topics.claims, settings.topics.settlements)}
    finally:
        stop_processes(gateway + settlement)
        log.close()
    figures = report(driven, rate, {name: after[name] - before[name] for name in after}, machine)
    figures["stages"] = stages(driven["spans"], stamps[settings.topics.claims], stamps[settings.topics.settlements])
    return figures


async def _stamps(settings, topic: str, catalog: SchemaCatalog) -> dict[str, float]:
    """Each id's first message on `topic` (its gongji-id header, else the claim_id of its record)
    and that message's timestamp (set by its producer as it sent it), in wall-clock seconds."""
    consumer = kafka.consumer(settings, None, fetch_max_wait_ms=20)
    await consumer.start()
    found: dict[str, float] = {}
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        while [p for p in partitions if await consumer.position(p) < ends[p]]:
            for messages in (await consumer.getmany(timeout_ms=200, max_records=5000)).values():
                for message in messages:
                    named = header(message.headers, ID_HEADER)
                    ident = named.decode() if named else catalog.decode(message.value)[1]["claim_id"]
                    found.setdefault(ident, message.timestamp / 1000)
    finally:
        await consumer.stop()
    return found


def stages(spans: dict[str, tuple[float, float]], claims: dict[str, float], results: dict[str, float]) -> dict:
    """Where each answered request's time went, by the Kafka timestamps: the gateway until its claim
    was sent, settlement until its result was sent, the gateway until the answer was read here."""
    rows = [(sent, claims[ident], results[ident], answered) for ident, (sent, answered) in spans.items()
            if ident in claims and ident in results]
    if not rows:
        return {}
    parts = {"gateway in (auth, map, Redis SET NX, sign)": [(c - s) * 1000 for s, c, _, _ in rows],
             "settlement (fetch, settle, durable, publish)": [(r - c) * 1000 for _, c, r, _ in rows],
             "gateway out (reply fetch, Redis SET, answer)": [(a - r) * 1000 for _, _, r, a in rows]}
    figures = {name: {"p50_ms": _percentile(values, 0.5), "p99_ms": _percentile(values, 0.99)}
               for name, values in parts.items()}
    print("bench: gateway time by stage (Kafka timestamps): " + "; ".join(
        f"{name} p50 {value['p50_ms']:.1f} ms, p99 {value['p99_ms']:.1f} ms" for name, value in figures.items()),
        flush=True)
    return figures


def _machine_busy() -> float:
    """CPU seconds the whole machine has been busy (all cores; Linux /proc/stat): others' work shows
    as the difference from this bench's own processes."""
    fields = [int(field) for field in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def report(driven: dict, rate: int, cpu: dict[str, float], machine: float) -> dict:
    """Print the figures in the bench's style; return them."""
    timings = [seconds * 1000 for seconds in driven["timings"]]
    done, seconds = len(timings), driven["seconds"]
    figures = {"requests": done, "rate": rate, "per_second": done / seconds, "held": driven["held"],
               **{f"p{q}_ms": _percentile(timings, q / 100) for q in (50, 90, 99)}, "max_ms": max(timings),
               "answers": dict(driven["kinds"]), "cpu_seconds": cpu}
    print(f"bench: gateway: {done} requests in {seconds:.2f} s = {figures['per_second']:,.0f} requests/s "
          f"(asked {rate}; {driven['held']} waited for a free slot)", flush=True)
    print(f"bench: gateway latency (send to answer): p50 {figures['p50_ms']:.1f} ms, p90 {figures['p90_ms']:.1f} ms, "
          f"p99 {figures['p99_ms']:.1f} ms, max {figures['max_ms']:.1f} ms", flush=True)
    print("bench: gateway answers: " + ", ".join(f"{kind}: {count}" for kind, count in
                                                 sorted(driven["kinds"].items(), key=lambda item: -item[1])),
          flush=True)
    print("bench: CPU during the requests: " + ", ".join(f"{name} {spent:.1f} s" for name, spent in cpu.items())
          + f"; the machine was busy {machine:.1f} CPU-s of {seconds * (os.cpu_count() or 1):.1f} "
          f"({max(machine - sum(cpu.values()), 0):.1f} not this bench's)", flush=True)
    figures["machine_cpu_seconds"] = machine
    return figures
