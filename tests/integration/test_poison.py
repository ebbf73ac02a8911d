"""No message can stop a service (issue 8): every consumer, against the real broker, Redis and
PostgreSQL, meets inputs that raise inside it (each exception class a careless or hostile writer can
trip) and answers each with one dead letter naming itself, while everything else goes through; an
outage of a server the test started is retried, turns /healthz 503, and loses nothing."""

from __future__ import annotations

import asyncio
import decimal
import json
import urllib.error
import urllib.request
from decimal import Decimal

import psycopg
import pytest
from dashboard_records import settlement
from support import CATALOG, collect, running, send_raw, settings_for

from gongji.common.avro import decimal_bytes
from gongji.ledger.service import LedgerService
from gongji.ledger.store import LedgerStore, migrate


def loose(name: str, record: dict) -> bytes:
    """`record` encoded as a careless writer would: decimals past the schema's precision too (the
    reader does not check it; fastavro's writer would refuse)."""
    def unscaled(value):
        if isinstance(value, Decimal):
            return decimal_bytes(int(value.scaleb(2)))
        if isinstance(value, list):
            return [unscaled(item) for item in value]
        if isinstance(value, dict):
            return {key: unscaled(item) for key, item in value.items()}
        return value
    return CATALOG.encode_unscaled(name, unscaled(record))


async def send_result(settings, record: dict, name: str = "Settlement", kind: bytes = b"settlement") -> None:
    await send_raw(settings, settings.topics.settlements, loose(name, record), record["psn_no"].encode(),
                   headers=[("gongji-type", kind), ("gongji-id", record["claim_id"].encode())])


def health(port: int) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


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
@pytest.fixture
def ledger_settings(stack, uniq):
    if not stack.database_url:
        pytest.fail("the stack fixture has no PostgreSQL (set GONGJI_DATABASE_URL with the other servers)")
    return settings_for(stack, uniq, database_url=stack.database_url, ledger_group=f"{uniq}-ledger",
                        ledger_schema=uniq)


def booked_ids(settings) -> set[str]:
    with psycopg.connect(settings.database_url, options=f"-c search_path={settings.ledger_schema}") as db:
        return {row[0] for row in db.execute("SELECT entry_id FROM journal_entry")}


async def test_the_ledger_dead_letters_a_nul_byte_and_an_amount_past_numeric_16_2_and_books_the_rest(
        ledger_settings, uniq):
    """Reproduces issue 8 §3: PostgreSQL refuses text with NUL and numeric(16,2) above 10^14 yuan;
    the ledger used to retry that batch for ever."""
    settings = ledger_settings
    await asyncio.to_thread(migrate, settings.database_url, settings.ledger_schema)
    before = settlement(f"{uniq}-A")
    nul_psn = settlement(f"{uniq}-\x00B")
    nul_inst = settlement(f"{uniq}-C", inst="H\x001")
    huge = settlement(f"{uniq}-D", hifp="100000000000000.00")  # 10^14 yuan: past numeric(16,2)
    after = settlement(f"{uniq}-E")
    for record in (before, nul_psn, nul_inst, huge, after):
        await send_result(settings, record)
    store = await LedgerStore.connect(settings.database_url, settings.ledger_schema)
    try:
        async with running(LedgerService(settings, CATALOG, store)):
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
