"""No message can stop a service (issue 8): every consumer, against the real broker, Redis and
PostgreSQL, meets inputs that raise inside it (each exception class a careless or hostile writer can
trip) and answers each with one dead letter naming itself, while everything else goes through; an
outage of a server the test started is retried, turns /healthz 503, and loses nothing."""

from __future__ import annotations

import asyncio
import decimal
from decimal import Decimal

import psycopg
from tests.dashboard_records import settlement
from tests.health_probe import health
from tests.integration.support import (
    CATALOG, acl_args, admin_credentials, as_service, collect, ledger_store, loose, running, send_raw, settings_for,
)

from gongji.common.observe import redacted
from gongji.common.redis import client_for
from gongji.ledger.service import LedgerService
from gongji.ledger.store import LedgerStore


async def send_result(settings, record: dict, name: str = "Settlement", kind: bytes = b"settlement") -> None:
    await send_raw(settings, settings.topics.settlements, loose(name, record), record["psn_no"].encode(),
                   headers=[("gongji-type", kind), ("gongji-id", record["claim_id"].encode())])


async def until(check, what: str, timeout: float = 60.0):
    """Wait on a positive marker: `check()` (sync or async) returning something true."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


# ---------------------------------------------------------------------- the ledger


def booked_ids(settings) -> set[str]:
    with psycopg.connect(settings.database_url, password=settings.database_password_value(),
                         options=f"-c search_path={settings.ledger_schema}") as db:
        return {row[0] for row in db.execute("SELECT entry_id FROM journal_entry")}


async def test_the_ledger_dead_letters_a_nul_byte_and_an_amount_past_numeric_16_2_and_books_the_rest(
        ledger_settings, uniq):
    """Reproduces issue 8 §3: PostgreSQL refuses text with NUL and numeric(16,2) above 10^14 yuan;
    the ledger used to retry that batch for ever."""
    settings = ledger_settings
    store = await ledger_store(settings)
    before = settlement(f"{uniq}-A")
    nul_psn = settlement(f"{uniq}-\x00B")
    nul_inst = settlement(f"{uniq}-C", inst="H\x001")
    huge = settlement(f"{uniq}-D", hifp="100000000000000.00")  # 10^14 yuan: past numeric(16,2)
    after = settlement(f"{uniq}-E")
    for record in (before, nul_psn, nul_inst, huge, after):
        await send_result(settings, record)
    try:
        async with running(LedgerService(as_service(settings, "ledger"), CATALOG, store)):
            letters = await collect(settings, settings.topics.dead_letters, lambda rs: len(rs) >= 3)
            await until(lambda: {before["setl_id"], after["setl_id"]} <= booked_ids(settings), "the good ones booked")
    finally:
        await store.close()
    reasons = {data["original"]: data for _, data, _ in letters}
    assert set(reasons) == {loose("Settlement", r) for r in (nul_psn, nul_inst, huge)}
    assert all(letter["service"] == "ledger" for letter in reasons.values())
    assert all(dict(message.headers)["gongji-service"] == b"ledger" for _, _, message in letters)
    assert "NUL" in reasons[loose("Settlement", nul_psn)]["reason"]
    assert "NUL" in reasons[loose("Settlement", nul_inst)]["reason"]
    assert "numeric" in reasons[loose("Settlement", huge)]["reason"]
    assert booked_ids(settings) == {before["setl_id"], after["setl_id"]}


# ---------------------------------------------------------------------- every exception class
FAULTS = [decimal.InvalidOperation([decimal.ConversionSyntax]), OverflowError("int too large to convert"),
          psycopg.DataError("PostgreSQL text fields cannot contain NUL (0x00) bytes"),
          UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"),
          RecursionError("maximum recursion depth exceeded"), KeyError("fee_details")]


def faulty(real, faults: dict[str, BaseException], ident):
    """`real`, except that it raises faults[ident(args)] for the ids in `faults`: the test-only
    injection point, a function the service calls on each message's content."""
    def wrapper(*args, **kwargs):
        error = faults.get(ident(*args, **kwargs))
        if error is not None:
            raise error
        return real(*args, **kwargs)
    return wrapper


