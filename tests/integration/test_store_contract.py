"""One contract suite for every SettlementStore: the in-memory store (replay) and the Redis store
(the service, against the real Redis-protocol server from the fixtures)."""

from __future__ import annotations

import dataclasses
from datetime import date
from decimal import Decimal


from gongji.settlement.catalogue import CatalogueItem
from gongji.settlement.domain import (
    ClaimRecord,
    CreditApplied,
    CreditRecord,
    Effects,
    PersonState,
    SetlDetail,
    Settlement,
    YearTotals,
)
from gongji.settlement.events import Institution, Person
from gongji.settlement.store import Commit, Hold, Status, claim_key, credit_key


PERSON = Person(psn_no="P1", insutype="310", psn_type="1101", insu_admdvs="152501", psn_insu_stas="1",
                mulaid_holder_psn_no="H1", mulaid_relation="spouse")
INSTITUTION = Institution(fixmedins_code="H001", fixmedins_name="Erenhot hospital", fixmedins_type="1",
                          medins_lv="3", grassroots=False, admdvs="152501")


def settlement(claim_id: str, **changes) -> Settlement:
    base = Settlement(
        claim_id=claim_id, setl_id="SETL" + claim_id, psn_no="P1", mdtrt_id="M1", med_type="11",
        psn_type="1101", insu_admdvs="152501", mdtrtarea_admvs="152501", fixmedins_code="H001",
        setl_time="2023-03-01T10:00:00+08:00", medfee_sumamt=150000, fulamt_ownpay_amt=0, overlmt_selfpay=0,
        preselfpay_amt=3000, inscp_scp_amt=147000, act_pay_dedc=100000, hifp_pay=28200,
        pool_prop_selfpay=Decimal("0.6000"), hifob_pay=0, cvlserv_pay=0, maf_pay=0, oth_pay=0,
        fund_pay_sumamt=28200, psn_part_amt=121800, acct_pay=1000, acct_mulaid_pay=500, psn_cash_pay=120300,
        balc=0, clr_type="11", clr_optins="152501",
        setldetail=(SetlDetail("310100", 28200, 400000, "普通门诊统筹 ratio 0.60"),),
    )
    return dataclasses.replace(base, **changes)


def record(claim_id: str, **changes) -> ClaimRecord:
    return ClaimRecord("fp-" + claim_id, settlement(claim_id, **changes),
                       Effects(year=2023, deductible=100000, outpatient_pool=28200, fund_cap=28200, visits=1,
                               medfee=150000, acct_pay=1000, mulaid_holder="H1", mulaid_pay=500))


def state(token: str, balance: int = 0, **year) -> PersonState:
    return PersonState(token=token, balance=balance, years={2023: YearTotals(**year)} if year else {})


async def test_empty_store_reads_defaults(store):
    snap = await store.read({"P1"}, {"H001"}, {("P1", claim_key("C1"))})
    assert snap.persons == {"P1": None}
    assert snap.institutions == {"H001": None}
    assert snap.states == {"P1": PersonState()}
    assert snap.records == {("P1", "c:C1"): None}


async def test_registry_entries_round_trip(store):
    await store.put_persons([PERSON])
    await store.put_institutions([INSTITUTION])
    snap = await store.read({"P1"}, {"H001"}, set())
    assert snap.persons["P1"] == PERSON
    assert snap.institutions["H001"] == INSTITUTION
    changed = PERSON.model_copy(update={"psn_insu_stas": "2"})
    await store.put_persons([changed])
    assert (await store.read({"P1"}, set(), set())).persons["P1"] == changed
    # Person schema version 2: enrolment dates (continuity) and the birth date (儿童脑瘫) come back.
    dated = PERSON.model_copy(update={"chronic_diseases": ("I10", "G80.1"), "brdy": "2015-03-10",
                                      "chronic_since": {"I10": "2023-12-31", "G80.1": "2020-01-01"}})
    await store.put_persons([dated])
    assert (await store.read({"P1"}, set(), set())).persons["P1"] == dated


