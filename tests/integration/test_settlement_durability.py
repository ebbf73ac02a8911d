"""Durable before visible, and state that knows what it has seen: a Redis of the test's own (with
AOF, as deployed) that is crashed, emptied and restarted under the settlement service, which must
notice, refuse, be rebuilt by `gongji settlement rebuild`, resume, and end exactly where an
uninterrupted replay of the same events ends."""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
from aiokafka import TopicPartition

from gongji.common import kafka
from gongji.common.redis import connect
from gongji.local.processes import die_with_parent, free_port
from gongji.local.servers import REDIS_PERSISTENCE, redis_server_binary
from gongji.settlement import policy
from gongji.settlement.codec import from_output, json_ready, to_event
from gongji.settlement.domain import PersonState
from gongji.settlement.settler import Settler
from gongji.settlement.policy import load_policy_book
from gongji.settlement.redis_store import RedisStore, SeenMarkers
from gongji.settlement.memory_store import MemoryStore
from gongji.local.synthetic import Traffic

from tests.health_probe import health
from tests.integration.support import CATALOG, acl_args, admin_credentials, as_service, service_credentials, figures, running_service, open_accounts, produce, settings_for, wait_registered

BOOK = load_policy_book()


class OwnRedis:
    """A Redis-protocol server for one test, so it can be killed, emptied and restarted."""

    def __init__(self, workdir: Path, stack):
        self.workdir = workdir
        self.stack = stack  # its users and passwords (tests.integration.support.acl_args)
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, persistence: tuple[str, ...] = REDIS_PERSISTENCE) -> None:
        self.process = subprocess.Popen(
            [redis_server_binary(), "--port", str(self.port), "--bind", "127.0.0.1", *persistence,
             "--dir", str(self.workdir), "--logfile", str(self.workdir / "redis.log"),
             *acl_args(self.stack, self.workdir / "users.acl")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=die_with_parent(os.getpid()))
        client = redis.Redis(port=self.port, **admin_credentials(self.stack))
        deadline = time.monotonic() + 20
        while True:  # answering PING, and done loading its append-only file
            try:
                if client.ping() and not int(client.info("persistence").get("loading", 0)):
                    break
            except redis.RedisError:
                pass
            assert self.process.poll() is None and time.monotonic() < deadline, "redis did not start"
            time.sleep(0.05)
        client.close()

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.kill()


@pytest.fixture
def own_redis(tmp_path, stack):
    server = OwnRedis(tmp_path, stack)
    server.start()
    yield server
    server.stop()


async def replay_results(events) -> tuple[dict[str, list[dict]], MemoryStore]:
    """The reference, as `gongji replay` settles: the events in order, one at a time, on the
    in-memory store; per id its results in order."""
    store = MemoryStore()
    settler = Settler(store, BOOK)
    results: dict[str, list[dict]] = {}
    for kind, data in events:
        for output in await settler.handle([to_event(kind, data)]):
            _, wire = from_output(output)
            results.setdefault(wire.get("claim_id") or wire.get("credit_id"), []).append(json_ready(wire))
    return results, store


class Published:
    """The settlements topic read incrementally: every result per id, in publish order."""

    def __init__(self, settings):
        self.settings = settings
        self.by_id: dict[str, list[dict]] = {}
        self.count = 0

    async def __aenter__(self):
        self.consumer = kafka.consumer(self.settings, None)
        await self.consumer.start()
        topic = self.settings.topics.settlements
        deadline = time.monotonic() + 30
        while not self.consumer.partitions_for_topic(topic):
            assert time.monotonic() < deadline, f"{topic} never appeared"
            await self.consumer._client.force_metadata_update()
            await asyncio.sleep(0.1)
        self.consumer.assign([TopicPartition(topic, p) for p in sorted(self.consumer.partitions_for_topic(topic))])
        await self.consumer.seek_to_beginning()
        return self

    async def __aexit__(self, *exc):
        await self.consumer.stop()

    async def poll(self) -> None:
        for messages in (await self.consumer.getmany(timeout_ms=100)).values():
            for message in messages:
                _, data = CATALOG.decode(message.value)
                self.by_id.setdefault(data.get("claim_id") or data.get("credit_id"), []).append(json_ready(data))
                self.count += 1

    async def until(self, done, timeout: float = 60.0, what: str = "results") -> None:
        deadline = time.monotonic() + timeout
        while not done():
            assert time.monotonic() < deadline, f"timed out waiting for {what} ({self.count} read)"
            await self.poll()

    async def all_of(self, ids, timeout: float = 60.0) -> None:
        ids = set(ids)
        await self.until(lambda: ids <= set(self.by_id), timeout, f"{len(ids - set(self.by_id))} missing results")


async def committed_and_markers(settings, redis_url: str) -> tuple[dict, dict]:
    """The settlement group's committed offset per input partition, then Redis's markers."""
    topics = settings.topics
    partitions = [TopicPartition(topic, p) for topic in (topics.claims, topics.credits, topics.persons,
                                                         topics.institutions) for p in range(settings.partitions)]
    committed = {f"{tp.topic}:{tp.partition}": offset
                 for tp, offset in (await kafka.committed_offsets(settings, settings.settlement_group,
                                                                  partitions)).items()}
    client = connect(redis_url, **settings.redis_credentials())
    try:
        marks = await SeenMarkers(client, settings.key_prefix, settings.settlement_group).read(list(committed))
    finally:
        await client.aclose()
    return committed, marks


async def wait_all_committed(settings, redis_url: str, ends: dict[str, int], timeout: float = 60.0) -> None:
    """Until the group has committed every input partition up to `ends` (field → offset)."""
    deadline = time.monotonic() + timeout
    while True:
        committed, _ = await committed_and_markers(settings, redis_url)
        if all(committed.get(name, 0) >= end for name, end in ends.items()):
            return
        assert time.monotonic() < deadline, f"not committed: {committed} < {ends}"
        await asyncio.sleep(0.2)


async def input_ends(settings) -> dict[str, int]:
    topics = settings.topics
    reader = kafka.consumer(settings, None)
    await reader.start()
    try:
        partitions = [TopicPartition(topic, p) for topic in (topics.claims, topics.credits, topics.persons,
                                                             topics.institutions) for p in range(settings.partitions)]
        reader.assign(partitions)
        await reader.seek_to_beginning()
        await reader.getmany(timeout_ms=1000, max_records=1)
        return {f"{tp.topic}:{tp.partition}": reader.highwater(tp) or 0 for tp in partitions}
    finally:
        await reader.stop()


async def wait_health(ports, status: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while any(health(port)[0] != status for port in ports):
        assert time.monotonic() < deadline, f"/healthz never {status}: {[health(p) for p in ports]}"
        await asyncio.sleep(0.1)


def run_rebuild(settings, *options: str) -> subprocess.CompletedProcess:
    """`gongji [OPTIONS] settlement rebuild` as an operator runs it, with the service's environment."""
    return subprocess.run([sys.executable, "-m", "gongji.cli", *options, "settlement", "rebuild"],
                          env={**os.environ, **as_service(settings, "settlement").to_env()}, capture_output=True,
                          text=True, timeout=120)


def first_differences(published: dict[str, list[dict]], expected: dict[str, list[dict]]) -> dict:
    """Per id: missing, or the first published result not the reference's last, or a repeat unlike
    the first. Empty when every result is right."""
    wrong = {}
    for ident, results in expected.items():
        got = published.get(ident)
        if not got:
            wrong[ident] = "missing"
        elif got[0] != results[-1] or any(copy != got[0] for copy in got[1:]):
            wrong[ident] = {k: (got[0].get(k), results[-1].get(k)) for k in set(got[0]) | set(results[-1])
                            if got[0].get(k) != results[-1].get(k)} or "a repeat differs"
    return wrong


async def test_a_redis_that_lost_its_data_is_refused_rebuilt_and_resumed(stack, uniq, own_redis, caplog):
    """Redis restarted on an empty disk under a running service: the next batch is refused (one log
    line, /healthz 503, the refused-partitions metric), nothing is settled on the empty state, the
    rebuild restores it from Kafka (a claim refused UNKNOWN_PERSON before its person was registered
    stays refused in the state) and the service resumes by itself."""
    port = free_port()
    settings = settings_for(stack, uniq, metrics_port=port).model_copy(update={"redis_url": own_redis.url})
    traffic = Traffic(persons=20, seed=21, tag=uniq, family=0.0)
    late = Traffic(persons=1, seed=22, tag=uniq + "L", family=0.0)
    _, early_claim = late.claim()  # for a person not registered yet
    before = list(traffic.stream(200))
    after = list(traffic.stream(60))
    expected, reference = await replay_results(
        traffic.registry() + traffic.openings() + [("claim", early_claim)] + late.registry()
        + [("claim", early_claim)] + before + after)
    assert [r.get("err_code") for r in expected[early_claim["claim_id"]]] == ["UNKNOWN_PERSON", None]

    async with running_service(settings) as service, Published(settings) as published:
        await open_accounts(settings, traffic)
        await produce(settings, [("claim", early_claim)])
        await published.all_of([early_claim["claim_id"]])
        await produce(settings, late.registry())
        await wait_registered(settings, late)
        await produce(settings, [("claim", early_claim)] + before)
        await published.until(lambda: len(published.by_id.get(early_claim["claim_id"], [])) >= 2)
        await published.all_of(d["claim_id"] for _, d in before)
        await wait_all_committed(settings, own_redis.url, await input_ends(settings))
        assert health(port)[0] == 200

        own_redis.kill()  # and its disk with it: a failover to a replica that has nothing
        shutil.rmtree(own_redis.workdir / "appendonlydir")
        own_redis.start()
        await produce(settings, after)
        await wait_health([port], 503)
        assert health(port)[1]["refused_partitions"] > 0
        assert service.metrics.refusing() > 0
        refusals = [r.getMessage() for r in caplog.records if "Redis is behind Kafka" in r.getMessage()]
        assert len(refusals) == 1 and "gongji settlement rebuild" in refusals[0]
        assert not {d["claim_id"] for _, d in after} & set(published.by_id)

        done = await asyncio.to_thread(run_rebuild, settings)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "0 differ" in done.stdout and "markers written" in done.stdout
        await published.all_of(d["claim_id"] for _, d in after)
        await wait_health([port], 200)

    assert published.by_id[early_claim["claim_id"]][0]["err_code"] == "UNKNOWN_PERSON"
    published.by_id[early_claim["claim_id"]].pop(0)
    assert first_differences(published.by_id, expected) == {}
    client = connect(own_redis.url, **settings.redis_credentials())
    try:
        persons = [p["psn_no"] for p in traffic.persons + late.persons]
        states = (await RedisStore(client, settings.key_prefix).read(set(persons), set(), set())).states
    finally:
        await client.aclose()
    assert figures(states) == figures({psn: reference.states.get(psn, PersonState()) for psn in states})


async def test_a_redis_without_the_configured_durability_stops_start_up_in_one_line(stack, uniq, tmp_path):
    server = OwnRedis(tmp_path, stack)
    server.start(("--save", "", "--appendonly", "no"))
    try:
        settings = settings_for(stack, uniq).model_copy(update={"redis_url": server.url})
        env = {**os.environ, **as_service(settings, "settlement").to_env()}
        done = subprocess.run([sys.executable, "-m", "gongji.cli", "run", "settlement"], env=env,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 1
        assert "Traceback" not in done.stderr
        last = done.stderr.strip().splitlines()[-1]
        assert last.startswith("gongji: Redis at redis://127.0.0.1:") and "appendonly no" in last, done.stderr
        env["GONGJI_REDIS_DURABILITY"] = "replicas"
        done = subprocess.run([sys.executable, "-m", "gongji.cli", "run", "settlement"], env=env,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 1 and "waits for 1 replica(s), and a primary has 0" in done.stderr
    finally:
        server.stop()


async def test_chaos_workers_killed_redis_crashed_and_emptied_under_load(stack, uniq, own_redis, tmp_path):
    """Two `gongji run settlement` workers under load, SIGKILLed again and again; Redis SIGKILLed and
    restarted from its append-only file (nothing lost: its markers cover every committed offset);
    Redis emptied (FLUSHALL) (every worker refuses, `gongji settlement rebuild` restores, they
    resume). Then every result against an uninterrupted replay: the first per id right, every
    repeat identical, none missing; and the persons' figures in Redis as the replay's. Without
    family mutual aid: two workers racing on one holder's account are ordered only to the
    millisecond by the rebuild, which reports them as differences (settlement.rebuild)."""
    settings = settings_for(stack, uniq).model_copy(update={"redis_url": own_redis.url})
    traffic = Traffic(persons=300, seed=31, tag=uniq, family=0.0)
    setup = traffic.registry() + traffic.openings()
    chunks = [list(traffic.stream(300)) for _ in range(14)]
    claims = [event for chunk in chunks for event in chunk]
    expected, reference = await replay_results(setup + claims)
    rng = random.Random(31)
    ports = [free_port(), free_port()]
    env = {**os.environ, **as_service(settings, "settlement").to_env(), "GONGJI_BATCH_MAX_RECORDS": "200"}
    log = open(tmp_path / "workers.log", "ab")

    def start(index: int) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "gongji.cli", "run", "settlement"],
                                env={**env, "GONGJI_METRICS_PORT": str(ports[index])},
                                stdout=subprocess.DEVNULL, stderr=log)

    workers = [start(0), start(1)]
    kills = 0
    loads = iter(chunks)
    started = time.monotonic()
    try:
        async with Published(settings) as published:
            async def load(results: int = 100) -> None:
                """The next chunk sent, and `results` of it read: the moment is mid-stream."""
                target = published.count + results
                await produce(settings, next(loads))
                await published.until(lambda: published.count >= target, 60, "results of a chunk")

            async def load_and_kill(times: int) -> None:
                nonlocal kills
                for _ in range(times):  # kill -9 while results flow, not at a quiet moment
                    await load()
                    index = rng.randrange(2)
                    workers[index].send_signal(signal.SIGKILL)
                    workers[index].wait(10)
                    workers[index] = start(index)
                    kills += 1

            credit_ids = await open_accounts(settings, traffic, timeout=60)
            await load_and_kill(4)

            # Redis crashes under load and comes back from its append-only file.
            await load()
            own_redis.kill()
            own_redis.start()
            committed, marks = await committed_and_markers(settings, own_redis.url)
            # (A group commits offset 0 for a partition it was assigned but never consumed from, as
            # under repeated kills: nothing settled there, so no marker is due; the service agrees.)
            short = {name: (offset, marks[name]) for name, offset in committed.items()
                     if offset > 0 and (marks[name] is None or marks[name] < offset)}
            assert committed and not short, short
            await load_and_kill(2)

            # Redis is emptied under load: every worker refuses, the rebuild restores, they resume.
            await load()
            redis.Redis(port=own_redis.port, **admin_credentials(stack)).flushall()
            await produce(settings, next(loads))
            await wait_health(ports, 503)
            said = [line for line in (tmp_path / "workers.log").read_text().splitlines()
                    if "Redis is behind Kafka" in line]
            assert len(said) >= 2 and not any(p["psn_no"] in line for line in said for p in traffic.persons)
            done = await asyncio.to_thread(run_rebuild, settings)
            assert done.returncode == 0, done.stdout + done.stderr
            assert "0 differ" in done.stdout, done.stdout
            await wait_health(ports, 200)
            await load_and_kill(4)
            await produce(settings, next(loads))
            await published.all_of({d["claim_id"] for _, d in claims} | credit_ids, timeout=90)
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            worker.wait(30)
        log.close()

    wrong = first_differences(published.by_id, expected)
    repeats = sum(len(copies) - 1 for copies in published.by_id.values())
    print(f"chaos: {kills} worker kills, 1 Redis crash, 1 Redis emptied; {len(expected)} ids compared, "
          f"{len(wrong)} wrong, {repeats} identical repeats; {time.monotonic() - started:.0f} s\n{done.stdout}")
    assert wrong == {}
    client = connect(own_redis.url, **settings.redis_credentials())
    try:
        persons = [p["psn_no"] for p in traffic.persons]
        states = (await RedisStore(client, settings.key_prefix).read(set(persons), set(), set())).states
    finally:
        await client.aclose()
    assert figures(states) == figures({psn: reference.states.get(psn, PersonState()) for psn in states})


@pytest.mark.parametrize("where", ["redis", "redis-cluster"])
async def test_markers_move_forward_only_and_find_a_redis_that_lost_them(stack, uniq, request, where):
    """SeenMarkers on one server and on a three-primary cluster (a copy per primary, AOF on, a
    WAITAOF on each): fresh partitions need no marker, a batch must start at or below its marker,
    markers never go back except for the rebuild, and a primary that lost its copy makes the
    partition unknown."""
    from gongji.common.redis import Durability

    url = stack.redis_url if where == "redis" else request.getfixturevalue("redis_cluster")
    client = connect(url, cluster=where != "redis", **service_credentials(stack, "settlement"))
    markers = SeenMarkers(client, uniq, "group", Durability("aof"))
    try:
        assert await markers.seal({"claims:0": (-1, 10), "claims:1": (-1, 5)}) == []
        assert await markers.read(["claims:0", "claims:1", "claims:2"]) == {"claims:0": 10, "claims:1": 5,
                                                                            "claims:2": None}
        assert await markers.seal({"claims:0": (7, 12)}) == []  # a redelivered batch, then further
        assert await markers.seal({"claims:0": (3, 8)}) == []  # a zombie behind: the marker stays
        assert (await markers.read(["claims:0"]))["claims:0"] == 12
        # A batch starting past the marker, or with none: Redis lost what came before; nothing moves.
        assert await markers.seal({"claims:0": (12, 20), "claims:1": (6, 9), "claims:2": (0, 4)}) == \
            ["claims:1", "claims:2"]
        assert await markers.read(["claims:0", "claims:1"]) == {"claims:0": 12, "claims:1": 5}
        assert await markers.seal({"claims:0": (-2, 3)}) == []  # the rebuild sets what it restored
        assert (await markers.read(["claims:0"]))["claims:0"] == 3
        nodes = await markers.nodes()
        assert len(nodes) == (1 if where == "redis" else 3)
        last, key = nodes[-1]
        await last.delete(key)  # one primary lost its data
        assert (await markers.read(["claims:0"]))["claims:0"] is None
        assert await markers.seal({"claims:0": (3, 4)}) == ["claims:0"]
    finally:
        await markers.forget_nodes()
        await client.aclose()


async def test_a_redis_emptied_while_the_service_was_down_is_refused_on_assignment(stack, uniq, own_redis, caplog):
    """No input waiting: the check on assignment alone finds the emptied Redis."""
    port = free_port()
    settings = settings_for(stack, uniq, metrics_port=port).model_copy(update={"redis_url": own_redis.url})
    traffic = Traffic(persons=10, seed=23, tag=uniq, family=0.0)
    claims = list(traffic.stream(40))
    expected, _ = await replay_results(traffic.registry() + traffic.openings() + claims)
    async with running_service(settings):
        await open_accounts(settings, traffic)
        await wait_all_committed(settings, own_redis.url, await input_ends(settings))
    redis.Redis(port=own_redis.port, **admin_credentials(stack)).flushall()
    async with running_service(settings), Published(settings) as published:
        await wait_health([port], 503)
        assert any("Redis is behind Kafka on assignment" in r.getMessage() for r in caplog.records)
        done = await asyncio.to_thread(run_rebuild, settings)
        assert done.returncode == 0 and "0 differ" in done.stdout, done.stdout + done.stderr
        await wait_health([port], 200)
        await produce(settings, claims)
        await published.all_of(expected)
        again = await asyncio.to_thread(run_rebuild, settings)  # Redis holds it all now: nothing to do
        assert again.returncode == 1 and again.stderr.strip().splitlines()[-1] == (
            "gongji: settlement rebuild: Redis holds the state up to every committed offset; nothing to rebuild "
            "(--force rebuilds anyway)")
    assert first_differences(published.by_id, expected) == {}


class FakeConsumer:
    """What the Gate asks of a consumer: committed offsets, assignment, pause, resume, seek."""

    def __init__(self, committed: dict):
        self._committed = committed
        self.paused: set = set()
        self.sought: dict = {}

    async def committed(self, tp):
        return self._committed.get(tp)

    def assignment(self):
        return set(self._committed)

    def pause(self, *tps):
        self.paused.update(tps)

    def resume(self, *tps):
        self.paused.difference_update(tps)

    def seek(self, tp, offset):
        self.sought[tp] = offset


async def test_the_gate_on_assignment_tells_never_settled_from_lost(stack, uniq, redis_client):
    """A partition the group committed at 0 (it was empty) with no marker was never settled; one
    committed past 0 without a marker was, and Redis lost it: every partition is refused, and
    resumed once the markers are back."""
    from gongji.common.observe import Metrics
    from gongji.settlement.seen import Gate

    empty, settled = TopicPartition("claims", 0), TopicPartition("accounts.credits", 0)
    client = connect(stack.redis_url, **service_credentials(stack, "settlement"))
    try:
        markers = SeenMarkers(client, uniq, "group")
        gate = Gate(markers, Metrics("settlement"))
        consumer = FakeConsumer({empty: 0, settled: None})
        await gate.bind(consumer).on_partitions_assigned({empty, settled})
        assert not gate.refusing and gate.fresh == {empty, settled}

        consumer = FakeConsumer({empty: 0, settled: 7})
        await gate.bind(consumer).on_partitions_assigned({empty, settled})
        assert gate.needed == {settled: 7} and consumer.paused == {empty, settled}
        assert gate.metrics.refusing() == 1
        await markers.seal({"accounts.credits:0": (-2, 7)})
        stop = asyncio.Event()
        watching = asyncio.create_task(gate.watch(stop))
        deadline = time.monotonic() + 10
        while consumer.paused:
            assert time.monotonic() < deadline, "the gate never resumed"
            await asyncio.sleep(0.05)
        stop.set()
        await watching
        assert gate.metrics.refusing() == 0
    finally:
        await client.aclose()


async def test_the_gateways_questions_need_no_marker_and_are_sought_back_with_a_refused_batch(stack, uniq):
    """Questions (topic inquiries) change no state, so a rebuild writes no marker for them: a committed
    offset there without a marker is not a loss; a batch of them moves no marker; and a batch refused
    because Redis lost the claims' state seeks its questions back too."""
    from types import SimpleNamespace

    from gongji.common.observe import Metrics
    from gongji.settlement.seen import Gate

    claims, asked = TopicPartition("claims", 0), TopicPartition("inquiries", 0)
    client = connect(stack.redis_url, **service_credentials(stack, "settlement"))
    try:
        markers = SeenMarkers(client, uniq, "group")
        gate = Gate(markers, Metrics("settlement"), unmarked=frozenset({"inquiries"}))
        consumer = FakeConsumer({claims: 0, asked: 9})
        await gate.bind(consumer).on_partitions_assigned({claims, asked})
        assert not gate.refusing and not consumer.paused
        questions = [SimpleNamespace(topic="inquiries", partition=0, offset=offset) for offset in (9, 10)]
        assert await gate.admit(questions) == questions
        await gate.seal(questions)
        assert (await markers.read(["inquiries:0"]))["inquiries:0"] is None
        consumer = FakeConsumer({claims: 4, asked: 11})  # claims settled up to 4, and Redis has no marker
        await gate.bind(consumer).on_partitions_assigned({claims, asked})
        batch = [SimpleNamespace(topic="claims", partition=0, offset=4), *questions]
        assert await gate.admit(batch) == [] and consumer.paused == {claims, asked}
        assert consumer.sought == {claims: 4, asked: 9} and gate.needed == {claims: 4}
    finally:
        await client.aclose()


async def test_a_rebuild_that_does_not_reproduce_the_published_results_says_so_and_writes_no_marker(
        stack, uniq, own_redis, tmp_path):
    """Rebuilt under another policy (a deductible changed since): the differing claims are listed,
    the exit status is 1 and the markers stay unwritten, so the service keeps refusing; rebuilt as
    published, it resumes."""
    settings = settings_for(stack, uniq).model_copy(update={"redis_url": own_redis.url})
    traffic = Traffic(persons=10, seed=24, tag=uniq, family=0.0)
    claims = [traffic.claim() for _ in range(30)]
    policies = tmp_path / "policies"
    shutil.copytree(Path(policy.__file__).parent / "policies", policies)
    erenhot = policies / "152501.toml"
    erenhot.write_text(erenhot.read_text().replace('annual_deductible = "1000.00"', 'annual_deductible = "10.00"', 1))
    async with running_service(settings), Published(settings) as published:
        await open_accounts(settings, traffic)
        await produce(settings, claims)
        await published.all_of(d["claim_id"] for _, d in claims)
        await wait_all_committed(settings, own_redis.url, await input_ends(settings))
    redis.Redis(port=own_redis.port, **admin_credentials(stack)).flushall()

    changed = await asyncio.to_thread(run_rebuild, settings, "--policies", str(policies))
    assert changed.returncode == 1, changed.stdout + changed.stderr
    differing = [line for line in changed.stdout.splitlines() if line.startswith("  differs: ")]
    assert differing and all(line.split()[1].rstrip(":") in {d["claim_id"] for _, d in claims} for line in differing)
    assert "markers NOT written" in changed.stdout
    _, marks = await committed_and_markers(settings, own_redis.url)
    assert set(marks.values()) == {None}

    done = await asyncio.to_thread(run_rebuild, settings)
    assert done.returncode == 0 and "0 differ" in done.stdout, done.stdout + done.stderr
    committed, marks = await committed_and_markers(settings, own_redis.url)
    assert marks == committed