def assert_letters(letters, service: str, faults: dict[str, BaseException], originals: dict[str, bytes]) -> None:
    """One dead letter per poisoned message, naming the service (field and header) and the exception."""
    mine = [(data, message) for _, data, message in letters if data["service"] == service]
    assert len(mine) == len(faults), [data["reason"] for data, _ in mine]
    by_original = {data["original"]: data for data, _ in mine}
    for ident, error in faults.items():
        letter = by_original[originals[ident]]
        assert type(error).__name__ in letter["reason"], letter["reason"]
    assert all(dict(message.headers)["gongji-service"] == service.encode() for _, message in mine)


async def test_the_ledger_dead_letters_every_exception_class_and_books_the_rest(ledger_settings, uniq, monkeypatch):
    from gongji.ledger import service as ledger_service

    settings = ledger_settings.model_copy(update={"batch_max_records": 50})
    store = await ledger_store(settings)
    records = [settlement(f"{uniq}-{i}") for i in range(40)]
    faults = {records[i]["setl_id"]: error for i, error in zip((0, 5, 6, 20, 33, 39), FAULTS)}
    monkeypatch.setattr(ledger_service, "entry_for",
                        faulty(ledger_service.entry_for, faults, lambda kind, result: result["setl_id"]))
    for record in records:
        await send_result(settings, record)
    try:
        async with running(LedgerService(as_service(settings, "ledger"), CATALOG, store)):
            letters = await collect(settings, settings.topics.dead_letters, lambda rs: len(rs) >= len(faults))
            good = {r["setl_id"] for r in records} - set(faults)
            await until(lambda: good <= booked_ids(settings), "the good results booked")
    finally:
        await store.close()
    assert booked_ids(settings) == good
    assert_letters(letters, "ledger", faults, {r["setl_id"]: loose("Settlement", r) for r in records})


async def test_clearing_dead_letters_every_exception_class_and_counts_the_rest(stack, uniq, monkeypatch):
    from gongji.clearing import service as clearing_service
    from gongji.clearing.service import ClearingService

    settings = settings_for(stack, uniq)
    records = [settlement(f"{uniq}-{i}", treated="150102") for i in range(30)]
    faults = {records[i]["setl_id"]: error for i, error in zip((1, 2, 12, 13, 25, 29), FAULTS)}
    monkeypatch.setattr(clearing_service, "contribution",
                        faulty(clearing_service.contribution, faults, lambda result: result["setl_id"]))
    for record in records:
        await send_result(settings, record)
    own = as_service(settings, "clearing")
    client = client_for(own)
    try:
        service = ClearingService(own, CATALOG, client)
        async with running(service):
            letters = await collect(settings, settings.topics.dead_letters, lambda rs: len(rs) >= len(faults))
            await until(lambda: service.counted["seen"] >= len(records) - len(faults), "the good results counted")
        positions = await service.store.positions("2023-03")
    finally:
        await client.aclose()
    assert service.counted["new"] == len(records) - len(faults)
    assert sum(p["settlements"] for p in positions.values()) == len(records) - len(faults)
    assert_letters(letters, "clearing", faults, {r["setl_id"]: loose("Settlement", r) for r in records})


