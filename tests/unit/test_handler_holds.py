"""Family mutual aid (家庭共济) holds across a crash and a retry, in the Settler on the memory store.

The hold on the holder's account is written before the patient's commit; a process can die in
between. When the claim comes again, what is already held counts as available, the hold follows what
the claim now needs (up or down, or back to zero when the claim is refused), and a hold that fails
is never followed by a commit that says it was paid. B holds the account (100.00); A, B's spouse,
has no money of their own; A's visit is one 丙类 line of 100.00, all of it A's to pay, so the family
account pays what it can of it."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest
from tests.unit.builders import BOOK, claim, credit, fen, institution, line, person

from gongji.settlement.domain import Rejection
from gongji.settlement.settler import Settler
from gongji.settlement.memory_store import MemoryStore
from gongji.settlement.store import Status

pytestmark = pytest.mark.unit

HOLDER, PATIENT = person("B"), person("A", mulaid_holder_psn_no="B", mulaid_relation="spouse")
VISIT = claim(line("100.00", lv="03"), psn_no="A", acct_used_flag="1", claim_id="C-1")


class Crashing(MemoryStore):
    """While `crash` is set, the holds are written and the process dies before the patient's commit."""

    crash = False

    async def commit(self, commits):
        if self.crash:
            raise ConnectionError("died before the commit")
        return await super().commit(commits)


def handle(store, events):
    return [output.value for output in asyncio.run(Settler(store, BOOK).handle(events))]


def crashed_with_the_hold_written() -> MemoryStore:
    store = Crashing()
    handle(store, [institution(), HOLDER, PATIENT, credit("2023-01", amount="100.00", psn_no="B")])
    store.crash = True
    with pytest.raises(ConnectionError):
        handle(store, [VISIT])
    assert store.states["B"].balance == 0 and store.holds == {("B", "A", "C-1"): fen("100.00")}
    store.crash = False  # the next process commits
    return store


def test_what_an_earlier_attempt_holds_counts_as_available():
    """Retry: B's balance is 0.00, but 100.00 is held for this very claim: the family pays 100.00."""
    store = crashed_with_the_hold_written()
    (paid,) = handle(store, [VISIT])
    assert (paid.acct_mulaid_pay, paid.psn_cash_pay) == (fen("100.00"), 0)
    assert store.states["B"].balance == 0 and store.holds == {("B", "A", "C-1"): fen("100.00")}


def test_a_hold_shrinks_when_the_claim_comes_again_needing_less():
    """Before the retry A's own account gets 60.00: own account 60.00, family 40.00, and the 100.00
    held goes down to 40.00, so B's balance is 100.00 − 40.00 = 60.00."""
    store = crashed_with_the_hold_written()
    _, paid = handle(store, [credit("2023-02", amount="60.00", psn_no="A"), VISIT])
    assert (paid.acct_pay, paid.acct_mulaid_pay, paid.psn_cash_pay) == (fen("60.00"), fen("40.00"), 0)
    assert store.states["B"].balance == fen("60.00") and store.holds == {("B", "A", "C-1"): fen("40.00")}


def test_a_claim_refused_when_it_comes_again_gives_the_hold_back():
    """Before the retry A's benefits are suspended: NOT_INSURED, and B gets the 100.00 back."""
    store = crashed_with_the_hold_written()
    suspended = PATIENT.model_copy(update={"psn_insu_stas": "2"})
    (refused,) = handle(store, [suspended, VISIT])
    assert isinstance(refused, Rejection) and refused.err_code == "NOT_INSURED"
    assert store.states["B"].balance == fen("100.00") and store.holds == {}


def test_a_suspended_person_is_refused_as_such_whatever_their_binding():
    """NOT_INSURED (a real suspension, which the fraud service watches), not MULAID_NOT_ALLOWED,
    even when the family account holder is not in the registry either."""
    store = MemoryStore()
    suspended = person("A", mulaid_holder_psn_no="Z", mulaid_relation="spouse", psn_insu_stas="2")
    (refused,) = handle(store, [institution(), suspended, VISIT])
    assert isinstance(refused, Rejection) and refused.err_code == "NOT_INSURED"


class HolderSpendsFirst(MemoryStore):
    """Between the plan's read and its hold, B's own claim elsewhere spends 70.00 of B's 100.00 (a
    write this consumer did not see): the hold's token no longer matches."""

    spent = False

    async def hold(self, holds):
        if not self.spent:
            self.spent = True
            state = self.states["B"]
            self.states["B"] = dataclasses.replace(state, balance=state.balance - fen("70.00"), token="c:elsewhere")
        return await super().hold(holds)