async def test_commit_writes_state_and_record_exactly(store):
    new = state("c:C1", balance=4000, deductible_used=100000, outpatient_pool_paid=28200, fund_cap_used=28200,
                visits=1, medfee=150000)
    assert await store.commit([Commit("P1", "", new, claim_key("C1"), record("C1"))]) == [Status.OK]
    snap = await store.read({"P1"}, set(), {("P1", claim_key("C1"))})
    assert snap.states["P1"] == new
    assert snap.records[("P1", "c:C1")] == record("C1")


async def test_every_accumulator_round_trips(store):
    """Issue 3's layers: chronic groups (names in Chinese), large-amount, civil-servant, assistance.
    A commit carries the state its record's effects produced; the store keeps exactly that."""
    moved = Effects(year=2023, deductible=1, outpatient_pool=2, fund_cap=3, visits=1, medfee=4, major_deductible=5,
                    hifob_deductible=6, hifob=7, cvlserv_deductible=8, cvlserv=9, maf_deductible=10, maf=11,
                    maf_pref_burden=15, maf_pref=16, chronic_group="高血压、糖尿病", chronic_deductible=12, chronic_pool=13)
    first = YearTotals().plus(moved)
    again = dataclasses.replace(moved, chronic_group="冠心病", chronic_deductible=0, chronic_pool=14)
    second = first.plus(again)
    states = [PersonState(token="c:C1", balance=5, years={2023: first}),
              PersonState(token="c:C2", balance=6, years={2023: second})]
    records = [dataclasses.replace(record(ident), effects=effects) for ident, effects in (("C1", moved), ("C2", again))]
    assert await store.commit([Commit("P1", "", states[0], claim_key("C1"), records[0]),
                               Commit("P1", "c:C1", states[1], claim_key("C2"), records[1])]) == [Status.OK] * 2
    got = (await store.read({"P1"}, set(), set())).states["P1"]
    assert got == states[1]
    assert got.year(2023).chronic_paid == {"高血压、糖尿病": 13, "冠心病": 14}


async def test_commit_is_conditional_on_token_and_record(store):
    first = Commit("P1", "", state("c:C1", 10), claim_key("C1"), record("C1"))
    assert await store.commit([first]) == [Status.OK]
    # The same event again: its record exists, nothing changes.
    again = dataclasses.replace(first, state=state("c:C1", 999))
    assert await store.commit([again]) == [Status.DUPLICATE]
    # Another event computed from an old token: refused, state unchanged.
    stale = Commit("P1", "", state("c:C2", 777), claim_key("C2"), record("C2"))
    assert await store.commit([stale]) == [Status.STALE]
    snap = await store.read({"P1"}, set(), {("P1", claim_key("C2"))})
    assert snap.states["P1"].balance == 10
    assert snap.records[("P1", "c:C2")] is None


async def test_commits_in_one_call_chain_in_order(store):
    commits = [
        Commit("P1", "", state("c:C1", 10), claim_key("C1"), record("C1")),
        Commit("P1", "c:C1", state("c:C2", 20), claim_key("C2"), record("C2")),
        Commit("P1", "c:C1", state("c:C3", 30), claim_key("C3"), record("C3")),  # computed from a stale token
    ]
    assert await store.commit(commits) == [Status.OK, Status.OK, Status.STALE]
    assert (await store.read({"P1"}, set(), set())).states["P1"].balance == 20


async def test_reversal_marks_original_once(store):
    await store.commit([Commit("P1", "", state("c:C1", 10), claim_key("C1"), record("C1"))])
    reversal = record("R1", orig_claim_id="C1", orig_setl_id="SETLC1")
    undo = Commit("P1", "c:C1", state("c:R1", 20), claim_key("R1"), reversal, reverses=claim_key("C1"))
    assert await store.commit([undo]) == [Status.OK]
    snap = await store.read({"P1"}, set(), {("P1", claim_key("C1")), ("P1", claim_key("R1"))})
    assert snap.records[("P1", "c:C1")].reversed_by == "R1"
    assert snap.records[("P1", "c:R1")].settlement.orig_claim_id == "C1"
    second = Commit("P1", "c:R1", state("c:R2", 30), claim_key("R2"), record("R2"), reverses=claim_key("C1"))
    assert await store.commit([second]) == [Status.STALE]


