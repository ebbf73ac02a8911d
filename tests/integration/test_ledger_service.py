"""The ledger service against the real broker, Redis and PostgreSQL (issue 4 §1): settlements in,
a balanced journal out that agrees with the settlement service's own account balances; redelivery,
resends, junk and a kill -9 in the middle booking nothing twice and losing nothing; and the
reconciliation command on the journal it wrote."""

from __future__ import annotations

import asyncio
import csv
import json
import os
import signal
import subprocess
import sys
from collections import defaultdict
from decimal import Decimal

import psycopg
import pytest
from tests.integration.support import (
    CATALOG, as_service, collect, ledger_store, migrated, open_accounts, produce, running, send_raw,
)

from gongji.common.burden import over_share
from gongji.common.money import to_fen
from gongji.common.redis import client_for
from gongji.ledger.store import LedgerStore
from gongji.ledger.service import LedgerService
from gongji.settlement.policy import load_policy_book
from gongji.settlement.redis_store import RedisStore
from gongji.settlement.service import SettlementService
from gongji.local.synthetic import Traffic

BOOKED = {"Settlement": "settlement", "ReversalResult": "reversal", "CreditResult": "credit"}




async def settle(settings, traffic, claims) -> list:
    """Run settlement over the traffic; returns every result record published (name, data, message)."""
    own = as_service(settings, "settlement")
    client = client_for(own)
    try:
        async with running(SettlementService(own, CATALOG, load_policy_book(), client)):
            credit_ids = await open_accounts(settings, traffic)
            await produce(settings, claims)
            ids = {d["claim_id"] for _, d in claims} | credit_ids
            return await collect(settings, settings.topics.settlements,
                                 lambda rs: ids <= {d.get("claim_id") or d.get("credit_id") for _, d, _ in rs})
    finally:
        await client.aclose()


def first_results(records) -> dict[str, tuple[str, dict]]:
    """Booked results by entry id, first copy (a resent claim's result is published again, identical)."""
    out = {}
    for name, data, _ in records:
        if name in BOOKED:
            out.setdefault(data.get("setl_id") or data["credit_id"], (name, data))
    return out


async def wait_booked(service: LedgerService, count: int, timeout: float = 60) -> None:
    async def until():
        while service.booked["seen"] < count:
            await asyncio.sleep(0.1)
    await asyncio.wait_for(until(), timeout)


def journal(settings) -> dict:
    with psycopg.connect(settings.database_url, password=settings.database_password_value(),
                         options=f"-c search_path={settings.ledger_schema}") as db:
        entries = db.execute("SELECT count(*) FROM journal_entry").fetchone()[0]
        postings = db.execute("SELECT count(*), sum(debit), sum(credit) FROM posting").fetchone()
        accounts = dict(db.execute("SELECT account, sum(debit) - sum(credit) FROM posting GROUP BY account").fetchall())
    return {"entries": entries, "postings": postings, "accounts": accounts}