def test_a_failed_hold_is_never_followed_by_a_commit_that_says_it_was_paid():
    """The hold fails, the claim is planned again on B's 30.00: the family pays 30.00, A pays 70.00
    cash, and B's balance is 0.00."""
    store = HolderSpendsFirst()
    handle(store, [institution(), HOLDER, PATIENT, credit("2023-01", amount="100.00", psn_no="B")])
    (paid,) = handle(store, [VISIT])
    assert (paid.acct_mulaid_pay, paid.psn_cash_pay) == (fen("30.00"), fen("70.00"))
    assert store.states["B"].balance == 0 and store.holds == {("B", "A", "C-1"): fen("30.00")}


def test_a_redelivered_claim_refused_now_still_keeps_what_it_paid():
    """A's visit is settled (the family paid 100.00); A's benefits are then suspended, and the visit is
    delivered again. It is the same settlement again: B's 100.00 stays paid, nothing is given back."""
    store = MemoryStore()
    handle(store, [institution(), HOLDER, PATIENT, credit("2023-01", amount="100.00", psn_no="B")])
    (paid,) = handle(store, [VISIT])
    (again,) = handle(store, [PATIENT.model_copy(update={"psn_insu_stas": "2"}), VISIT])
    assert again == paid and paid.acct_mulaid_pay == fen("100.00")
    assert store.states["B"].balance == 0 and store.holds == {("B", "A", "C-1"): fen("100.00")}



class CountingHolders(MemoryStore):
    """Counts the family accounts read apart (read_holders); `rebind`: after the first pass's read,
    the patient is bound to that holder instead (what a pass may find changed under it)."""

    def __init__(self, rebind: str | None = None):
        super().__init__()
        self.asked: list[set] = []
        self.rebind = rebind

    async def read(self, *args, **kwargs):
        snap = await super().read(*args, **kwargs)
        if self.rebind and "A" in snap.persons:
            self.persons["A"], self.rebind = PATIENT.model_copy(update={"mulaid_holder_psn_no": self.rebind}), None
        return snap

    async def read_holders(self, wants):
        self.asked.append(set(wants))
        return await super().read_holders(wants)


@pytest.mark.parametrize("rebind", [None, "C"])
def test_the_pass_after_the_first_reads_the_family_accounts_with_its_snapshot(rebind):
    """A family claim waits for the second pass, which reads the holder's account with its
    snapshot, guessed from the first pass's (no round trip of its own); a holder that pass finds
    changed is read apart, and pays."""
    store = CountingHolders(rebind)
    handle(store, [institution(), HOLDER, person("C"), PATIENT, credit("2023-01", amount="100.00", psn_no="B"),
                   credit("2023-01", amount="100.00", psn_no="C", credit_id="K-C")])
    (paid,) = handle(store, [VISIT])
    assert (paid.acct_mulaid_pay, paid.psn_cash_pay) == (fen("100.00"), 0)
    assert store.asked == ([] if rebind is None else [{("C", "A", "C-1")}])
    assert (store.states["B"].balance, store.states["C"].balance) == ((0, fen("100.00")) if rebind is None
                                                                      else (fen("100.00"), 0))


class Contended(MemoryStore):
    """Its next `stale` commit round trips find every state changed (a zombie's writes)."""

    stale = 0

    async def commit(self, commits):
        if self.stale:
            self.stale -= 1
            return [Status.STALE for _ in commits]
        return await super().commit(commits)


def test_events_left_to_the_slow_path_settle_one_at_a_time_as_they_would_have():
    """Two passes without progress leave the batch to one event at a time; each event's first try
    guesses its family accounts from the last batch pass's snapshot, which read every person left."""
    setup = [institution(), HOLDER, PATIENT, person("P2"), credit("2023-01", amount="100.00", psn_no="B")]
    batch = [claim(line("30.00", lv="03"), psn_no="P2", claim_id="C-2"), VISIT]
    store, fresh = Contended(), MemoryStore()
    handle(store, setup)
    handle(fresh, setup)
    store.stale = 2
    assert handle(store, batch) == handle(fresh, batch[:1]) + handle(fresh, batch[1:])
    assert store.stale == 0 and _figures(store) == _figures(fresh)


def _figures(store: MemoryStore) -> dict:
    """Each person's balance and accumulators (the tokens carry a random nonce)."""
    return {psn: (state.balance, state.years) for psn, state in store.states.items()}