async def test_reversal_marks_a_lean_original_once(store):
    """The same with content fingerprints (digests), so the Redis store writes its records in the lean
    form, whose reversal mark commit.lua finds after the data's stated lengths."""
    digest = "0123456789abcdef0123456789abcdef"
    original = dataclasses.replace(record("C1"), fingerprint=digest)
    await store.commit([Commit("P1", "", state("c:C1", 10), claim_key("C1"), original)])
    reversal = dataclasses.replace(record("R1", orig_claim_id="C1", orig_setl_id="SETLC1"), fingerprint=digest)
    undo = Commit("P1", "c:C1", state("c:R1", 20), claim_key("R1"), reversal, reverses=claim_key("C1"))
    assert await store.commit([undo]) == [Status.OK]
    snap = await store.read({"P1"}, set(), {("P1", claim_key("C1"))})
    assert snap.records[("P1", "c:C1")].reversed_by == "R1"
    again = dataclasses.replace(record("R2", orig_claim_id="C1", orig_setl_id="SETLC1"), fingerprint=digest)
    second = Commit("P1", "c:R1", state("c:R2", 30), claim_key("R2"), again, reverses=claim_key("C1"))
    assert await store.commit([second]) == [Status.STALE]
    assert (await store.read({"P1"}, set(), set())).states["P1"].balance == 20


async def test_a_reversal_of_a_claim_not_on_record_is_stale(store):
    """Validate first: a reversal whose original is missing writes nothing, not even a mark on it."""
    undo = Commit("P1", "", state("c:R1", 20), claim_key("R1"), record("R1", orig_claim_id="C9"),
                  reverses=claim_key("C9"))
    assert await store.commit([undo]) == [Status.STALE]
    snap = await store.read({"P1"}, set(), {("P1", claim_key("C9")), ("P1", claim_key("R1"))})
    assert snap.records == {("P1", "c:C9"): None, ("P1", "c:R1"): None}
    assert (snap.states["P1"].token, snap.states["P1"].balance) == ("", 0)


async def test_credit_record_round_trips(store):
    credit = CreditRecord("fp-K1", CreditApplied("K1", "P1", "2023-01", 16000, 16000))
    assert await store.commit([Commit("P1", "", state("k:K1", 16000), credit_key("K1"), credit)]) == [Status.OK]
    snap = await store.read({"P1"}, set(), {("P1", credit_key("K1"))})
    assert snap.records[("P1", "k:K1")] == credit


async def credited(store, psn_no: str, fen: int) -> None:
    await store.commit([Commit(psn_no, "", state(f"k:K-{psn_no}", fen), credit_key(f"K-{psn_no}"),
                               CreditRecord("fp", CreditApplied(f"K-{psn_no}", psn_no, "2023-01", fen, fen)))])


async def balance(store, psn_no: str) -> int:
    return (await store.read({psn_no}, set(), set())).states[psn_no].balance


