"""The fuzz suite (issue 8): thousands of malformed and hostile messages on every input topic and on
`settlements`, against the real broker, Redis and PostgreSQL, with settlement, ledger, clearing and
fraud all running. Each input is answered by settlement exactly once (a result or rejection that names
it, or else its dead letter), each downstream service dead-letters a result at most once, every
service stays healthy, and a valid claim sent afterwards settles exactly as `gongji replay` says."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from contextlib import AsyncExitStack
from decimal import Decimal
from types import SimpleNamespace

import pytest
from tests.dashboard_records import settlement as result_record
from tests.health_probe import health
from tests.integration.hostile import Hostile, HostileTraffic, encode
from tests.integration.support import (
    CATALOG, as_service, collect, ledger_store, produce, producer, running, settings_for, wait_registered,
)

from gongji.clearing.service import ClearingService
from gongji.common import kafka
from gongji.common.redis import client_for
from gongji.local.processes import free_port
from gongji.fraud.service import FraudService
from gongji.ledger.service import LedgerService
from gongji.settlement.codec import from_output, json_ready, to_event
from gongji.settlement.settler import Settler
from gongji.settlement.policy import load_policy_book
from gongji.settlement.service import SettlementService
from gongji.settlement.memory_store import MemoryStore

BOOK = load_policy_book()
JUNK_PER_TOPIC = 450  # × 5 topics, plus the records with bad values: over 2,300 messages


async def caught_up(settings, group: str, topic: str, timeout: float = 120.0) -> None:
    """Wait until `group` has committed `topic` to its end (a positive marker, no sleep)."""
    async with kafka.group_progress(settings, topic) as progress:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            done, end = await progress(group)
            if done >= end:
                return
            assert asyncio.get_running_loop().time() < deadline, f"{group} stuck on {topic}: {done} of {end}"
            await asyncio.sleep(0.2)


async def read_all(settings, topic: str) -> list:
    """Every record of `topic` up to its end now."""
    async with kafka.group_progress(settings, topic) as progress:
        _, end = await progress("-")
    return await collect(settings, topic, lambda records: len(records) >= end)


def population(tag: str) -> tuple[list, dict]:
    """A hospital, four persons (P1 with an account, A and B bound to each other: a cycle) and
    P1's opening credit: the valid events the hostile ones are mixed with."""
    hospital = {"fixmedins_code": tag + "H", "fixmedins_name": "h", "fixmedins_type": "1", "medins_lv": "2",
                "grassroots": False, "admdvs": "152501"}
    person = {"insutype": "310", "psn_type": "1101", "insu_admdvs": "152501", "psn_insu_stas": "1",
              "fd_fixmedins_code": None, "mulaid_holder_psn_no": None, "mulaid_relation": None,
              "psn_idet_type": None, "chronic_diseases": None, "cvlserv_flag": None}
    persons = [dict(person, psn_no=tag + "P1"), dict(person, psn_no=tag + "P2"),
               dict(person, psn_no=tag + "A", mulaid_holder_psn_no=tag + "B", mulaid_relation="spouse"),
               dict(person, psn_no=tag + "B", mulaid_holder_psn_no=tag + "A", mulaid_relation="spouse")]
    credit = {"credit_id": tag + "K1", "psn_no": tag + "P1", "ym": "2023-01", "crdt_type": "opening",
              "crdt_base": None, "amount": Decimal("500.00")}
    return [("institution", hospital)] + [("person", p) for p in persons] + [("credit", credit)], hospital


