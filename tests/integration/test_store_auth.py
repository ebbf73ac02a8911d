"""Redis and PostgreSQL with credentials (issue 10): every client authenticated, each service its own
user or role with what it needs and nothing more, refusals in one line.

Against the local stack as it runs (its Valkey users, its PostgreSQL roles: tests.integration.secured
reads their passwords from the stack's files), and a valkey-server whose users are limited to one
key prefix, as in production (deploy/redis/users.acl.example)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import psycopg
import pytest
from pydantic import SecretStr
import redis.asyncio as aioredis
from redis.exceptions import AuthenticationError, NoPermissionError, ResponseError
from tests.integration.secured import secured_redis, stack_postgres, stack_redis
from tests.integration.support import CATALOG, collect, produce, running, settings_for, wait_registered

from gongji.clearing.domain import Contribution
from gongji.clearing.service import ClearingService
from gongji.clearing.store import ClearingStore
from gongji.common.redis import Durability, client_for, connect
from gongji.ledger.domain import Entry, Posting
from gongji.ledger.store import LedgerStore, LedgerStoreError, migrate
from gongji.local.store_users import LEDGER_OWNER, LEDGER_WRITER, REDIS_RULES, redis_user, sha256
from gongji.local.synthetic import Traffic
from gongji.settlement.policy import load_policy_book
from gongji.settlement.redis_store import RedisStore, SeenMarkers
from gongji.settlement.service import SettlementService

PREFIX = "sa"  # the ACL users' key prefix (their patterns name it)
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def redis_server(stack):
    """The local stack's Valkey, its users' passwords at hand."""
    if not stack.credentials:
        pytest.skip("servers named by the environment: their credentials are their own")
    return stack_redis(stack, PREFIX)


@pytest.fixture(scope="module")
def tight_redis(tmp_path_factory):
    """A valkey-server whose service users may only touch keys under PREFIX, as deployed."""
    yield from secured_redis(tmp_path_factory.mktemp("redis-acl"), PREFIX)


@pytest.fixture(scope="module")
def postgres_server(stack):
    """The local stack's PostgreSQL: scram-sha-256, and deploy/postgres/roles.sql's roles."""
    if not stack.credentials:
        pytest.skip("servers named by the environment: their credentials are their own")
    return stack_postgres(stack)


# ------------------------------------------------------------------ Redis
async def test_redis_refuses_a_client_without_credentials_or_with_a_wrong_password(redis_server):
    for url in (redis_server.bare_url, redis_server.url("settlement", password="not-the-password")):
        client = connect(url)
        with pytest.raises(AuthenticationError):
            await client.ping()
        await client.aclose()
    # The default user is off: naming it with any password is refused too.
    client = aioredis.Redis(port=redis_server.port, username="default", password="")
    with pytest.raises(AuthenticationError):
        await client.ping()
    await client.aclose()


async def test_settings_carry_the_credentials_beside_the_url_or_in_a_file(redis_server, tmp_path, monkeypatch):
    from gongji.settings import Settings

    secret = tmp_path / "password"
    secret.write_text(redis_server.credentials.redis["clearing"] + "\n")
    monkeypatch.setenv("GONGJI_REDIS_USERNAME", redis_user("clearing"))
    monkeypatch.setenv("GONGJI_REDIS_PASSWORD_FILE", str(secret))
    settings = Settings(redis_url=redis_server.bare_url)
    client = client_for(settings)
    try:
        assert await client.ping()
    finally:
        await client.aclose()
    # The secret never shows in the settings' printout; a child process gets it through to_env.
    monkeypatch.delenv("GONGJI_REDIS_PASSWORD_FILE")
    monkeypatch.setenv("GONGJI_REDIS_PASSWORD", redis_server.credentials.redis["clearing"])
    settings = Settings(redis_url=redis_server.bare_url)
    assert redis_server.credentials.redis["clearing"] not in repr(settings)
    env = settings.to_env()
    assert env["GONGJI_REDIS_PASSWORD"] == redis_server.credentials.redis["clearing"]


async def test_each_service_works_with_its_own_redis_user(stack, uniq, tight_redis):
    """The settlement and clearing services, each on its own ACL user limited to one key prefix,
    settle and count real traffic (the Lua scripts, the durability check and wait, the probe, the
    markers). On the local stack, every service test runs its services so."""
    redis_server = tight_redis
    settings = settings_for(stack, uniq, clearing_group=f"{uniq}-clearing").model_copy(
        update={"key_prefix": PREFIX, "redis_url": redis_server.bare_url})
    traffic = Traffic(persons=30, seed=7, tag=uniq, family=0.2)
    claims = list(traffic.stream(200, reversals=0.05))
    settlement_client = client_for(settings.model_copy(update={"redis_username": redis_user("settlement"), "redis_password":
                                                               SecretStr(redis_server.credentials.redis["settlement"])}))
    clearing_client = connect(redis_server.url("clearing"))
    try:
        settlement = SettlementService(settings, CATALOG, load_policy_book(), settlement_client)
        clearing = ClearingService(settings, CATALOG, clearing_client)
        async with running(settlement, clearing):
            await produce(settings, traffic.registry())
            await wait_registered(settings.model_copy(update={"redis_url": redis_server.url()}), traffic)
            await produce(settings, traffic.openings())
            await produce(settings, claims)
            ids = {d["claim_id"] for _, d in claims}
            records = await collect(settings, settings.topics.settlements,
                                    lambda rs: ids <= {d.get("claim_id") for _, d, _ in rs})
            settled = [d for name, d, _ in records if name == "Settlement"]
            assert len(settled) > 100
            cross = {d["setl_id"] for d in settled if d["insu_admdvs"] != d["mdtrtarea_admvs"]}
            while clearing.counted["seen"] < len(cross):
                await asyncio.sleep(0.1)
        months = await ClearingStore(clearing_client, PREFIX).months()
        assert months, "clearing counted nothing"
    finally:
        await settlement_client.aclose()
        await clearing_client.aclose()


async def test_a_service_given_another_services_user_is_refused_its_keys(redis_server, uniq):
    settlement = connect(redis_server.url("settlement"))
    clearing = connect(redis_server.url("clearing"))
    try:
        # Clearing's user cannot read or write a person's state, nor run settlement's scripts on it.
        with pytest.raises(NoPermissionError):
            await RedisStore(clearing, PREFIX).read([f"{uniq}-p"], [], ())
        with pytest.raises(NoPermissionError):
            await clearing.hset(f"{PREFIX}:{{{uniq}}}:state", "balc", "100000000")
        with pytest.raises(NoPermissionError):
            await SeenMarkers(clearing, PREFIX, "g").read(["claims:0"])
        # Settlement's user cannot touch clearing's positions, even through its own commands.
        item = Contribution("2023-03", "152501", "990100", f"{uniq}-s", {"medfee_sumamt": 100})
        with pytest.raises(NoPermissionError):
            await ClearingStore(settlement, PREFIX).apply([item])
        with pytest.raises(NoPermissionError):
            await settlement.hincrby(f"{PREFIX}:{{clr:2023-03:152501>990100}}:flow", "medfee_sumamt", 1)
        # Neither may use a command outside its list.
        for client in (settlement, clearing):
            with pytest.raises(NoPermissionError):
                await client.flushall()
            with pytest.raises(NoPermissionError):
                await client.execute_command("CONFIG", "SET", "appendonly", "no")
            with pytest.raises((NoPermissionError, ResponseError)):
                await client.eval("return redis.call('FLUSHALL')", 0)
        # Clearing's own work is allowed, and a Lua script's keys are checked against the patterns.
        assert await ClearingStore(clearing, PREFIX).apply([item]) == 1
        await Durability("aof").check(settlement)
        with pytest.raises(Exception, match="WAITAOF|INFO|permission"):
            await Durability("aof").check(clearing)
    finally:
        await settlement.aclose()
        await clearing.aclose()


async def test_users_limited_to_a_prefix_are_refused_another(tight_redis, uniq):
    """Production's ACL (one deployment's prefix in every pattern) refuses a key of another prefix,
    even with the service's own suffix; the local stack's users take any prefix."""
    settlement = connect(tight_redis.url("settlement"))
    try:
        await settlement.set(f"{PREFIX}:{{{uniq}}}:state", b"x")
        with pytest.raises(NoPermissionError):
            await settlement.set(f"other:{{{uniq}}}:state", b"x")
    finally:
        await settlement.aclose()


def assert_both_services_refused(env: dict[str, str]) -> None:
    """settlement and clearing, given a wrong password ("wrong-password"), each stop with one line
    that names the refusal and not the password."""
    for service in ("settlement", "clearing"):
        done = subprocess.run([sys.executable, "-m", "gongji", "run", service], env=env, capture_output=True,
                              text=True, timeout=60)
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 1 and len(lines) == 1, done.stderr
        assert "refused the credentials" in lines[0] and "wrong-password" not in done.stderr


def test_a_service_whose_redis_password_is_wrong_stops_with_one_line(redis_server):
    url = redis_server.url("settlement", password="wrong-password")
    env = {**os.environ, "GONGJI_REDIS_URL": url, "GONGJI_KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1",
           "GONGJI_KEY_PREFIX": PREFIX}
    assert_both_services_refused(env)


def test_the_deploy_acl_file_loads_into_valkey(tmp_path):
    """deploy/redis/users.acl.example, hashes filled in, is a file valkey-server accepts (a comment
    line would abort its start: an ACL file has user lines only)."""
    from tests.integration.secured import _start, _stop
    from gongji.local.processes import free_port
    from gongji.local.servers import Server, redis_ready, redis_server_binary

    text = (REPO / "deploy/redis/users.acl.example").read_text()
    for service in REDIS_RULES:
        text = text.replace(f"<sha256 of {redis_user(service)}'s password>", sha256(f"{service}-pw"))
    assert "<" not in text
    (tmp_path / "users.acl").write_text(text)
    server = Server("redis", redis_server_binary(), free_port(), tmp_path / "redis.log", acl_file=tmp_path / "users.acl")
    _start(server, tmp_path, lambda: redis_ready(server.port, redis_user("clearing"), "clearing-pw"))
    try:
        assert not redis_ready(server.port)  # default off
    finally:
        _stop(server)


# ------------------------------------------------------------------ PostgreSQL
def _entry(entry_id: str) -> Entry:
    return Entry(entry_id, "settlement", entry_id, "p1", date(2023, 3, 1),
                 (Posting("fund:310100:152501", 1000, 0), Posting("inst:H1:payable", 0, 1000)),
                 medfee_sumamt=1000, fund_pay_sumamt=1000)


@pytest.fixture(scope="module")
def ledger_schema(postgres_server):
    """A schema migrated by the owner, with the writer granted (`gongji ledger migrate`)."""
    owner = postgres_server.url(LEDGER_OWNER)
    applied = migrate(owner, "journal_sa", LEDGER_WRITER, postgres_server.credentials.ledger_owner)
    assert applied == ["0001.journal", "0002.guards", "0003.burden"]
    return "journal_sa"


async def test_the_writer_books_and_reads_and_can_change_nothing(postgres_server, ledger_schema):
    writer_url, password = postgres_server.url(LEDGER_WRITER), postgres_server.credentials.ledger_writer
    # The service starts as the writer: the schema is up to date, so migrate only reads.
    assert migrate(writer_url, ledger_schema, password=password) == []
    store = await LedgerStore.connect(writer_url, ledger_schema, password)
    try:
        booked = await store.book([(_entry("w-1"), None)])
        assert (booked.entries, booked.postings) == (1, 2)
        assert (await store.entry("w-1"))["medfee_sumamt"] == 10
    finally:
        await store.close()
    refused = [
        "UPDATE journal_entry SET medfee_sumamt = 0",
        "UPDATE posting SET debit = 0",
        "DELETE FROM journal_entry",
        "DELETE FROM posting",
        "TRUNCATE journal_entry CASCADE",
        "TRUNCATE posting",
        "ALTER TABLE journal_entry DISABLE TRIGGER journal_entry_append_only",
        "ALTER TABLE posting DISABLE TRIGGER ALL",
        "DROP TRIGGER journal_entry_no_truncate ON journal_entry",
        "CREATE OR REPLACE FUNCTION journal_is_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$",
        "SET session_replication_role = replica",
        "CREATE TABLE sneaky (x int)",
        "INSERT INTO _yoyo_migration (migration_hash, migration_id, applied_at_utc) VALUES ('x', 'x', now())",
    ]
    with psycopg.connect(writer_url, password=password, autocommit=True,
                         options=f"-c search_path={ledger_schema}") as connection:
        for statement in refused:  # by the grants, before any append-only trigger could refuse it
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied|must be owner"):
                connection.execute(statement)
        assert connection.execute("SELECT count(*) FROM journal_entry").fetchone()[0] == 1
    # The owner may do what the writer may not (the schema is its own): the separation is the roles'.
    with psycopg.connect(postgres_server.url(LEDGER_OWNER), password=postgres_server.credentials.ledger_owner,
                         autocommit=True, options=f"-c search_path={ledger_schema}") as connection:
        connection.execute("ALTER TABLE posting DISABLE TRIGGER posting_append_only")
        connection.execute("ALTER TABLE posting ENABLE TRIGGER posting_append_only")


def test_migrating_again_grants_exactly_the_same(postgres_server, ledger_schema):
    owner, password = postgres_server.url(LEDGER_OWNER), postgres_server.credentials.ledger_owner
    with psycopg.connect(owner, password=password, autocommit=True) as connection:  # a grant too many
        connection.execute(f"GRANT UPDATE, DELETE ON {ledger_schema}.posting TO {LEDGER_WRITER}")
    assert migrate(owner, ledger_schema, LEDGER_WRITER, password) == []
    with psycopg.connect(owner, password=password) as connection:
        grants = connection.execute(
            "SELECT table_name, privilege_type FROM information_schema.role_table_grants "
            "WHERE grantee = %s AND table_schema = %s ORDER BY 1, 2", (LEDGER_WRITER, ledger_schema)).fetchall()
    assert grants == [("_yoyo_migration", "SELECT"), ("journal_entry", "INSERT"), ("journal_entry", "SELECT"),
                      ("posting", "INSERT"), ("posting", "SELECT")]
    with pytest.raises(LedgerStoreError, match="role of its own"):
        migrate(owner, ledger_schema, LEDGER_OWNER, password)


def test_the_writer_cannot_migrate_and_says_who_must(postgres_server):
    with pytest.raises(LedgerStoreError, match="gongji ledger migrate` as the owner") as refused:
        migrate(postgres_server.url(LEDGER_WRITER), "journal_new", password=postgres_server.credentials.ledger_writer)
    assert "\n" not in str(refused.value)


def test_postgres_asks_every_connection_for_a_password(postgres_server):
    with psycopg.connect(f"postgresql://postgres@127.0.0.1:{postgres_server.port}/postgres",
                         password=postgres_server.credentials.postgres_superuser) as connection:
        rules = connection.execute("SELECT type, auth_method FROM pg_hba_file_rules").fetchall()
    assert rules and all(method == "scram-sha-256" for _, method in rules), rules
    for role in ("postgres", LEDGER_OWNER, LEDGER_WRITER):
        with pytest.raises(psycopg.OperationalError, match="no password supplied|password authentication failed"):
            psycopg.connect(postgres_server.url(role), connect_timeout=5).close()


async def test_a_wrong_password_is_one_clear_line(postgres_server, ledger_schema):
    url = postgres_server.url(LEDGER_WRITER, "wrong-password")
    with pytest.raises(LedgerStoreError) as refused:
        await LedgerStore.connect(url, ledger_schema)
    message = str(refused.value)
    assert "password authentication failed for user" in message and LEDGER_WRITER in message
    assert "wrong-password" not in message and "\n" not in message
    # The command line: one line on stderr, exit status 1, no traceback, for the service and a query.
    env = {**os.environ, "GONGJI_DATABASE_URL": url, "GONGJI_LEDGER_SCHEMA": ledger_schema,
           "GONGJI_KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1", "GONGJI_REDIS_URL": "redis://127.0.0.1:1/0"}
    for argv in (["run", "ledger"], ["ledger", "balances"]):
        done = subprocess.run([sys.executable, "-m", "gongji", *argv], env=env, capture_output=True, text=True,
                              timeout=60)
        assert done.returncode == 1, done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and "password authentication failed" in lines[0], done.stderr
        assert "wrong-password" not in done.stderr


def test_a_password_file_that_cannot_be_read_is_one_line(tmp_path):
    """A missing file, or one that cannot be read as a file (a directory: root reads any file),
    stops a command with one line naming the variable; it was a traceback from deep in a client."""
    base = {**os.environ, "GONGJI_KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1", "GONGJI_REDIS_URL": "redis://127.0.0.1:1/0",
            "GONGJI_DATABASE_URL": "postgresql://gongji_ledger@127.0.0.1:1/gongji"}
    for variable, path, reason in (("GONGJI_REDIS_PASSWORD_FILE", tmp_path / "missing", "No such file"),
                                   ("GONGJI_DATABASE_PASSWORD_FILE", tmp_path, "Is a directory")):
        for argv in (["run", "settlement"], ["run", "ledger"], ["ledger", "balances"]):
            done = subprocess.run([sys.executable, "-m", "gongji", *argv], env={**base, variable: str(path)},
                                  capture_output=True, text=True, timeout=60)
            lines = done.stderr.strip().splitlines()
            assert done.returncode == 1 and len(lines) == 1, (argv, done.stderr)
            assert lines[0] == f"gongji: {variable}: cannot read {path}: {reason}" + (
                " or directory" if reason == "No such file" else ""), lines


async def test_a_redis_cluster_gives_every_node_the_same_users(redis_cluster, stack, uniq):
    """The tests' cluster loads the stack's ACL file on each node: the cluster client works as a
    service's user (CLUSTER SLOTS, COMMAND and its own keys on every node) and is refused without
    a password and on the other service's keys, wherever their slot lives."""
    from tests.integration.support import service_credentials

    if not stack.credentials:
        pytest.skip("servers named by the environment: their credentials are their own")
    from redis.exceptions import RedisClusterException

    with pytest.raises(RedisClusterException, match="must be called with the client already authenticated"):
        await connect(redis_cluster, cluster=True).ping()  # the cluster client words NOAUTH so
    settlement = connect(redis_cluster, cluster=True, **service_credentials(stack, "settlement"))
    clearing = connect(redis_cluster, cluster=True, **service_credentials(stack, "clearing"))
    try:
        persons = [f"{uniq}-p{n}" for n in range(12)]  # spread over the three primaries' slots
        for psn in persons:
            await settlement.hset(f"{uniq}:{{{psn}}}:state", "balc", "0")
        assert len({settlement.keyslot(f"{uniq}:{{{psn}}}:state") // 5461 for psn in persons}) == 3
        for psn in persons:
            with pytest.raises(NoPermissionError):
                await clearing.hget(f"{uniq}:{{{psn}}}:state", "balc")
        item = Contribution("2023-03", "152501", "990100", f"{uniq}-s", {"medfee_sumamt": 100})
        assert await ClearingStore(clearing, uniq).apply([item]) == 1
        with pytest.raises(NoPermissionError):
            await ClearingStore(settlement, uniq).apply([item])
    finally:
        await settlement.aclose()
        await clearing.aclose()
    # A wrong password on a cluster stops a service with one line too.
    env = {**os.environ, "GONGJI_REDIS_URL": redis_cluster, "GONGJI_REDIS_CLUSTER": "true",
           "GONGJI_REDIS_USERNAME": redis_user("clearing"), "GONGJI_REDIS_PASSWORD": "wrong-password",
           "GONGJI_KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1", "GONGJI_KEY_PREFIX": uniq}
    assert_both_services_refused(env)