async def test_settlement_dead_letters_every_exception_class_and_settles_every_later_claim(stack, uniq, monkeypatch):
    """Issue 8 §2: a claim whose fee line has 40 digits raised InvalidOperation while decoding, and
    settlement retried that batch for ever. Now that one, and one of each class injected, is
    answered by its dead letter (or a rejection), and every other claim settles."""
    from gongji.settlement import service as settlement_service
    from gongji.settlement.policy import load_policy_book
    from gongji.local.synthetic import Traffic
    from tests.integration.support import by_claim, produce, wait_registered

    settings = settings_for(stack, uniq, batch_max_records=100)
    traffic = Traffic(persons=6, seed=81, tag=uniq, family=0.0)
    claims = [traffic.claim()[1] for _ in range(30)]
    faults = {claims[i]["claim_id"]: error for i, error in zip((0, 3, 4, 17, 28, 29), FAULTS)}
    monkeypatch.setattr(settlement_service, "to_event",
                        faulty(settlement_service.to_event, faults, lambda kind, data, *bounds: data.get("claim_id")))
    _, forty = traffic.claim()
    forty["fee_details"][0]["pric"] = Decimal(10 ** 39)  # 40 digits
    _, later = traffic.claim()
    own = as_service(settings, "settlement")
    client = client_for(own)
    try:
        async with running(settlement_service.SettlementService(own, CATALOG, load_policy_book(), client)):
            await produce(settings, traffic.registry())
            await wait_registered(settings, traffic)
            await send_raw(settings, settings.topics.claims, loose("Claim", forty), forty["psn_no"].encode())
            await produce(settings, [("claim", claim) for claim in claims + [later]])
            good = {claim["claim_id"] for claim in claims + [later]} - set(faults)
            results = await collect(settings, settings.topics.settlements,
                                    lambda rs: good | {forty["claim_id"]} <= set(by_claim(rs)))
            letters = await collect(settings, settings.topics.dead_letters, lambda rs: len(rs) >= len(faults))
    finally:
        await client.aclose()
    answered = by_claim(results)
    assert not set(faults) & set(answered)
    assert "setl_id" in answered[later["claim_id"]][0]
    # The 40-digit price is refused at the edge now: its INVALID_CLAIM rejection answers it, alone.
    assert [(r["err_code"], "pric" in r["err_msg"]) for r in answered[forty["claim_id"]]] == [("INVALID_CLAIM", True)]
    assert not [d for _, d, _ in letters if d["original"] == loose("Claim", forty)]
    assert_letters(letters, "settlement", faults,
                   {c["claim_id"]: CATALOG.encode("Claim", c) for c in claims})
    # As one at a time: every result what a one-by-one run without the refused claims gives, and
    # each person's results in the order of their claims.
    from gongji.settlement.codec import from_output, json_ready, to_event
    from gongji.settlement.settler import Settler
    from gongji.settlement.memory_store import MemoryStore

    reference, expected = Settler(MemoryStore(), load_policy_book()), {}
    for kind, data in traffic.registry() + [("claim", c) for c in claims + [later] if c["claim_id"] not in faults]:
        for output in await reference.handle([to_event(kind, data)]):
            expected[from_output(output)[1].get("claim_id")] = json_ready(from_output(output)[1])
    assert all(json_ready(copy) == expected[ident] for ident, copies in answered.items() for copy in copies
               if ident != forty["claim_id"])
    order = {c["claim_id"]: n for n, c in enumerate(claims + [later])}
    for person in {c["psn_no"] for c in claims}:
        seen = [order[d["claim_id"]] for _, d, _ in results if d.get("psn_no") == person and d.get("claim_id") in order]
        assert seen == sorted(seen), person


