"""The journal on PostgreSQL: migrations (yoyo, plain SQL files beside this module), booking a batch
of entries in one transaction, and the queries behind `gongji ledger` and `gongji reconcile`.

Redelivery is harmless by construction: an entry's id is its settlement's setl_id (or credit_id),
the primary key; a batch inserts its entries with ON CONFLICT DO NOTHING and only the postings of
the entries it did insert. Balance is enforced by the database at commit (migrations/0001).
"""

from __future__ import annotations

import asyncio
import importlib.resources
import re
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from urllib.parse import quote, urlsplit, urlunsplit

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from gongji.common.money import to_fen
from gongji.common.observe import redacted
from gongji.contract.wire import SHANGHAI
from gongji.ledger.domain import Detail, Entry, LedgerError

if TYPE_CHECKING:
    from gongji.ledger.burden import BurdenRow
    from gongji.fraud_settings import FraudSettings

_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class LedgerStoreError(LedgerError, RuntimeError):
    """The database refused or is not reachable."""


def _check_schema(schema: str) -> None:
    if not _SCHEMA_NAME.fullmatch(schema):
        raise LedgerStoreError(f"ledger schema name {schema!r}: lower-case letters, digits and _ only")


def migrate(database_url: str, schema: str, writer: str | None = None, password: str | None = None) -> list[str]:
    """Create `schema` if need be and apply the migrations it lacks (yoyo, under its lock, so
    several ledger workers starting at once apply each migration once); then, with `writer`, grant
    that role what the service needs and nothing more (grants.sql). Returns the ids applied.

    A schema already up to date is only read (no lock, no DDL), so the service may start as the
    writer role once the owner has migrated; a writer that finds migrations to apply is told to
    run `gongji ledger migrate` as the owner."""
    from yoyo import get_backend, read_migrations

    _check_schema(schema)
    if writer is not None and not _SCHEMA_NAME.fullmatch(writer):
        raise LedgerStoreError(f"ledger writer role {writer!r}: lower-case letters, digits and _ only")
    with importlib.resources.as_file(importlib.resources.files("gongji.ledger").joinpath("migrations")) as folder:
        migrations = read_migrations(str(folder))
        with _connect_sync(database_url, password) as connection:
            missing = [m.id for m in migrations if m.id not in _applied(connection, schema)]
            if not missing and writer is None:
                return []
            try:
                connection.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
            except psycopg.errors.InsufficientPrivilege as error:
                raise LedgerStoreError(
                    f"ledger schema {schema} lacks migrations {', '.join(missing)}, and this role may not apply them "
                    f"({error.diag.message_primary}): run `gongji ledger migrate` as the owner "
                    "(GONGJI_LEDGER_MIGRATION_URL)") from None
        url = database_url.replace("postgresql://", "postgresql+psycopg://", 1).replace("postgres://", "postgresql+psycopg://", 1)
        url = _with_password(url, password)
        backend = get_backend(f"{url}{'&' if '?' in url else '?'}schema={schema}")
        with backend.lock():
            pending = backend.to_apply(migrations)
            backend.apply_migrations(pending)
    if writer is not None:
        grant(database_url, schema, writer, password)
    return [migration.id for migration in pending]


def grant(database_url: str, schema: str, writer: str, password: str | None = None) -> None:
    """grants.sql for `writer` on `schema`: what it held before is revoked first, so the grants are
    exactly these however often they run."""
    text = importlib.resources.files("gongji.ledger").joinpath("grants.sql").read_text(encoding="utf-8")
    statements = [part.strip() for part in re.sub(r"--[^\n]*", "", text).split(";") if part.strip()]
    with _connect_sync(database_url, password) as connection:
        if connection.info.user == writer:
            raise LedgerStoreError(f"the writer role {writer} is the role that owns the schema: give the service "
                                   "a role of its own (GONGJI_LEDGER_WRITER_ROLE)")
        with connection.transaction():
            for statement in statements:
                connection.execute(sql.SQL(statement).format(schema=sql.Identifier(schema), writer=sql.Identifier(writer)))


def _applied(connection: psycopg.Connection, schema: str) -> set[str]:
    table = f"{schema}._yoyo_migration"
    if connection.execute("SELECT to_regclass(%s)", (table,)).fetchone()[0] is None:
        return set()
    query = sql.SQL("SELECT migration_id FROM {}._yoyo_migration").format(sql.Identifier(schema))
    return {row[0] for row in connection.execute(query)}


def _connect_sync(database_url: str, password: str | None) -> psycopg.Connection:
    try:
        return psycopg.connect(database_url, autocommit=True, **_password(password))
    except psycopg.OperationalError as error:
        raise LedgerStoreError(refusal(database_url, error)) from None