async def test_hold_moves_only_from_what_the_plan_read(store):
    await credited(store, "H1", 10000)
    assert await store.hold([Hold("H1", "P1", "C1", 3000, expected=0)]) == [Status.OK]
    assert await store.hold([Hold("H1", "P1", "C1", 3000, expected=0)]) == [Status.STALE]  # a redo finds it done
    view = (await store.read_holders({("H1", "P1", "C1"), ("H1", "P1", "C9")}))
    assert (view[("H1", "P1", "C1")].balance, view[("H1", "P1", "C1")].held) == (7000, 3000)
    assert view[("H1", "P1", "C1")].available == 10000 and view[("H1", "P1", "C9")].held == 0
    assert view[("H1", "P1", "C1")].token == "h:P1:C1:3000@"
    assert await store.hold([Hold("H1", "P1", "C1", 2000, expected=3000)]) == [Status.OK]  # recomputed, smaller
    assert await balance(store, "H1") == 8000
    # A stale plan (it read 3000) cannot move the hold any more: a zombie after a rebalance.
    assert await store.hold([Hold("H1", "P1", "C1", 100, expected=3000)]) == [Status.STALE]
    assert await store.hold([Hold("H1", "P1", "C2", 8001, expected=0)]) == [Status.SHORT]  # never overdraws
    assert await store.hold([Hold("H1", "P1", "C1", 0, expected=2000)]) == [Status.OK]  # refund
    assert await balance(store, "H1") == 10000
    assert (await store.read_holders({("H1", "P1", "C1")}))[("H1", "P1", "C1")].held == 0


async def test_a_hold_to_the_amount_already_held_changes_nothing(store):
    """A hold that moves nothing leaves the holder's balance and token as they were, so the
    holder's own events computed on that token still commit."""
    await credited(store, "H1", 10000)
    assert await store.hold([Hold("H1", "P1", "C1", 3000, expected=0)]) == [Status.OK]
    token = (await store.read({"H1"}, set(), set())).states["H1"].token
    again = [Hold("H1", "P1", "C1", 3000, expected=3000, nonce="n2"), Hold("H1", "P1", "C2", 0, expected=0, nonce="n2")]
    assert await store.hold(again) == [Status.OK, Status.OK]
    after = (await store.read({"H1"}, set(), set())).states["H1"]
    assert (after.token, after.balance) == (token, 7000)
    views = await store.read_holders({("H1", "P1", "C1"), ("H1", "P1", "C2")})
    assert (views[("H1", "P1", "C1")].held, views[("H1", "P1", "C2")].held) == (3000, 0)


async def test_holds_of_two_patients_with_one_claim_id_do_not_collide(store):
    await credited(store, "H1", 10000)
    assert await store.hold([Hold("H1", "P1", "X", 100, expected=0), Hold("H1", "P2", "X", 30, expected=0)]) == [
        Status.OK, Status.OK]
    views = await store.read_holders({("H1", "P1", "X"), ("H1", "P2", "X")})
    assert (views[("H1", "P1", "X")].held, views[("H1", "P2", "X")].held) == (100, 30)
    assert await balance(store, "H1") == 9870


async def test_hold_of_a_large_balance_stays_exact(store):
    """Lua formats large numbers as 1.2e+14: amounts must never pass through a Lua number."""
    await credited(store, "H1", 123_456_789_012_345)
    assert await store.hold([Hold("H1", "P1", "C1", 98_765_432_101, expected=0)]) == [Status.OK]
    assert await balance(store, "H1") == 123_456_789_012_345 - 98_765_432_101


async def test_hold_changes_the_holders_token(store):
    await credited(store, "H1", 5000)
    await store.hold([Hold("H1", "P1", "C1", 1000, expected=0)])
    # The holder's own claim, computed before the hold, must not overwrite the debited balance.
    own = Commit("H1", "k:K-H1", state("c:C7", 5000), claim_key("C7"), record("C7"))
    assert await store.commit([own]) == [Status.STALE]


async def test_an_event_id_belongs_to_the_first_person_who_used_it(store):
    first = await store.read(set(), set(), set(), {("c:X", "P1"), ("k:Y", "P2")})
    assert first.owners == {"c:X": "P1", "k:Y": "P2"}
    again = await store.read(set(), set(), set(), {("c:X", "P2"), ("k:Y", "P2")})
    # P2 cannot take P1's claim id; who owns it is not said (Redis keeps a hash of the owner only)
    assert again.owners["k:Y"] == "P2" and again.owners["c:X"] not in ("P2", "")
    assert (await store.read(set(), set(), set(), {("c:X", "P1")})).owners == {"c:X": "P1"}