# ---------------------------------------------------------------------- an outage
class OwnRedis:
    """A Redis-protocol server this test starts, stops and starts again on the same port and data
    (AOF fsync always: a stop loses nothing)."""

    def __init__(self, workdir, stack):
        from gongji.local.processes import free_port

        self.workdir = workdir
        self.stack = stack  # its users and passwords (tests.integration.support.acl_args)
        self.port = free_port()
        self.process = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        import os
        import subprocess
        import time

        import redis

        from gongji.local.processes import die_with_parent
        from gongji.local.servers import redis_server_binary

        self.process = subprocess.Popen(
            [redis_server_binary(), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "yes", "--appendfsync", "always", "--dir", str(self.workdir),
             "--logfile", str(self.workdir / "redis.log"), *acl_args(self.stack, self.workdir / "users.acl")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=die_with_parent(os.getpid()))
        node = redis.Redis(host="127.0.0.1", port=self.port, **admin_credentials(self.stack))
        deadline = time.monotonic() + 20
        while True:
            try:
                node.ping()
                return
            except redis.ConnectionError:
                assert self.process.poll() is None and time.monotonic() < deadline, "redis did not start"
                time.sleep(0.05)

    def stop(self) -> None:
        self.process.kill()
        self.process.wait(10)


async def test_an_outage_of_redis_is_retried_turns_health_503_and_loses_nothing(stack, uniq, tmp_path, caplog):
    from gongji.local.processes import free_port
    from gongji.settlement.codec import from_output, json_ready, to_event
    from gongji.settlement.settler import Settler
    from gongji.settlement.policy import load_policy_book
    from gongji.settlement.service import SettlementService
    from gongji.settlement.memory_store import MemoryStore
    from gongji.local.synthetic import Traffic
    from tests.integration.support import by_claim, produce, wait_registered

    book = load_policy_book()
    server = OwnRedis(tmp_path, stack)
    server.start()
    port = free_port()
    settings = settings_for(stack, uniq, metrics_port=port, stall_seconds=1.5, retry_initial_seconds=0.1,
                            retry_max_seconds=0.5).model_copy(update={"redis_url": server.url})
    traffic = Traffic(persons=30, seed=82, tag=uniq, family=0.0)  # family aid across batches: issue 8 §1
    before, during = list(traffic.stream(150)), list(traffic.stream(150))
    own = as_service(settings, "settlement")
    client = client_for(own)
    try:
        service = SettlementService(own, CATALOG, book, client)
        async with running(service):
            await produce(settings, traffic.registry())
            await wait_registered(settings, traffic)
            await produce(settings, traffic.openings() + before)
            first = {d.get("claim_id") or d.get("credit_id") for _, d in traffic.openings() + before}
            await collect(settings, settings.topics.settlements, lambda rs: first <= set(by_claim(rs)))
            assert (await asyncio.to_thread(health, port))[0] == 200
            server.stop()
            await produce(settings, during)
            status, facts = await until(lambda: (lambda h: h if h[0] == 503 else None)(health(port)),
                                        "/healthz 503 during the outage")
            assert facts["seconds_failing"] >= 1.5 and service.metrics.retries() > 0
            server.start()
            everything = first | {d["claim_id"] for _, d in during}
            records = await collect(settings, settings.topics.settlements,
                                    lambda rs: everything <= set(by_claim(rs)))
            await until(lambda: health(port)[0] == 200, "/healthz 200 after the outage")
    finally:
        await client.aclose()
        server.stop()
    assert service.stats.dead_letters == 0 and service.metrics.dead_letters._value.get() == 0
    # The operator is told once which server is away, where, and the setting; then summaries, no tracebacks.
    said = [r.getMessage() for r in caplog.records if r.name == "gongji.reachable"]
    told = [line for line in said if "does not answer" in line]
    assert len(told) == 1 and told[0].startswith(f"settlement: Redis at {redacted(server.url)} does not answer ("), said
    assert "is GONGJI_REDIS_URL right?" in told[0] and said[-1].startswith("settlement: working again after "), said
    assert not [r for r in caplog.records if r.exc_info and r.name.startswith("gongji")]
    # Every result as one uninterrupted run computes it, none lost, copies identical.
    reference = Settler(MemoryStore(), book)
    expected = {}
    for kind, data in traffic.registry() + traffic.openings() + before + during:
        for output in await reference.handle([to_event(kind, data)]):
            _, wire = from_output(output)
            expected[wire.get("claim_id") or wire.get("credit_id")] = json_ready(wire)
    got = by_claim(records)
    assert set(got) == set(expected)
    wrong = {ident: {k: (a.get(k), expected[ident].get(k)) for a in map(json_ready, copies)
                     for k in set(a) | set(expected[ident]) if a.get(k) != expected[ident].get(k)}
             for ident, copies in got.items()}
    assert not {ident: diff for ident, diff in wrong.items() if diff}


async def test_ledger_check_fails_while_the_ledger_is_behind_and_not_moving(ledger_settings, uniq):
    """Issue 8 §3: `gongji ledger check` exited 0 while the ledger was stuck. Results nobody books
    (no ledger running: behind, and not moving) fail it with the reason; once booked, it passes."""
    import os
    import subprocess
    import sys

    settings = ledger_settings
    store = await ledger_store(settings)
    records = [settlement(f"{uniq}-{i}") for i in range(5)]
    for record in records:
        await send_result(settings, record)
    env = {**os.environ, **settings.to_env(), "GONGJI_LEDGER_CHECK_SECONDS": "0.5"}

    def check() -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "gongji.cli", "ledger", "check"], env=env,
                              capture_output=True, text=True, timeout=120)

    stuck = await asyncio.to_thread(check)
    assert stuck.returncode == 1, stuck.stdout + stuck.stderr
    assert f"STUCK: the ledger's group {settings.ledger_group} is 5 results behind" in stuck.stdout
    assert "every entry and every day balances" in stuck.stdout  # the journal itself is fine
    try:
        async with running(LedgerService(as_service(settings, "ledger"), CATALOG, store)):
            await until(lambda: {r["setl_id"] for r in records} <= booked_ids(settings), "the results booked")
            fine = await asyncio.to_thread(check)
    finally:
        await store.close()
    assert fine.returncode == 0, fine.stdout + fine.stderr
    assert "the ledger is keeping up with the settlements" in fine.stdout