async def test_thousands_of_hostile_messages_are_each_answered_once_and_stop_nothing(stack, uniq):
    if not stack.database_url:
        pytest.fail("the stack fixture has no PostgreSQL")
    ports = {name: free_port() for name in ("settlement", "ledger", "clearing", "fraud")}
    base = settings_for(stack, uniq, database_url=stack.database_url, ledger_group=f"{uniq}-ledger",
                        ledger_schema=uniq, fraud_group=f"{uniq}-fraud", clearing_group=f"{uniq}-clearing")
    # Each service on its own credentials (Redis user, the ledger's writer role), as the stack runs them.
    settings = {name: as_service(base, name).model_copy(update={"metrics_port": port}) for name, port in ports.items()}
    setup, hospital = population(uniq)
    fuzz = HostileTraffic(uniq)
    p1, p2, inst = uniq + "P1", uniq + "P2", hospital["fixmedins_code"]

    # The hostile messages. Semantic ones first need a settled claim of P1 to point at.
    first = fuzz.claim(p1, inst)
    hostile: list[Hostile] = []
    for kind in ("claim", "credit", "person", "institution", "result"):
        hostile += fuzz.junk(kind, JUNK_PER_TOPIC)
    hostile += fuzz.wrong_records() + fuzz.bad_claims(p1, inst) + fuzz.bad_credits(p1)
    hostile += fuzz.bad_persons() + fuzz.bad_institutions()
    other_persons = {"claim_id": fuzz.ident("R"), "orig_claim_id": first["claim_id"], "psn_no": p2,
                     "setl_time": "2023-05-02T10:00:00+08:00"}
    conflict = dict(first, acct_used_flag="0")
    hostile += [
        Hostile("claim", p2.encode(), encode("reversal", other_persons), "reversal of another person's claim",
                other_persons["claim_id"]),
        Hostile("claim", p1.encode(), encode("claim", conflict), "duplicate id with other content", first["claim_id"]),
    ]
    for patient in (uniq + "A", uniq + "B"):  # the cycle A→B→A: refused when money would move
        cycle = fuzz.claim(patient, inst)
        hostile.append(Hostile("claim", patient.encode(), encode("claim", cycle), "family holder cycle",
                               cycle["claim_id"]))
    for odd in ("c:1{x}\\", "}:rec:c:", "\\\\:{"):  # printable ids full of the store's separators
        data = fuzz.claim(p2, inst)  # P2's: P1's state is what the closing claim is checked against
        data["claim_id"] = odd + data["claim_id"]
        hostile.append(Hostile("claim", p2.encode(), encode("claim", data), "id full of separators",
                               data["claim_id"]))
    template = result_record(p1)
    hostile += fuzz.bad_results(template)
    last = fuzz.claim(p1, inst)  # the valid claim after everything

    topics = base.topics
    topic_of = {"claim": topics.claims, "credit": topics.credits, "person": topics.persons,
                "institution": topics.institutions, "result": topics.settlements}
    db = await ledger_store(base)
    redis_clients = [client_for(settings[name]) for name in ("settlement", "clearing")]
    try:
        async with AsyncExitStack() as services:
            await services.enter_async_context(running(
                SettlementService(settings["settlement"], CATALOG, BOOK, redis_clients[0])))
            await services.enter_async_context(running(LedgerService(settings["ledger"], CATALOG, db)))
            await services.enter_async_context(running(
                ClearingService(settings["clearing"], CATALOG, redis_clients[1])))
            await services.enter_async_context(running(FraudService(settings["fraud"], CATALOG), grace=90))
            await produce(base, setup[:5])
            await wait_registered(base, SimpleNamespace(persons=[d for k, d in setup if k == "person"],
                                                        institutions=[hospital]))
            await produce(base, setup[5:] + [("claim", first)])
            await collect(base, topics.settlements,
                          lambda rs: {uniq + "K1", first["claim_id"]} <= {d.get("claim_id") or d.get("credit_id")
                                                                          for _, d, _ in rs})
            sent: list[tuple[Hostile, tuple[str, int, int]]] = []
            async with producer(base) as sender:
                futures = [await sender.send(topic_of[h.kind], h.value, key=h.key, headers=list(h.headers))
                           for h in hostile]
                for h, meta in zip(hostile, await asyncio.gather(*futures)):
                    sent.append((h, (meta.topic, meta.partition, meta.offset)))
            await produce(base, [("claim", last)])

            # Done when every group has committed every topic it reads to its end.
            reads = {"settlement": [topics.claims, topics.credits, topics.persons, topics.institutions],
                     "ledger": [topics.settlements], "clearing": [topics.settlements],
                     "fraud": [topics.settlements, topics.claims]}
            for service, read in reads.items():
                for topic in read:
                    await caught_up(base, base.kafka_group(service), topic)
            results = await read_all(base, topics.settlements)
            letters = await read_all(base, topics.dead_letters)
            statuses = {name: health(port)[0] for name, port in ports.items()}
    finally:
        await db.close()
        for client in redis_clients:
            await client.aclose()

    inputs = [(h, where) for h, where in sent if h.kind != "result"]
    named = Counter(h.named for h, _ in inputs if h.named)
    named[first["claim_id"]] += 1  # its own settlement, before the conflict
    unnamed = {where for h, where in inputs if not h.named}

    def ident(data):
        return data.get("claim_id") or data.get("credit_id") or (
            data.get("psn_no") if data.get("input_type") == "person" else None)

    # Settlement: each input answered exactly once, by what names it or else by its dead letter.
    by_id = Counter(ident(d) for name, d, _ in results if name and name != "DeadLetter")
    mine = Counter((d["topic"], d["partition"], d["offset"]) for _, d, _ in letters if d["service"] == "settlement")
    assert {i: by_id[i] for i in named} == dict(named)
    unanswered = [(h.cls, h.value[:60]) for h, where in inputs if where in unnamed and mine[where] != 1]
    assert not unanswered, unanswered
    named_where = {where for h, where in inputs if h.named}
    assert not named_where & set(mine), "a named input was dead-lettered as well as answered"
    assert set(mine) <= unnamed | named_where
    # Downstream: the ledger refuses every junk result, once; no service dead-letters anything twice.
    junk_results = {where for h, where in sent if h.kind == "result"}
    ledger = Counter((d["topic"], d["partition"], d["offset"]) for _, d, _ in letters if d["service"] == "ledger")
    missing = [h.cls for h, where in sent if where in junk_results - set(ledger)]
    assert not missing, Counter(missing)
    # Clearing reads what is headed as a settlement or reversal: it refuses each such junk result.
    # (A well-formed result of one region's own insured is none of its business, odd values or not.)
    clearing = {(d["topic"], d["partition"], d["offset"]) for _, d, _ in letters if d["service"] == "clearing"}
    headed = {where for h, where in sent if h.kind == "result" and h.headers and h.cls.endswith("(headed)")}
    assert headed - clearing == set() and len(headed) > 200
    per_service = Counter((d["service"], d["topic"], d["partition"], d["offset"]) for _, d, _ in letters)
    assert max(per_service.values()) == 1
    assert {s for s, *_ in per_service} <= {"settlement", "ledger", "clearing", "fraud"}
    # Every service healthy after it all.
    assert statuses == dict.fromkeys(ports, 200), statuses
    # The valid claim afterwards: exactly what replay gives for the valid events.
    reference = Settler(MemoryStore(), BOOK)
    expected = None
    for kind, data in setup + [("claim", first), ("claim", last)]:
        for output in await reference.handle([to_event(kind, data)]):
            expected = json_ready(from_output(output)[1])
    got = [json_ready(d) for name, d, _ in results if name == "Settlement" and d["claim_id"] == last["claim_id"]]
    assert got and all(copy == expected for copy in got)
    # The figures, per class, for the closing note.
    classes = Counter(h.cls for h in hostile)
    print(json.dumps({"messages": len(hostile), "classes": len(classes),
                      "answers": {"named": sum(named.values()), "dead letters": len(unnamed)},
                      "downstream letters": Counter(s for s, *_ in per_service)}, default=str))
