"""The Settler's exactly-once effect over both stores: resends within and across batches,
redelivered reversals, family mutual aid across persons, and a zombie settling the same events
concurrently (a consumer that lost its partitions but has not noticed yet)."""

from __future__ import annotations

import asyncio
import random

import pytest

from gongji.settlement.codec import from_output, json_ready, to_event
from gongji.settlement.settler import Settler
from gongji.settlement.policy import load_policy_book
from gongji.settlement.memory_store import MemoryStore
from gongji.local.synthetic import Traffic
from tests.integration.support import figures

BOOK = load_policy_book()


async def reference(events):
    """One event at a time, each once, on a fresh memory store."""
    store = MemoryStore()
    settler = Settler(store, BOOK)
    results = {}
    for event in events:
        for output in await settler.handle([event]):
            _, wire = from_output(output)
            results.setdefault(wire.get("claim_id") or wire.get("credit_id"), json_ready(wire))
    return results, store


async def states_of(store, psn_nos):
    return (await store.read(set(psn_nos), set(), set())).states


def traffic_events(family: float, seed: int):
    traffic = Traffic(persons=30, seed=seed, family=family)
    setup = [to_event(kind, data) for kind, data in traffic.registry() + traffic.openings()]
    stream = [to_event(kind, data) for kind, data in traffic.stream(600, reversals=0.08, resends=0.08)]
    return traffic, setup, stream


async def test_a_resend_in_a_later_batch_does_not_count_again(store):
    traffic, setup, stream = traffic_events(family=0.0, seed=21)
    settler = Settler(store, BOOK)
    await settler.handle(setup)
    claims = [event for event in stream if type(event).__name__ == "Claim"]
    first, second = claims[0], [c for c in claims[1:] if c.psn_no == claims[0].psn_no][0]
    await settler.handle([first])
    # The resend comes first in the next batch, then a new claim of the same person.
    outputs = await settler.handle([first, second])
    expected, ref = await reference(setup + [first, second])
    assert [json_ready(from_output(o)[1]) for o in outputs] == [expected[first.claim_id], expected[second.claim_id]]
    psn_nos = [p["psn_no"] for p in traffic.persons]
    assert figures(await states_of(store, psn_nos)) == figures(await states_of(ref, psn_nos))


@pytest.mark.parametrize("family", [0.0, 0.5])
async def test_any_batching_with_redelivery_equals_one_by_one(store, family):
    """Random batch sizes, every batch delivered twice (a crash before each offset commit)."""
    traffic, setup, stream = traffic_events(family=family, seed=22)
    settler = Settler(store, BOOK)
    await settler.handle(setup)
    rng = random.Random(5)
    position = 0
    seen = {}
    while position < len(stream):
        size = rng.randint(1, 60)
        batch = stream[position:position + size]
        for _ in range(2):
            for output in await settler.handle(batch):
                _, wire = from_output(output)
                seen.setdefault(wire.get("claim_id") or wire.get("credit_id"), []).append(json_ready(wire))
        position += size
    expected, ref = await reference(setup + stream)
    # Family aid included (a dependant's claim moves the holder's account): every copy of every
    # result is exactly the one-by-one result, and so is every person's state.
    assert all(copy == expected[ident] for ident, copies in seen.items() for copy in copies)
    assert set(seen) == {event.claim_id for event in stream}
    psn_nos = [p["psn_no"] for p in traffic.persons]
    got = await states_of(store, psn_nos)
    assert figures(got) == figures(await states_of(ref, psn_nos))
    # Money is conserved: what accounts hold is what was credited minus what they paid, once each.
    credited = sum(int(expected[e.credit_id].get("amount", "0").replace(".", ""))
                   for e in setup if hasattr(e, "credit_id"))
    paid = 0
    for copies in seen.values():
        result = copies[0]
        if "acct_pay" in result:
            paid += int(result["acct_pay"].replace(".", "")) + int(result["acct_mulaid_pay"].replace(".", ""))
    assert sum(state.balance for state in got.values()) == credited - paid
    assert all(state.balance >= 0 for state in got.values())
    # Every settled claim counted once per person, every reversal undone once.
    for psn, state in got.items():
        results = [copies[0] for copies in seen.values() if copies[0].get("psn_no") == psn and "setl_id" in copies[0]]
        net = sum(-1 if "orig_claim_id" in r else 1 for r in results)
        assert sum(totals.visits for totals in state.years.values()) == net, psn


async def test_a_zombie_settling_the_same_events_changes_nothing(store):
    """Two settlers race over the same batches, as a consumer that lost its partitions would."""
    traffic, setup, stream = traffic_events(family=0.3, seed=23)
    await Settler(store, BOOK).handle(setup)
    live, zombie = Settler(store, BOOK), Settler(store, BOOK)
    batches = [stream[i:i + 25] for i in range(0, len(stream), 25)]
    results = {"live": {}, "zombie": {}}

    async def run(name, settler):
        for batch in batches:
            for output in await settler.handle(batch):
                _, wire = from_output(output)
                results[name].setdefault(wire.get("claim_id") or wire.get("credit_id"), json_ready(wire))
            await asyncio.sleep(0)

    await asyncio.gather(run("live", live), run("zombie", zombie))
    assert results["live"] == results["zombie"]  # both published the same, single outcome per id
    psn_nos = [p["psn_no"] for p in traffic.persons]
    got = await states_of(store, psn_nos)
    visits = sum(totals.visits for state in got.values() for totals in state.years.values())
    settled = sum(1 for r in results["live"].values() if "setl_id" in r and "orig_claim_id" not in r)
    reversed_ = sum(1 for r in results["live"].values() if "orig_claim_id" in r)
    assert visits == settled - reversed_
    assert all(state.balance >= 0 for state in got.values())


