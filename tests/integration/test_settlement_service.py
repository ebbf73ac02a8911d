"""The settlement service against the real broker and Redis started by the fixtures."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from datetime import datetime, timedelta

from gongji.common.redis import client_for

from gongji.settlement.codec import from_output, json_ready, to_event
from gongji.settlement.domain import PersonState
from gongji.settlement.settler import Settler
from gongji.settlement.policy import load_policy_book
from gongji.settlement.redis_store import RedisStore
from gongji.settlement.memory_store import MemoryStore
from gongji.local.synthetic import Traffic

from tests.integration.support import CATALOG, as_service, running_service, by_claim, collect, open_accounts, produce, send_raw, settings_for, wait_registered, figures

BOOK = load_policy_book()


async def replayed(events):
    """Settle `events` in order with the in-memory store: the reference an uninterrupted run gives."""
    store = MemoryStore()
    settler = Settler(store, BOOK)
    results: dict[str, dict] = {}
    for kind, data in events:
        for output in await settler.handle([to_event(kind, data)]):
            name, wire = from_output(output)
            results[wire.get("claim_id") or wire.get("credit_id")] = json_ready(wire)
    return results, store


async def redis_states(settings, psn_nos):
    client = client_for(settings)
    try:
        snap = await RedisStore(client, settings.key_prefix).read(set(psn_nos), set(), set())
        return snap.states
    finally:
        await client.aclose()


def outputs_complete(expected_ids):
    return lambda records: expected_ids <= {d.get("claim_id") or d.get("credit_id") for _, d, _ in records}


async def test_claims_in_settlements_out_as_replay_computes_them(stack, uniq):
    settings = settings_for(stack, uniq)
    traffic = Traffic(persons=40, seed=1, tag=uniq, family=0.0)
    setup = traffic.registry() + traffic.openings()
    claims = list(traffic.stream(300))
    expected, reference = await replayed(setup + claims)
    async with running_service(settings):
        credit_ids = await open_accounts(settings, traffic)
        await produce(settings, claims)
        ids = {d["claim_id"] for _, d in claims}
        records = await collect(settings, settings.topics.settlements, outputs_complete(ids | credit_ids))
    got = by_claim(records)
    for ident in ids | credit_ids:
        # Every copy of a result (resends, redeliveries) is the identical result.
        assert all(json_ready(copy) == expected[ident] for copy in got[ident]), ident
    kinds = {name for name, _, _ in records}
    assert {"Settlement", "ReversalResult", "CreditResult"} <= kinds
    states = await redis_states(settings, [p["psn_no"] for p in traffic.persons])
    assert figures(states) == figures({psn: reference.states.get(psn, PersonState()) for psn in states})


async def test_resends_and_redelivery_count_once(stack, uniq):
    settings = settings_for(stack, uniq)
    traffic = Traffic(persons=5, seed=2, tag=uniq, family=0.0)
    kind, claim = traffic.claim()
    person = claim["psn_no"]
    async with running_service(settings):
        await open_accounts(settings, traffic)
        before = (await redis_states(settings, [person]))[person]
        await produce(settings, [(kind, claim)] * 3)
        records = await collect(settings, settings.topics.settlements,
                                lambda rs: len(by_claim(rs).get(claim["claim_id"], [])) >= 3)
        # The same claim id with other content is refused; the original stands.
        changed = dict(claim, mdtrt_id="OTHER")
        await produce(settings, [(kind, changed)])
        records = await collect(settings, settings.topics.settlements,
                                lambda rs: len(by_claim(rs).get(claim["claim_id"], [])) >= 4)
    copies = by_claim(records)[claim["claim_id"]]
    assert copies[0] == copies[1] == copies[2]
    assert copies[3]["err_code"] == "DUPLICATE_CONFLICT"
    after = (await redis_states(settings, [person]))[person]
    year = after.years[2023]
    assert year.visits == before.year(2023).visits + 1
    assert year.medfee == before.year(2023).medfee + sum(
        int(line["det_item_fee_sumamt"] * 100) for line in claim["fee_details"])
    assert after.balance == before.balance - int(copies[0]["acct_pay"] * 100)


async def test_each_bad_input_is_answered_once_and_the_consumer_keeps_going(stack, uniq):
    """Junk and records of another topic go to dead-letters; an invalid claim the sender can match
    (by its claim_id) is answered by its INVALID_CLAIM rejection alone; one whose id is the problem,
    so no rejection could name it, by its dead letter alone."""
    settings = settings_for(stack, uniq)
    traffic = Traffic(persons=3, seed=3, tag=uniq, family=0.0)
    _, good = traffic.claim()
    _, bad = traffic.claim()
    bad["fee_details"][0]["det_item_fee_sumamt"] = -bad["fee_details"][0]["det_item_fee_sumamt"]
    _, nameless = traffic.claim()
    nameless["claim_id"] = "C\x00" + nameless["claim_id"]
    async with running_service(settings) as service:
        await produce(settings, traffic.registry())
        await wait_registered(settings, traffic)
        await send_raw(settings, settings.topics.claims, b"\x00\x01 not avro at all", b"K1")
        await send_raw(settings, settings.topics.claims, b'{"claim_id": "json, not avro"}', b"K2")
        await send_raw(settings, settings.topics.claims, CATALOG.encode("Person", traffic.persons[0]), b"K3")
        await produce(settings, [("claim", bad), ("claim", nameless), ("claim", good)])
        dead = await collect(settings, settings.topics.dead_letters, lambda rs: len(rs) >= 4)
        settled = await collect(settings, settings.topics.settlements,
                                lambda rs: {good["claim_id"], bad["claim_id"]} <= set(by_claim(rs)))
    letters = {data["original"]: data for _, data, _ in dead}
    person_bytes = CATALOG.encode("Person", traffic.persons[0])
    nameless_bytes = CATALOG.encode("Claim", nameless)
    assert set(letters) == {b"\x00\x01 not avro at all", b'{"claim_id": "json, not avro"}', person_bytes,
                            nameless_bytes}
    assert "undecodable" in letters[b"\x00\x01 not avro at all"]["reason"]
    assert "JSON" in letters[b'{"claim_id": "json, not avro"}']["reason"]
    assert "does not belong on topic" in letters[person_bytes]["reason"]
    assert "claim_id" in letters[nameless_bytes]["reason"]
    assert all(letter["topic"] == settings.topics.claims and letter["service"] == "settlement"
               for letter in letters.values())
    results = by_claim(settled)
    assert [r["err_code"] for r in results[bad["claim_id"]]] == ["INVALID_CLAIM"]
    assert "det_item_fee_sumamt" in results[bad["claim_id"]][0]["err_msg"]
    assert "setl_id" in results[good["claim_id"]][0]
    assert not any(r.get("claim_id") and "\x00" in r["claim_id"] for _, r, _ in settled)
    assert service.stats.dead_letters == 4


async def test_killed_and_restarted_mid_stream_ends_as_an_uninterrupted_run(stack, uniq, tmp_path):
    settings = settings_for(stack, uniq)
    traffic = Traffic(persons=300, seed=4, tag=uniq, family=0.0)
    setup = traffic.registry() + traffic.openings()
    claims = list(traffic.stream(6000))
    expected, reference = await replayed(setup + claims)
    env = {**os.environ, **as_service(settings, "settlement").to_env(), "GONGJI_BATCH_MAX_RECORDS": "200"}

    def start():
        return subprocess.Popen([sys.executable, "-m", "gongji.cli", "run", "settlement"], env=env,
                                stdout=subprocess.DEVNULL, stderr=open(tmp_path / "service.log", "ab"))

    service = start()
    try:
        credit_ids = await open_accounts(settings, traffic, timeout=90)
        await produce(settings, claims)
        # Kill -9 while it is settling: somewhere between a Redis write and an offset commit.
        await collect(settings, settings.topics.settlements, lambda rs: len(rs) >= len(credit_ids) + 1500, timeout=90)
        service.send_signal(signal.SIGKILL)
        service.wait(10)
        service = start()
        ids = {d["claim_id"] for _, d in claims}
        records = await collect(settings, settings.topics.settlements, outputs_complete(ids | credit_ids),
                                timeout=120)
    finally:
        service.terminate()
        service.wait(30)
    got = by_claim(records)
    redelivered = sum(len(copies) - 1 for copies in got.values())
    for ident, copies in got.items():
        for copy in copies:
            a, b = json_ready(copy), expected[ident]
            assert a == b, (ident, {k: (a.get(k), b.get(k)) for k in set(a) | set(b) if a.get(k) != b.get(k)})
    assert all(json_ready(copy) == expected[ident] for ident, copies in got.items() for copy in copies)
    assert ids | credit_ids == set(got)  # nothing lost
    states = await redis_states(settings, [p["psn_no"] for p in traffic.persons])
    assert figures(states) == figures({psn: reference.states.get(psn, PersonState()) for psn in states})
    print(f"redelivered results after kill -9: {redelivered}")


async def test_an_event_that_trips_a_bug_is_dead_lettered_and_the_rest_settle(stack, uniq):
    """No input may stall a partition, not even one that meets a bug of ours."""
    from gongji.settlement import rules

    settings = settings_for(stack, uniq)
    traffic = Traffic(persons=4, seed=8, tag=uniq, family=0.0)
    claims = [traffic.claim()[1] for _ in range(3)]
    poisoned = claims[1]["claim_id"]

    class Buggy:
        """The real rules, but settling the poisoned claim trips a bug."""

        def __getattr__(self, name):
            return getattr(rules, name)

        def settle_claim(self, claim, *args, **kwargs):
            if claim.claim_id == poisoned:
                raise KeyError("a bug this claim happens to trip")
            return rules.settle_claim(claim, *args, **kwargs)

    async with running_service(settings) as service:
        service.settler = Settler(service.settler.store, BOOK, rules=Buggy())
        await produce(settings, traffic.registry())
        await wait_registered(settings, traffic)
        await produce(settings, [("claim", claim) for claim in claims])
        dead = await collect(settings, settings.topics.dead_letters, lambda rs: len(rs) >= 1)
        settled = await collect(settings, settings.topics.settlements,
                                lambda rs: {claims[0]["claim_id"], claims[2]["claim_id"]} <= set(by_claim(rs)))
    (letter,) = [data for _, data, _ in dead]
    assert "refused by settlement: KeyError" in letter["reason"]
    assert letter["original"] == CATALOG.encode("Claim", claims[1])
    assert poisoned not in by_claim(settled)


async def test_metrics_and_health_for_the_operator(stack, uniq):
    """/metrics counts what flowed (processed, by kind, rejections by code, batch latency, lag);
    /healthz is 200 while the loop turns. Read over real HTTP from the service's own endpoint."""
    import urllib.request

    from gongji.local.processes import free_port

    port = free_port()
    settings = settings_for(stack, uniq, metrics_port=port)
    traffic = Traffic(persons=20, seed=12, tag=uniq, family=0.0)
    claims = list(traffic.stream(60))

    def get(path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()

    async with running_service(settings):
        await produce(settings, traffic.registry())
        await wait_registered(settings, traffic)
        await produce(settings, claims)
        ids = {d["claim_id"] for _, d in claims}
        await collect(settings, settings.topics.settlements, lambda rs: ids <= set(by_claim(rs)))
        await asyncio.sleep(0.5)
        status, health = await asyncio.to_thread(get, "/healthz")
        _, metrics = await asyncio.to_thread(get, "/metrics")
    assert status == 200 and '"healthy": true' in health
    values = {line.split(" ")[0]: float(line.split(" ")[1]) for line in metrics.splitlines()
              if line and not line.startswith("#")}
    assert values["gongji_consumed_total"] >= len(claims)
    assert values['gongji_outputs_total{kind="settlement"}'] > 0
    assert any(name.startswith("gongji_rejected_total{code=") for name in values)  # suspended persons
    assert values["gongji_batch_seconds_count"] >= 1
    assert any(name.startswith("gongji_consumer_lag{") for name in values)


async def test_a_reversal_dated_before_its_original_is_refused_on_settlements(stack, uniq):
    """Issue 14: a 2208 cannot precede its 2207. The misdated reversal (and its resend) is answered
    REVERSAL_BEFORE_ORIGINAL on `settlements` and moves nothing; a reversal dated after still reverses."""
    settings = settings_for(stack, uniq)
    traffic = Traffic(persons=3, seed=14, tag=uniq, family=0.0)
    kind, claim = traffic.claim()
    person, original_time = claim["psn_no"], datetime.fromisoformat(claim["setl_time"])

    def reversal(ident: str, when: datetime) -> tuple[str, dict]:
        return "reversal", {"claim_id": f"{uniq}{ident}", "orig_claim_id": claim["claim_id"], "psn_no": person,
                            "setl_time": when.isoformat()}

    early = reversal("R-EARLY", original_time - timedelta(minutes=5))
    late = reversal("R-LATE", original_time + timedelta(days=1))
    async with running_service(settings):
        await open_accounts(settings, traffic)
        before = (await redis_states(settings, [person]))[person]
        await produce(settings, [(kind, claim), early])
        settled = await collect(settings, settings.topics.settlements,
                                lambda rs: early[1]["claim_id"] in by_claim(rs))
        during = (await redis_states(settings, [person]))[person]
        await produce(settings, [early, late])
        records = await collect(settings, settings.topics.settlements,
                                lambda rs: late[1]["claim_id"] in by_claim(rs))
        after = (await redis_states(settings, [person]))[person]
    results = by_claim(records)
    refused = results[early[1]["claim_id"]]
    assert [r["err_code"] for r in refused] == ["REVERSAL_BEFORE_ORIGINAL"] * 2 and refused[0] == refused[1]
    assert claim["claim_id"] in refused[0]["err_msg"] and refused[0]["input_type"] == "reversal"
    paid = by_claim(settled)[claim["claim_id"]][0]
    assert during.balance == before.balance - int(paid["acct_pay"] * 100)  # the claim stood
    (undone,) = results[late[1]["claim_id"]]
    assert undone["orig_claim_id"] == claim["claim_id"] and undone["medfee_sumamt"] == -paid["medfee_sumamt"]
    assert figures({person: after}) == figures({person: before})