async def test_a_pending_mark_lasts_until_its_claim_commits(store):
    await store.mark_pending([("P1", "C1", "H1"), ("P1", "C2", "H2")])
    assert (await store.read({"P1"}, set(), set())).states["P1"].pending == {"C1": "H1", "C2": "H2"}
    token = (await store.read({"P1"}, set(), set())).states["P1"].token  # marking changes no token
    assert await store.commit([Commit("P1", token, state("c:C1", 10), claim_key("C1"), record("C1"))]) == [Status.OK]
    assert (await store.read({"P1"}, set(), set())).states["P1"].pending == {"C2": "H2"}


async def test_a_commit_leaves_the_pending_marks_as_stored(store):
    """The state a commit carries may hold marks the store no longer has (or never had): the
    store keeps its own, less the committing event's."""
    await store.mark_pending([("P1", "C2", "H2")])
    token = (await store.read({"P1"}, set(), set())).states["P1"].token
    carried = dataclasses.replace(state("c:C1", 10), pending={"C1": "H1", "C9": "H9"})
    assert await store.commit([Commit("P1", token, carried, claim_key("C1"), record("C1"))]) == [Status.OK]
    assert (await store.read({"P1"}, set(), set())).states["P1"].pending == {"C2": "H2"}
    carried = dataclasses.replace(state("c:C3", 10), pending={"C3": "H1"})
    assert await store.commit([Commit("P3", "", carried, claim_key("C3"), record("C3"))]) == [Status.OK]
    assert (await store.read({"P3"}, set(), set())).states["P3"].pending == {}


async def test_ids_full_of_separators_never_share_a_hold(store):
    """Reported: hold fields were "<patient>:<claim id>", so patient X's claim "c:1" and patient
    "X:c"'s claim "1" shared one hold, and a holder with 100.00 paid 100.00 to each."""
    await credited(store, "H1", 10000)
    first, second = Hold("H1", "X", "c:1", 10000, expected=0), Hold("H1", "X:c", "1", 10000, expected=0)
    assert await store.hold([first, second]) == [Status.OK, Status.SHORT]
    views = await store.read_holders({("H1", "X", "c:1"), ("H1", "X:c", "1")})
    assert (views[("H1", "X", "c:1")].held, views[("H1", "X:c", "1")].held) == (10000, 0)
    assert await balance(store, "H1") == 0


async def test_persons_whose_ids_hold_separators_keep_apart(store):
    """A person "P}:rec:c:x" and a person "P" with claim "x}:rec:c:y" must not meet in one key."""
    one = Commit("P", "", state("c:1", 100), claim_key("x}:rec:c:y"), record("x}:rec:c:y"))
    other = Commit("P}:rec:c:x", "", state("c:2", 200), claim_key("y"), record("y"))
    assert await store.commit([one, other]) == [Status.OK, Status.OK]
    snap = await store.read({"P", "P}:rec:c:x"}, set(), {("P", claim_key("x}:rec:c:y")), ("P}:rec:c:x", claim_key("y"))})
    assert snap.records[("P", "c:x}:rec:c:y")] == record("x}:rec:c:y")
    assert snap.records[("P}:rec:c:x", "c:y")] == record("y")
    assert (snap.states["P"].balance, snap.states["P}:rec:c:x"].balance) == (100, 200)


async def test_a_hold_applies_only_on_the_holders_token_it_read(store):
    """A hold planned on top of another write to the same account (which did not happen) is stale:
    it is never applied to a balance its plan did not see."""
    await credited(store, "H1", 10000)
    token = (await store.read({"H1"}, set(), set())).states["H1"].token
    assert await store.hold([Hold("H1", "P1", "C1", 100, expected=0, holder_token="some other")]) == [Status.STALE]
    assert await balance(store, "H1") == 10000
    first = Hold("H1", "P1", "C1", 100, expected=0, nonce="n", holder_token=token)
    chained = Hold("H1", "P2", "C2", 200, expected=0, nonce="n", holder_token=first.token)
    assert await store.hold([first, chained]) == [Status.OK, Status.OK]
    assert await balance(store, "H1") == 9700