async def test_one_claim_id_for_two_persons_is_a_conflict(store):
    """CONTRACT Idempotency: the same claim_id with other content (another person) is refused
    DUPLICATE_CONFLICT and the original stands, though the two persons' state lives apart."""
    traffic, setup, stream = traffic_events(family=0.0, seed=24)
    settler = Settler(store, BOOK)
    await settler.handle(setup)
    claims = [event for event in stream if type(event).__name__ == "Claim"]
    first = claims[0]
    other = next(c for c in claims if c.psn_no != first.psn_no).model_copy(update={"claim_id": first.claim_id})
    (settled,) = await settler.handle([first])
    (refused,) = await settler.handle([other])
    (again,) = await settler.handle([first])
    assert refused.value.err_code == "DUPLICATE_CONFLICT" and "another person" in refused.value.err_msg
    assert again.value == settled.value
    states = await states_of(store, [other.psn_no])
    assert sum(totals.visits for totals in states[other.psn_no].years.values()) == 0


class CrashBeforeCommit:
    """A store whose next commit never happens: the process dies between hold and commit."""

    def __init__(self, store):
        self.store = store
        self.armed = True

    def __getattr__(self, name):
        return getattr(self.store, name)

    async def commit(self, commits, **along):
        if self.armed:
            self.armed = False
            raise ConnectionError("killed between the hold and the commit")
        return await self.store.commit(commits, **along)


@pytest.mark.parametrize("rebound", [False, True])
async def test_a_hold_stranded_by_a_change_of_holder_goes_back(store, rebound):
    """Review finding: the hold is written, the process dies before the commit, and the patient's
    binding changes (removed, or another holder) before the claim comes again. The first holder
    gets the hold back; the claim settles on the binding it finds."""
    from gongji.settlement.events import Claim, Credit, Institution, Person

    hospital = Institution(fixmedins_code="H3", fixmedins_name="h", fixmedins_type="1", medins_lv="3",
                           grassroots=False, admdvs="152501")
    holder = Person(psn_no="H1", insutype="310", psn_type="1101", insu_admdvs="152501", psn_insu_stas="1")
    other = holder.model_copy(update={"psn_no": "H2"})
    patient = Person(psn_no="P1", insutype="310", psn_type="1201", insu_admdvs="152501", psn_insu_stas="1",
                     mulaid_holder_psn_no="H1", mulaid_relation="parent")
    credits = [Credit(credit_id=f"K-{p}", psn_no=p, ym="2023-01", crdt_type="opening", amount="500.00")
               for p in ("H1", "H2")]
    await Settler(store, BOOK).handle([hospital, holder, other, patient, *credits])
    visit = Claim(claim_id="C-1", mdtrt_id="M-1", psn_no="P1", fixmedins_code="H3", med_type="11", insutype="310",
                  setl_time="2023-06-01T10:00:00+08:00", acct_used_flag="1",
                  fee_details=[{"feedetl_sn": "1", "med_list_codg": "X", "list_type": "101", "chrgitm_lv": "01",
                                "det_item_fee_sumamt": "1300.00", "cnt": "1", "pric": "1300.00"}])
    crashing = CrashBeforeCommit(store)
    with pytest.raises(ConnectionError):
        await Settler(crashing, BOOK).handle([visit])
    assert (await states_of(store, ["H1"]))["H1"].balance < 50000  # the hold was written
    change = patient.model_copy(update={"mulaid_holder_psn_no": "H2" if rebound else None,
                                        "mulaid_relation": "parent" if rebound else None})
    outputs = await Settler(store, BOOK).handle([change, visit])
    result = outputs[-1].value
    balances = await states_of(store, ["H1", "H2"])
    assert balances["H1"].balance == 50000  # the stranded hold came back
    if rebound:
        assert result.acct_mulaid_pay > 0 and balances["H2"].balance == 50000 - result.acct_mulaid_pay
    else:
        assert result.acct_mulaid_pay == 0 and balances["H2"].balance == 50000
    assert (await states_of(store, ["P1"]))["P1"].pending == {}


@pytest.mark.parametrize("size", [200, 1000])
async def test_a_backlog_polled_in_large_batches_settles_as_one_by_one(store, size):
    """Reported: batches of 200 and 1,000 (what a worker polls after an outage) paid family aid to
    the wrong claims. Here on each store: every result and every person's state as one by one."""
    traffic = Traffic(persons=120, seed=1, family=0.5)
    setup = [to_event(kind, data) for kind, data in traffic.registry() + traffic.openings()]
    stream = [to_event(kind, data) for kind, data in traffic.stream(2000, reversals=0.05, resends=0.05)]
    settler = Settler(store, BOOK)
    await settler.handle(setup)
    seen = {}
    for position in range(0, len(stream), size):
        for output in await settler.handle(stream[position:position + size]):
            _, wire = from_output(output)
            seen.setdefault(wire.get("claim_id") or wire.get("credit_id"), json_ready(wire))
    expected, ref = await reference(setup + stream)
    assert sum(1 for result in seen.values() if result.get("acct_mulaid_pay") not in (None, "0.00")) > 20
    assert seen == {ident: result for ident, result in expected.items() if ident in seen}
    assert set(seen) == {event.claim_id for event in stream}
    psn_nos = [p["psn_no"] for p in traffic.persons]
    assert figures(await states_of(store, psn_nos)) == figures(await states_of(ref, psn_nos))