def _with_password(url: str, password: str | None) -> str:
    """`url` with `password` in its user-info, unless it has one (yoyo takes a URL only)."""
    parts = urlsplit(url)
    if password is None or parts.password is not None:
        return url
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:{quote(password, safe='')}@{parts.netloc.rsplit('@', 1)[-1]}"))


def _password(password: str | None) -> dict[str, str]:
    return {} if password is None else {"password": password}


def refusal(database_url: str, error: Exception) -> str:
    """One line for a connection PostgreSQL (or libpq, checking its certificate) refused: the server,
    and the reason without the address libpq repeats; a reason over several lines (libpq's hint, one
    line per address tried) joined with "; "."""
    lines = [_LIBPQ_PREFIX.sub("", line).strip() for line in str(error).strip().splitlines()]
    reason = "; ".join(line for line in lines if line) or type(error).__name__
    return f"PostgreSQL at {redacted(database_url)} refused the connection: {reason}"


_LIBPQ_PREFIX = re.compile(r'connection failed: |connection to server at "[^"]*"(?: \([^)]*\))?, port \d+ failed: |FATAL:  ')

# Refusals that trying again does not change: the credentials; pg_hba.conf allowing no such connection
# (one without TLS, say); the server's certificate failing sslmode=verify-ca/verify-full (another CA,
# another name) or the server refusing the client's; TLS asked for with no CA or key file to do it with.
_LASTING = re.compile(
    r'password authentication failed|no password supplied|role "[^"]*" does not exist|no pg_hba\.conf entry'
    r"|certificate verify failed|does not match host name|server does not support SSL|SSL error: .*alert"
    r"|certificate file|private key")


def lasting_refusal(error: Exception) -> bool:
    """The server or libpq refused the connection for a reason waiting does not change."""
    return bool(_LASTING.search(str(error)))


# A batch travels as one array a column, in PostgreSQL's binary format (psycopg dumps a text array
# element by element in Python, quoting each), amounts in fen.
_BOOK = """
WITH new AS (
    INSERT INTO journal_entry (entry_id, event_type, source_id, orig_entry_id, psn_no, fixmedins_code, insu_admdvs,
                               mdtrtarea_admvs, setl_time, book_date, medfee_sumamt, fund_pay_sumamt, acct_pay,
                               psn_cash_pay, kafka_topic, kafka_partition, kafka_offset, inscp_scp_amt, psn_idet_type)
    SELECT e.entry_id, e.event_type, e.source_id, e.orig_entry_id, e.psn_no, e.fixmedins_code, e.insu_admdvs,
           e.mdtrtarea_admvs, e.setl_time, e.book_date, e.medfee_sumamt * 0.01, e.fund_pay_sumamt * 0.01,
           e.acct_pay * 0.01, e.psn_cash_pay * 0.01, e.kafka_topic, e.kafka_partition, e.kafka_offset,
           e.inscp_scp_amt * 0.01, e.psn_idet_type
    FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::text[], %s::text[], %s::text[], %s::text[],
                %s::timestamptz[], %s::date[], %s::numeric[], %s::numeric[], %s::numeric[], %s::numeric[], %s::text[],
                %s::int[], %s::bigint[], %s::numeric[], %s::text[])
         AS e(entry_id, event_type, source_id, orig_entry_id, psn_no, fixmedins_code, insu_admdvs, mdtrtarea_admvs,
              setl_time, book_date, medfee_sumamt, fund_pay_sumamt, acct_pay, psn_cash_pay, kafka_topic,
              kafka_partition, kafka_offset, inscp_scp_amt, psn_idet_type)
    ON CONFLICT (entry_id) DO NOTHING
    RETURNING entry_id
), lines AS (
    INSERT INTO posting (entry_id, line_no, account, debit, credit, book_date)
    SELECT p.entry_id, p.line_no, p.account, p.debit * 0.01, p.credit * 0.01, p.book_date
    FROM unnest(%s::text[], %s::int2[], %s::text[], %s::numeric[], %s::numeric[], %s::date[])
         AS p(entry_id, line_no, account, debit, credit, book_date)
    WHERE p.entry_id IN (SELECT entry_id FROM new)
    RETURNING 1
)
SELECT (SELECT count(*) FROM new), (SELECT count(*) FROM lines)
"""