async def test_fraud_agents_dead_letter_every_exception_class_and_keep_their_group_moving(stack, uniq, monkeypatch):
    """A faust agent that raises dies (faust restarts it, but the batch's events are never acked
    and the group's offsets stop). Faults while reading, in a rule, and in what the batch does
    after its rules, each end as the event's dead letter; the group commits to the end."""
    from tests.integration.test_fraud_service import at, consumed, running as fraud_running, send, settlement as visit

    from gongji.common.kafka import group_progress
    from gongji.common.topic_admin import ensure_topics
    from gongji.local.processes import free_port
    from gongji.fraud import domain, rules
    from gongji.fraud.service import FraudService

    settings = settings_for(stack, uniq, fraud_group=f"{uniq}-fraud")
    await ensure_topics(settings, [settings.topics.settlements, settings.topics.claims],
                        settings.partitions)
    events = [visit(f"{uniq}c{i}", f"{uniq}P{i}", f"{uniq}H1", at(6, 8, i)) for i in range(26)]
    ids = [data["claim_id"] for _, data in events]
    reading = dict(zip(ids[0:3], FAULTS[0:3]))
    ruling = dict(zip(ids[10:12], FAULTS[3:5]))
    after = {ids[20]: FAULTS[5]}
    monkeypatch.setattr(domain, "visit_from_wire",
                        faulty(domain.visit_from_wire, reading, lambda record: record["claim_id"]))
    monkeypatch.setattr(rules, "on_visit", faulty(rules.on_visit, ruling, lambda config, staged, e: e.claim_id))
    real_forward = FraudService._forward

    async def forward(self, activities):
        for activity in activities:
            if activity.claim_id in after:
                raise after[activity.claim_id]
        return await real_forward(self, activities)

    monkeypatch.setattr(FraudService, "_forward", forward)
    faults = {**reading, **ruling, **after}
    port = free_port()
    service = FraudService(settings.model_copy(update={"metrics_port": port}), CATALOG)
    async with fraud_running(service):
        await send(settings, events)
        letters = await collect(settings, settings.topics.dead_letters, lambda rs: len(rs) >= len(faults))
        await consumed(service, len(events) - len(after))
        async with group_progress(settings, settings.topics.settlements) as progress:
            async def committed_to_the_end():
                return (await progress(service.group)) == (len(events), len(events))
            await until(committed_to_the_end, "the fraud group's offsets at the end of settlements")
        status, facts = await asyncio.to_thread(health, port)
    assert status == 200, facts
    originals = {data["claim_id"]: CATALOG.encode("Settlement", data) for _, data in events}
    assert_letters(letters, "fraud", faults, originals)