async def test_a_registry_entry_stored_under_older_rules_still_loads(store):
    """Entries are validated when they arrive, not again when read: a rule added since (here an id
    with a surrounding space, refused today) must not make a stored person unreadable."""
    older = PERSON.model_construct(**{**PERSON.model_dump(), "psn_no": "P1", "fd_fixmedins_code": "H001 ",
                                      "chronic_diseases": ("I10",)})
    await store.put_persons([older])
    assert (await store.read({"P1"}, set(), set())).persons["P1"] == older
    assert (await store.read_holders({("P1", "X", "C1")}))[("P1", "X", "C1")].person == older


async def test_a_grant_on_application_and_a_preferential_payment_round_trip(store):
    """Seed 003's assistance on application (the aid_ fields of a person entry) and 倾斜救助 (maf_pref_pay
    in the record, its accumulators in the state) come back exactly."""
    granted = PERSON.model_copy(update=dict(aid_idet_type="relapse_risk", aid_begndate="2023-06-01",
                                            aid_enddate="2023-06-30", aid_apprv_org="医保局", aid_apprv_date="2023-05-20"))
    await store.put_persons([granted])
    assert (await store.read({"P1"}, set(), set())).persons["P1"] == granted
    kept = dataclasses.replace(record("C1", maf_pay=4500, maf_pref_pay=500),
                               effects=Effects(year=2023, visits=1, maf=4000, maf_pref_burden=900, maf_pref=500))
    new = state("c:C1", maf_paid=4000, maf_pref_burden_used=900, maf_pref_paid=500, visits=1)
    assert await store.commit([Commit("P1", "", new, claim_key("C1"), kept)]) == [Status.OK]
    snap = await store.read({"P1"}, set(), {("P1", claim_key("C1"))})
    assert snap.states["P1"] == new and snap.records[("P1", "c:C1")] == kept


ITEM = CatalogueItem(admdvs="152501", med_list_codg="XH08", begndate="2023-01-01", chrgitm_lv="02",
                     selfpay_prop="0.05", pric_uplmt_amt="220.5", hilist_name="CT 平扫")


def by_day(versions) -> list:
    return sorted(versions, key=lambda item: item.begndate)


async def test_catalogue_versions_round_trip_per_region_and_item(store):
    """就医地目录: every version of an item in a region comes back (the settlement user may write and
    read `cat:*`); the same key loaded again replaces its version; other regions and items keep apart."""
    wants = {("152501", "XH08"), ("990100", "XH08"), ("152501", "XH08:2")}
    assert await store.read_catalogue(wants) == {want: () for want in wants}
    later = ITEM.model_copy(update={"begndate": date(2023, 7, 1), "enddate": date(2023, 12, 31),
                                    "pric_uplmt_amt": Decimal("200")})
    elsewhere = ITEM.model_copy(update={"admdvs": "990100", "selfpay_prop": Decimal("0.3"), "hilist_name": None})
    separators = ITEM.model_copy(update={"med_list_codg": "XH08:2", "chrgitm_lv": "01", "selfpay_prop": None})
    await store.put_catalogue([ITEM, later, elsewhere, separators])
    found = await store.read_catalogue(wants)
    assert by_day(found[("152501", "XH08")]) == [ITEM, later]
    assert found[("990100", "XH08")] == (elsewhere,) and found[("152501", "XH08:2")] == (separators,)
    withdrawn = later.model_copy(update={"vali_flag": "0"})
    await store.put_catalogue([withdrawn])
    assert by_day((await store.read_catalogue({("152501", "XH08")}))[("152501", "XH08")]) == [ITEM, withdrawn]
    (stored, _) = by_day((await store.read_catalogue({("152501", "XH08")}))[("152501", "XH08")])
    assert (stored.begndate, stored.selfpay_prop, stored.pric_uplmt_amt) == (
        date(2023, 1, 1), Decimal("0.05"), Decimal("220.5"))