def book_columns(entries: list[tuple[Entry, tuple[str, int, int] | None]]) -> list[list[Any]]:
    """_BOOK's parameters: a list a column, of the entries (the first of each entry_id) and of their
    postings, amounts in fen."""
    unique: dict[str, tuple[Entry, tuple[str, int, int] | None]] = {}
    for entry, origin in entries:
        unique.setdefault(entry.entry_id, (entry, origin))
    rows = [(e.entry_id, e.event_type, e.source_id, e.orig_entry_id, e.psn_no, e.fixmedins_code, e.insu_admdvs,
             e.mdtrtarea_admvs, e.setl_time, e.book_date, e.medfee_sumamt, e.fund_pay_sumamt, e.acct_pay,
             e.psn_cash_pay, *(origin or (None, None, None)), e.inscp_scp_amt, e.psn_idet_type)
            for e, origin in unique.values()]
    lines = [(entry.entry_id, number, posting.account, posting.debit, posting.credit, entry.book_date)
             for entry, _ in unique.values() for number, posting in enumerate(entry.postings, 1)]
    columns = [*map(list, zip(*rows)), *(map(list, zip(*lines)) if lines else ([] for _ in range(6)))]
    # psycopg refuses a NUL byte in a text it sends as text, not in binary, where PostgreSQL's refusal
    # would not name it: refused here as psycopg does (the accounts hold the entries' texts).
    if any("\0" in "".join(map(str, columns[column])) for column in _TEXTS):
        raise psycopg.DataError("PostgreSQL text fields cannot contain NUL (0x00) bytes")
    return columns


_TEXTS = (0, 1, 2, 3, 4, 5, 6, 7, 14, 18, 21)  # book_columns' texts: entry's, kafka_topic, psn_idet_type, account


@dataclass(frozen=True)
class Booked:
    entries: int  # new entries
    postings: int