async def test_the_dashboard_counts_and_skips_what_it_cannot_fold_and_reads_on(stack, uniq, monkeypatch):
    """The dashboard reads without a group: a record it cannot read or fold, whatever it raises, is
    counted and skipped (no dead letter), and the records after it still show."""
    import time

    import tests.dashboard_records as dashboard_records
    from aiohttp import ClientSession

    from gongji.common.topic_admin import ensure_topics
    from gongji.dashboard.domain import Board
    from gongji.dashboard.service import start_dashboard

    from gongji.local.processes import free_port

    settings = settings_for(stack, uniq, dashboard_lookback_seconds=3600, dashboard_auth="off",
                            metrics_port=free_port())
    topics = settings.topics
    await ensure_topics(settings, [topics.settlements, topics.dead_letters,
                                                           topics.fraud_signals, topics.institutions], 1)
    records = [dashboard_records.settlement(f"{uniq}-{i}") for i in range(12)]
    faults = {records[i]["setl_id"]: error for i, error in zip((0, 2, 3, 7, 9, 11), FAULTS)}
    monkeypatch.setattr(Board, "result", faulty(Board.result, faults, lambda self, kind, data, at: data["setl_id"]))
    running_ = await start_dashboard(settings, port=0)
    try:
        await dashboard_records.send(settings, [("Settlement", r) for r in records])
        await send_raw(settings, topics.settlements, b"\xc3\x01 junk", b"K", headers=[("gongji-type", b"settlement")])
        await dashboard_records.send(settings, [("Settlement", dashboard_records.settlement(f"{uniq}-last"))])
        board, unreadable = running_.dashboard.board, running_.dashboard.undecodable
        await until(lambda: board.snapshot(time.time())["counts"]["settlements"] == len(records) - len(faults) + 1,
                    "the readable settlements, the last one included")
        assert unreadable.labels(topics.settlements)._value.get() == len(faults) + 1
        async with ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{settings.metrics_port}/healthz") as response:
                assert response.status == 200, await response.text()
    finally:
        await running_.stop()


async def test_one_bad_result_read_by_two_services_is_two_dead_letters_told_apart_by_service(ledger_settings):
    from gongji.clearing.service import ClearingService

    settings = ledger_settings
    store = await ledger_store(settings)
    await send_raw(settings, settings.topics.settlements, b"\xc3\x01 not a result", b"K",
                   headers=[("gongji-type", b"settlement"), ("gongji-id", b"junk")])
    clearing = as_service(settings, "clearing")
    client = client_for(clearing)
    try:
        async with running(LedgerService(as_service(settings, "ledger"), CATALOG, store),
                           ClearingService(clearing, CATALOG, client)):
            letters = await collect(settings, settings.topics.dead_letters, lambda rs: len(rs) >= 2)
    finally:
        await store.close()
        await client.aclose()
    assert sorted(dict(message.headers)["gongji-service"] for _, _, message in letters) == [b"clearing", b"ledger"]
    assert sorted(data["service"] for _, data, _ in letters) == ["clearing", "ledger"]
    # The same message: the dedupe key is service + topic + partition + offset.
    assert len({(data["topic"], data["partition"], data["offset"]) for _, data, _ in letters}) == 1


class OwnPostgres:
    """A PostgreSQL server this test starts, stops (fast shutdown) and starts again on the same port
    and data directory, from the local stack's own binaries."""

    def __init__(self, workdir):
        from gongji.local.credentials import write_secrets
        from gongji.local.stack import LocalStack

        self.local = LocalStack(workdir, postgres=True)
        self.local.workdir.mkdir(parents=True, exist_ok=True)
        self.local._secrets = write_secrets(self.local.workdir / "secrets")
        self.local._start_postgres()  # secured as the stack's: scram, the owner and writer roles
        self.server = self.local._servers["postgres"]

    def role(self, settings, role: str):
        """`settings` on this server as `role` (gongji.local.credentials: operator, ledger)."""
        from pathlib import Path

        own = self.local.credentials()[role]
        return settings.model_copy(update={"database_url": own["database_url"],
                                           "database_password_file": Path(own["database_password_file"])})

    def stop(self) -> None:
        import signal

        from gongji.local.processes import terminate

        terminate(self.server.pid, self.server.process, first=signal.SIGINT)

    def start(self) -> None:
        import time

        from gongji.local.servers import postgres_ready

        self.server.process = self.local._spawn(self.server)
        self.server.pid = self.server.process.pid
        deadline = time.monotonic() + 30
        from gongji.local.credentials import read_secret

        while not postgres_ready(self.server.port, read_secret(self.local._secrets["postgres"])):
            assert self.server.process.poll() is None and time.monotonic() < deadline, self.server.log_tail()
            time.sleep(0.1)

    def close(self) -> None:
        self.local.stop()