async def test_the_journal_balances_and_agrees_with_the_settlements_and_accounts(ledger_settings, uniq):
    settings = ledger_settings
    traffic = Traffic(persons=60, seed=41, tag=uniq, family=0.2)
    claims = list(traffic.stream(600, reversals=0.06, resends=0.05))
    records = await settle(settings, traffic, claims)
    results = first_results(records)
    assert {name for name, _ in results.values()} == set(BOOKED), "traffic too thin: a kind of result is missing"

    store = await ledger_store(settings)
    try:
        service = LedgerService(as_service(settings, "ledger"), CATALOG, store)
        booked_results = sum(1 for name, _, _ in records if name in BOOKED)
        async with running(service):
            await wait_booked(service, booked_results)
        assert service.booked["new"] == len(results)
        trial = await store.trial_balance()
        posted = {side: service.metrics.registry.get_sample_value("gongji_ledger_posted_fen_total", {"side": side})
                  for side in ("debit", "credit")}
    finally:
        await store.close()
    assert trial["entries"] == len(results) and not trial["unbalanced"]
    assert all(day["debit"] == day["credit"] for day in trial["days"])
    # What the imbalance alert reads: equal, and at least the journal's (results sent twice count twice).
    assert posted["debit"] == posted["credit"] >= to_fen(sum(day["debit"] for day in trial["days"])) > 0

    book = journal(settings)
    # Each fund's net debit is what the settlements say it paid, net of reversals.
    paid = defaultdict(int)
    for name, data in results.values():
        if name != "CreditResult":
            for field, fund in (("hifp_pay", "310100"), ("maf_pay", "610100"), ("hifob_pay", "330100")):
                paid[f"fund:{fund}:{data['insu_admdvs']}"] += to_fen(data[field])
            paid[f"inst:{data['fixmedins_code']}:payable"] -= to_fen(data["fund_pay_sumamt"] + data["acct_pay"]
                                                                     + data["acct_mulaid_pay"])
    for account, fen in paid.items():
        assert to_fen(book["accounts"].get(account, Decimal(0))) == fen, account
    # Every personal account in the ledger holds what the settlement service's state says it holds.
    persons = {data["psn_no"] for _, data in results.values()}
    client = client_for(settings)
    try:
        snapshot = await RedisStore(client, settings.key_prefix).read(persons, set(), set())
    finally:
        await client.aclose()
    for psn in persons:
        assert -to_fen(book["accounts"].get(f"acct:{psn}", Decimal(0))) == snapshot.states[psn].balance, psn

    # gongji ledger burden: the share left to persons per region and category, as the results say it
    # (seed 003), with the persons over their region's threshold counted as the fraud signal counts them.
    fraud = {"GONGJI_FRAUD__OOP_SHARE_MIN_INSCOPE": "100.00", "GONGJI_FRAUD__OOP_SHARE_THRESHOLD": "0.45",
             "GONGJI_FRAUD__OOP_SHARE_THRESHOLD_BY_REGION": '{"990100": "0.30"}'}
    per_person: dict[tuple, list[int]] = defaultdict(lambda: [0, 0])
    for name, data in results.values():
        if name != "CreditResult":
            figures = per_person[(data["insu_admdvs"], data["psn_idet_type"] or "", data["psn_no"])]
            figures[0] += to_fen(data["inscp_scp_amt"])
            figures[1] += to_fen(data["fund_pay_sumamt"])
    expected: dict[tuple, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for (region, category, _), (inscope, fund) in per_person.items():
        row = expected[(region, category)]
        threshold = Decimal("0.30") if region == "990100" else Decimal("0.45")
        row[0] += inscope > 0
        row[1] += inscope
        row[2] += fund
        row[3] += over_share(inscope, fund, threshold, 10_000)
    assert any(category for _, category in expected) and any(row[3] for row in expected.values())
    done = subprocess.run([sys.executable, "-m", "gongji.cli", "ledger", "burden", "--from", "2000-01-01",
                           "--to", "2100-12-31", "--csv"], env={**os.environ, **settings.to_env(), **fraud},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    reported = {(r["insu_admdvs"], r["psn_idet_type"]): [int(r["persons"]), to_fen(Decimal(r["inscp_scp_amt"])),
                                                          to_fen(Decimal(r["fund_pay_sumamt"])), int(r["persons_over"])]
                for r in csv.DictReader(done.stdout.splitlines())}
    assert reported == dict(expected)


async def test_redelivery_resends_junk_and_a_kill_book_nothing_twice_and_lose_nothing(ledger_settings, uniq, tmp_path):
    settings = ledger_settings.model_copy(update={"batch_max_records": 40})
    traffic = Traffic(persons=80, seed=43, tag=uniq, family=0.1)
    records = await settle(settings, traffic, list(traffic.stream(1500, reversals=0.04, resends=0.04)))
    results = first_results(records)
    # Junk on the topic, without headers and labelled as a settlement: dead-lettered, and the
    # service goes on.
    await send_raw(settings, settings.topics.settlements, b"\xc3\x01not avro at all", b"P-junk")
    await send_raw(settings, settings.topics.settlements, b"\x00junk", b"P-junk",
                   headers=[("gongji-type", b"settlement"), ("gongji-id", b"junk")])

    env = {**os.environ, **migrated(settings).to_env(), "GONGJI_BATCH_MAX_RECORDS": "40"}
    command = [sys.executable, "-m", "gongji.cli", "run", "ledger"]
    log = open(tmp_path / "ledger.log", "wb")
    first = subprocess.Popen(command, env=env, stdout=log, stderr=log)
    try:
        # Kill -9 once part of the journal is written: between a batch's commit in PostgreSQL and
        # its offsets' commit in Kafka, or in the middle of a batch.
        for _ in range(300):
            await asyncio.sleep(0.05)
            try:
                if journal(settings)["entries"] >= len(results) // 4:
                    break
            except psycopg.errors.UndefinedTable:
                pass
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        at_kill = journal(settings)["entries"]
        assert 0 < at_kill < len(results), f"kill landed at {at_kill} of {len(results)}: not mid-stream"

        second = subprocess.Popen(command, env=env, stdout=log, stderr=log)
        try:
            for _ in range(600):
                if journal(settings)["entries"] >= len(results):
                    break
                await asyncio.sleep(0.1)
            await asyncio.sleep(1)  # anything booked twice would show now
        finally:
            second.send_signal(signal.SIGTERM)
            assert second.wait(30) == 0
    finally:
        if first.poll() is None:
            first.kill()
        log.close()
    book = journal(settings)
    assert book["entries"] == len(results)
    assert book["postings"][0] >= 2 * len(results) and book["postings"][1] == book["postings"][2]

    # A whole redelivery (a new group from the start) books nothing.
    store = await ledger_store(settings)
    try:
        again = LedgerService(as_service(settings, "ledger").model_copy(update={"ledger_group": f"{uniq}-again"}),
                              CATALOG, store)
        async with running(again):
            await wait_booked(again, sum(1 for name, _, _ in records if name in BOOKED))
        assert again.booked["new"] == 0
    finally:
        await store.close()
    assert journal(settings) == book

    letters = await collect(settings, settings.topics.dead_letters, lambda rs: len(rs) >= 2)
    assert {d["service"] for _, d, _ in letters} == {"ledger"}
    assert all("not a result the ledger can book" in d["reason"] for _, d, _ in letters)
    assert {d["original"] for _, d, _ in letters} == {b"\xc3\x01not avro at all", b"\x00junk"}


async def test_reconcile_reports_balanced_and_lists_what_differs(ledger_settings, uniq, tmp_path):
    settings = ledger_settings
    traffic = Traffic(persons=40, seed=47, tag=uniq)
    records = await settle(settings, traffic, list(traffic.stream(300, reversals=0.0)))
    store = await ledger_store(settings)
    try:
        service = LedgerService(as_service(settings, "ledger"), CATALOG, store)
        async with running(service):
            await wait_booked(service, sum(1 for name, _, _ in records if name in BOOKED))
    finally:
        await store.close()

    # The institution with most settlements; its own figures are the published results.
    by_institution = defaultdict(list)
    for _, data in first_results(records).values():
        if "fixmedins_code" in data:
            by_institution[data["fixmedins_code"]].append(data)
    code, mine = max(by_institution.items(), key=lambda item: len(item[1]))
    days = sorted(d["setl_time"][:10] for d in mine)
    totals = {"--medfee-sumamt": sum(d["medfee_sumamt"] for d in mine),
              "--fund-pay-sumamt": sum(d["fund_pay_sumamt"] for d in mine),
              "--acct-pay": sum(d["acct_pay"] + d["acct_mulaid_pay"] for d in mine), "--count": len(mine)}
    env = {**os.environ, **settings.to_env()}

    def reconcile(*extra, **changes):
        args = [sys.executable, "-m", "gongji.cli", "reconcile", "--fixmedins", code, "--from", days[0],
                "--to", days[-1], "--json"]
        for flag, value in (totals | changes).items():
            args += [flag, str(value)]
        done = subprocess.run(args + list(extra), env=env, capture_output=True, text=True, timeout=60)
        return done.returncode, json.loads(done.stdout) if done.stdout else done.stderr

    status, report = reconcile()
    assert (status, report["verdict"], report["stmt_rslt"]) == (0, "balanced", "0"), report
    assert report["centre"]["count"] == len(mine)

    # The institution lost one settlement and got another's fund payment wrong.
    lost, wrong = mine[0], mine[1]
    details = tmp_path / "details.csv"
    lines = ["setl_id,medfee_sumamt,fund_pay_sumamt,acct_pay"]
    for d in mine[1:]:
        fund = d["fund_pay_sumamt"] + (Decimal("1.00") if d is wrong else 0)
        lines.append(f"{d['setl_id']},{d['medfee_sumamt']},{fund},{d['acct_pay'] + d['acct_mulaid_pay']}")
    details.write_text("\n".join(lines) + "\n")
    status, report = reconcile("--details", str(details), **{
        "--count": len(mine) - 1, "--medfee-sumamt": totals["--medfee-sumamt"] - lost["medfee_sumamt"],
        "--fund-pay-sumamt": totals["--fund-pay-sumamt"] - lost["fund_pay_sumamt"] + Decimal("1.00"),
        "--acct-pay": totals["--acct-pay"] - lost["acct_pay"] - lost["acct_mulaid_pay"]})
    assert status == 1 and report["verdict"] == "mismatch"
    assert sorted((d["setl_id"], d["kind"]) for d in report["differences"]) == sorted(
        [(lost["setl_id"], "centre has more"), (wrong["setl_id"], "mismatch")])

    # --csv: the same report flat, a row per side's totals and per side of each difference, to the fen.
    done = subprocess.run([sys.executable, "-m", "gongji.cli", "reconcile", "--fixmedins", code, "--from", days[0],
                           "--to", days[-1], "--details", str(details), "--csv", "--count", str(len(mine) - 1),
                           "--medfee-sumamt", "0", "--fund-pay-sumamt", "0", "--acct-pay", "0"],
                          env=env, capture_output=True, text=True, timeout=60)
    rows = list(csv.DictReader(done.stdout.splitlines()))
    assert done.returncode == 1 and {row["verdict"] for row in rows} == {"mismatch"}, done.stderr
    assert [(r["line"], r["side"]) for r in rows[:2]] == [("total", "centre"), ("total", "institution")]
    assert rows[0]["medfee_sumamt"] == f"{totals['--medfee-sumamt']:.2f}" and rows[1]["medfee_sumamt"] == "0.00"
    assert sorted((r["setl_id"], r["line"], r["side"]) for r in rows[2:]) == sorted(
        [(lost["setl_id"], "centre has more", "centre"), (wrong["setl_id"], "mismatch", "centre"),
         (wrong["setl_id"], "mismatch", "institution")])
    wrong_row = next(r for r in rows if r["setl_id"] == wrong["setl_id"] and r["side"] == "institution")
    assert wrong_row["fund_pay_sumamt"] == f"{wrong['fund_pay_sumamt'] + Decimal('1.00'):.2f}"

    # gongji ledger balances --csv: what --json says, as CSV with yuan to two places.
    def balances(*shape):
        done = subprocess.run([sys.executable, "-m", "gongji.cli", "ledger", "balances", "--by", "institution",
                               *shape], env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout
    as_json = [json.loads(line) for line in balances("--json").splitlines()]
    as_csv = list(csv.DictReader(balances("--csv").splitlines()))
    assert list(as_csv[0]) == ["account", "debit", "credit", "balance", "postings"]
    assert as_csv == [{name: str(row[name]) for name in as_csv[0]} for row in as_json] and len(as_csv) > 1
    assert all(len(row["debit"].rpartition(".")[2]) == 2 for row in as_csv)
    payable = next(row for row in as_csv if row["account"] == f"inst:{code}:payable")
    assert Decimal(payable["balance"]) == -(totals["--fund-pay-sumamt"] + totals["--acct-pay"])


async def test_the_database_guards_the_journal_and_the_store_survives_a_lost_connection(ledger_settings):
    """Zero entries are booked; a posting added later, an UPDATE, a DELETE and a TRUNCATE are
    refused by PostgreSQL itself; a connection the server drops is replaced on the next call."""
    from gongji.ledger.domain import entry_for

    settings = ledger_settings
    ledger = migrated(settings)
    settled = entry_for("settlement", {
        "claim_id": "C1", "setl_id": "S1", "psn_no": "P1", "insu_admdvs": "990100", "mdtrtarea_admvs": "990100",
        "fixmedins_code": "H1", "setl_time": "2023-03-01T09:00:00+08:00", "medfee_sumamt": Decimal("100.00"),
        "hifp_pay": Decimal("60.00"), "hifob_pay": Decimal("0"), "cvlserv_pay": Decimal("0"), "maf_pay": Decimal("0"),
        "oth_pay": Decimal("0"), "fund_pay_sumamt": Decimal("60.00"), "acct_pay": Decimal("10.00"),
        "acct_mulaid_pay": Decimal("0"), "psn_cash_pay": Decimal("30.00")})
    empty = entry_for("credit", {"credit_id": "K0", "psn_no": "P1", "ym": "2023-01", "amount": Decimal("0.00"),
                                 "balc": Decimal("0.00"), "insu_admdvs": "990100"})
    store = await LedgerStore.connect(ledger.database_url, ledger.ledger_schema, ledger.database_password_value())
    try:
        assert (await store.book([(settled, None), (empty, None)])).entries == 2
        with psycopg.connect(settings.database_url, password=settings.database_password_value(),
                         options=f"-c search_path={settings.ledger_schema}") as db:
            for statement, refusal in [
                ("INSERT INTO posting VALUES ('S1', 9, 'acct:P1', 5, 0, '2023-03-01')", "never added later"),
                ("UPDATE posting SET debit = 61 WHERE entry_id = 'S1' AND line_no = 1", "append-only"),
                ("DELETE FROM journal_entry WHERE entry_id = 'K0'", "append-only"),
                ("TRUNCATE posting, journal_entry", "append-only"),
            ]:
                with pytest.raises(psycopg.Error, match=refusal):
                    db.execute(statement)
                db.rollback()
        assert (await store.trial_balance())["unbalanced"] == []

        # The server drops the store's connection (a restart, a failover): the call that meets the
        # loss fails (its batch is consumed again), the next one works on a new connection.
        with psycopg.connect(ledger.database_url, password=ledger.database_password_value(), autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (store.connection.info.backend_pid,))
        with pytest.raises(psycopg.OperationalError):
            await store.counts()
        assert await store.counts() == {"settlement": 1, "credit": 1}
    finally:
        await store.close()