class LedgerStore:
    """One connection, used by one task at a time (the service's batch loop, or a command). A
    connection the server dropped (a restart, a failover, an idle timeout) is replaced on the next
    call: the call that met the loss raises, and the service consumes that batch again."""

    def __init__(self, connection: psycopg.AsyncConnection, database_url: str, schema: str, password: str | None = None):
        self.connection = connection
        self.database_url = database_url
        self.schema = schema
        self._secret = password

    @staticmethod
    async def _open(database_url: str, schema: str, password: str | None = None) -> psycopg.AsyncConnection:
        return await psycopg.AsyncConnection.connect(database_url, options=f"-c search_path={schema}",
                                                     application_name="gongji-ledger", **_password(password))

    @classmethod
    async def connect(cls, database_url: str, schema: str, password: str | None = None) -> LedgerStore:
        """Connect (GONGJI_DATABASE_URL, libpq's sslmode, sslrootcert … in its query; `password` where
        the URL has none); credentials or a certificate refused are a LedgerStoreError of one line."""
        _check_schema(schema)
        try:
            return cls(await cls._open(database_url, schema, password), database_url, schema, password)
        except psycopg.OperationalError as error:
            if lasting_refusal(error):
                raise LedgerStoreError(refusal(database_url, error)) from None
            raise

    async def _connected(self) -> psycopg.AsyncConnection:
        if self.connection.closed or self.connection.broken:
            await self.connection.close()
            self.connection = await self._open(self.database_url, self.schema, self._secret)
        return self.connection

    async def close(self) -> None:
        await self.connection.close()

    async def ping(self) -> None:
        """Raises unless PostgreSQL answers `SELECT 1` (on a new connection if the last one broke)."""
        connection = await self._connected()
        try:
            await connection.execute("SELECT 1")
        finally:
            if not connection.broken:
                await connection.rollback()

    async def book(self, entries: list[tuple[Entry, tuple[str, int, int] | None]]) -> Booked:
        """Book entries (each with where it was read: topic, partition, offset) in one transaction;
        entries already booked are left as they are."""
        if not entries:
            return Booked(0, 0)
        columns = book_columns(entries)
        connection = await self._connected()
        async with connection.transaction():
            cursor = await connection.execute(_BOOK, columns, binary=True)
            new, postings = await cursor.fetchone()
        return Booked(new, postings)

    # ------------------------------------------------------------ queries

    async def _rows(self, query: str, params: list[Any] | tuple = ()) -> list[dict[str, Any]]:
        connection = await self._connected()
        try:
            async with connection.cursor(row_factory=dict_row) as cursor:
                await cursor.execute(query, params)
                return await cursor.fetchall()
        finally:
            if not connection.broken:  # end the read's transaction, failed or not: none held open
                await connection.rollback()

    async def balances(self, by: str, start: date | None = None, end: date | None = None,
                       prefix: str | None = None) -> list[dict[str, Any]]:
        """Debits, credits and balance (debit − credit) per account, or per account and day
        (`by` = "day"), over book dates [start, end]; accounts starting with `prefix` only."""
        where, params = ["TRUE"], []
        if start is not None:
            where.append("book_date >= %s")
            params.append(start)
        if end is not None:
            where.append("book_date <= %s")
            params.append(end)
        if prefix:
            where.append("account LIKE %s")
            params.append(prefix.replace("%", r"\%").replace("_", r"\_") + "%")
        day = "book_date, " if by == "day" else ""
        return await self._rows(
            f"SELECT {day}account, sum(debit) AS debit, sum(credit) AS credit, sum(debit) - sum(credit) AS balance, "
            f"count(*) AS postings FROM posting WHERE {' AND '.join(where)} GROUP BY {day}account ORDER BY {day}account",
            params)

    async def burden(self, start: date | None, end: date | None, fraud: FraudSettings) -> list[BurdenRow]:
        """gongji.ledger.burden's rows for book dates start..end (default: this year to date, +08:00)."""
        from gongji.ledger.burden import BURDEN_QUERY, query_params, rows_from

        end = end or datetime.now(SHANGHAI).date()
        start = start or end.replace(month=1, day=1)
        return rows_from(await self._rows(BURDEN_QUERY, query_params(start, end, fraud)), fraud)

    async def trial_balance(self) -> dict[str, Any]:
        """Per day and overall: debits against credits, and entries whose postings do not balance."""
        days = await self._rows("SELECT book_date, sum(debit) AS debit, sum(credit) AS credit, count(DISTINCT entry_id) "
                                "AS entries FROM posting GROUP BY book_date ORDER BY book_date")
        unbalanced = await self._rows(
            "SELECT e.entry_id, coalesce(sum(p.debit), 0) AS debit, coalesce(sum(p.credit), 0) AS credit "
            "FROM journal_entry e LEFT JOIN posting p USING (entry_id) GROUP BY e.entry_id "
            "HAVING coalesce(sum(p.debit), 0) <> coalesce(sum(p.credit), 0)")
        entries = (await self._rows("SELECT count(*) AS n FROM journal_entry"))[0]["n"]
        return {"days": days, "unbalanced": unbalanced, "entries": entries}

    async def centre_details(self, fixmedins_code: str, start: date, end: date, refunds: bool) -> list[Detail]:
        """The centre's settlements (or, with `refunds`, reversals) of one institution booked on
        [start, end], as 3202 detail lines."""
        rows = await self._rows(
            "SELECT entry_id, psn_no, setl_time, medfee_sumamt, fund_pay_sumamt, acct_pay FROM journal_entry "
            "WHERE fixmedins_code = %s AND event_type = %s AND book_date BETWEEN %s AND %s ORDER BY setl_time, entry_id",
            (fixmedins_code, "reversal" if refunds else "settlement", start, end))
        return [Detail(row["entry_id"], to_fen(row["medfee_sumamt"]), to_fen(row["fund_pay_sumamt"]),
                       to_fen(row["acct_pay"]), row["psn_no"], row["setl_time"].isoformat()) for row in rows]

    async def entry(self, entry_id: str) -> dict[str, Any] | None:
        rows = await self._rows("SELECT * FROM journal_entry WHERE entry_id = %s", (entry_id,))
        if not rows:
            return None
        rows[0]["postings"] = await self._rows(
            "SELECT line_no, account, debit, credit FROM posting WHERE entry_id = %s ORDER BY line_no", (entry_id,))
        return rows[0]

    async def counts(self) -> dict[str, int]:
        rows = await self._rows("SELECT event_type, count(*) AS n FROM journal_entry GROUP BY event_type")
        return {row["event_type"]: row["n"] for row in rows}


def decimal_text(value: Decimal | int) -> str:
    return f"{Decimal(value):,.2f}"


async def wait_for_database(database_url: str, timeout: float = 30.0, password: str | None = None) -> None:
    """Until PostgreSQL accepts a connection (a container starting beside us), or LedgerStoreError;
    at once when it refuses the credentials or TLS (waiting would not change them: lasting_refusal)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            connection = await psycopg.AsyncConnection.connect(database_url, connect_timeout=3, **_password(password))
            await connection.close()
            return
        except psycopg.OperationalError as error:
            if lasting_refusal(error):
                raise LedgerStoreError(refusal(database_url, error)) from None
            if asyncio.get_running_loop().time() > deadline:
                raise LedgerStoreError(f"PostgreSQL at {redacted(database_url)} did not answer: {error}") from error
            await asyncio.sleep(0.5)