async def test_an_outage_of_postgresql_is_retried_turns_health_503_and_the_ledger_books_everything(stack, uniq, tmp_path):
    from gongji.local.processes import free_port

    server = await asyncio.to_thread(OwnPostgres, tmp_path / "pg")
    port = free_port()
    settings = server.role(settings_for(stack, uniq, ledger_group=f"{uniq}-ledger", ledger_schema=uniq,
                                        metrics_port=port, stall_seconds=1.5, retry_initial_seconds=0.1,
                                        retry_max_seconds=0.5), "operator")
    try:
        from gongji.local.launch import migrate_ledger

        await asyncio.to_thread(migrate_ledger, settings)
        before = [settlement(f"{uniq}-a{i}") for i in range(10)]
        during = [settlement(f"{uniq}-b{i}") for i in range(10)]
        ledger = server.role(settings, "ledger")
        store = await LedgerStore.connect(ledger.database_url, ledger.ledger_schema, ledger.database_password_value())
        service = LedgerService(ledger, CATALOG, store)
        try:
            async with running(service):
                for record in before:
                    await send_result(settings, record)
                await until(lambda: {r["setl_id"] for r in before} <= booked_ids(settings), "the first results booked")
                await asyncio.to_thread(server.stop)
                for record in during:
                    await send_result(settings, record)
                status, facts = await until(lambda: (lambda h: h if h[0] == 503 else None)(health(port)),
                                            "/healthz 503 while PostgreSQL is down")
                assert facts["seconds_failing"] >= 1.5 and service.metrics.retries() > 0
                await asyncio.to_thread(server.start)
                everything = {r["setl_id"] for r in before + during}
                await until(lambda: everything <= booked_ids(settings), "every result booked after the outage")
                await until(lambda: health(port)[0] == 200, "/healthz 200 after the outage")
        finally:
            await store.close()
        assert booked_ids(settings) == everything
        assert service.metrics.dead_letters._value.get() == 0
    finally:
        await asyncio.to_thread(server.close)


async def test_fraud_health_turns_503_when_its_agent_stalls_with_input_waiting(stack, uniq, monkeypatch):
    """faust keeps its timers and its fetcher running when an agent hangs; /healthz must not."""
    from tests.integration.test_fraud_service import at, running as fraud_running, send, settlement as visit

    from gongji.common.topic_admin import ensure_topics
    from gongji.local.processes import free_port
    from gongji.fraud.service import FraudService

    settings = settings_for(stack, uniq, fraud_group=f"{uniq}-fraud", stall_seconds=2.0)
    await ensure_topics(settings, [settings.topics.settlements, settings.topics.claims],
                        settings.partitions)
    hung, release = asyncio.Event(), asyncio.Event()

    async def hang(self, events):
        hung.set()
        await release.wait()  # a batch that does not end (a hung call, a deadlock) until the test is done

    port = free_port()
    service = FraudService(settings.model_copy(update={"metrics_port": port}), CATALOG)
    async with fraud_running(service):
        await until(lambda: health(port)[0] == 200, "/healthz 200 once started")
        monkeypatch.setattr(FraudService, "_person_batch", hang)
        await send(settings, [visit(f"{uniq}c{i}", f"{uniq}P{i}", f"{uniq}H1", at(6, 8, i)) for i in range(6)])
        await until(hung.is_set, "the agent to take the batch")
        status, facts = await until(
            lambda: (lambda h: h if h[0] == 503 and h[1]["seconds_in_batch"] >= 2.0 else None)(health(port)),
            "/healthz 503 while the batch hangs")
        release.set()
        assert not facts["healthy"]
