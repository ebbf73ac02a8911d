"""The family accounts (家庭共济) of a settlement pass, pure: which holder each claim may draw on, the
holds to read, and the pass's running view of each holder's balance and holds as planned so far."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from gongji.settlement.domain import PersonState
from gongji.settlement.events import Claim, Person, Reversal
from gongji.settlement.steps import Work
from gongji.settlement.store import Hold, HolderView, Snapshot, claim_key

HoldKey = tuple[str, str, str]  # (holder, patient, claim id)


def _holder(person: Person | None, claim: Claim) -> str | None:
    """The family account holder this claim may draw on (家庭共济), if any."""
    return person.mulaid_holder_psn_no if person is not None and claim.acct_used_flag == "1" else None


def _stray(state: PersonState, claim: Claim, holder: str | None) -> str | None:
    """A holder an earlier, uncommitted attempt at this claim put a hold with, other than `holder`."""
    marked = state.pending.get(claim.claim_id)
    return marked if marked is not None and marked != holder else None


@dataclass(frozen=True, slots=True)
class Family:
    """The family accounts of a pass, found once from its snapshot: each claim's holder and stray
    holder (by position in the batch), the holds to read, and the persons whose events wait for the
    next pass (the optimistic pass defers family claims, and the holder's own events with them:
    they keep their order against the hold, which is written before the commit that would catch a
    duplicate)."""

    links: dict[int, tuple[str | None, str | None]]  # claim's position → (holder, stray)
    wants: set[HoldKey]
    deferred: set[str]


def family_accounts(work: Work, snap: Snapshot, optimistic: bool) -> Family:
    links: dict[int, tuple[str | None, str | None]] = {}
    wants: set[HoldKey] = set()
    deferred: set[str] = set()
    for index, event in work:
        if isinstance(event, Claim):
            holder = _holder(snap.persons.get(event.psn_no), event)
            stray = _stray(snap.states[event.psn_no], event, holder)
            links[index] = (holder, stray)
            if holder is not None or stray is not None:
                if optimistic:
                    deferred.update(psn for psn in (event.psn_no, holder) if psn is not None)
                    continue
                if holder is not None:
                    wants.add((holder, event.psn_no, event.claim_id))
                if stray is not None:
                    wants.add((stray, event.psn_no, event.claim_id))
        elif isinstance(event, Reversal):
            # As read: an original settled earlier in this very pass has no hold to read yet.
            original = snap.records.get((event.psn_no, claim_key(event.orig_claim_id)))
            if original is not None and original.effects.mulaid_holder:
                wants.add((original.effects.mulaid_holder, event.psn_no, event.orig_claim_id))
    return Family(links, wants, deferred)




class Holds:
    """This pass's view of family accounts: each holder's balance and token, and the amount held
    per (holder, patient, claim), as this batch's holds so far leave them."""

    def __init__(self, views: dict[HoldKey, HolderView], states: dict[str, PersonState]):
        self.views = views
        self.states = states
        self.held = {key: view.held for key, view in views.items()}
        self.accounts: dict[str, tuple[str, int]] = {}  # holder → (token, balance)
        # Holders whose account a hold of this pass moves. Holds are written before commits, so a
        # holder's own later events cannot chain on the hold's token here: they go to the next pass.
        self.touched: set[str] = set()

    def known(self, key: HoldKey) -> bool:
        return key in self.held

    def account(self, key: HoldKey) -> tuple[str, int]:
        holder = key[0]
        if holder in self.accounts:
            return self.accounts[holder]
        if holder in self.states:  # the holder settles in this batch too: their overlay state
            return self.states[holder].token, self.states[holder].balance
        view = self.views[key]
        return view.token, view.balance

    def available(self, key: HoldKey) -> int:
        return self.account(key)[1] + self.held[key]

    def move(self, key: HoldKey, amount: int, nonce: str) -> Hold:
        """Plan the hold for `key` to become `amount`, and apply it to this view."""
        holder, patient, claim_id = key
        hold = Hold(holder, patient, claim_id, amount, self.held[key], nonce, holder_token=self.account(key)[0])
        balance = self.account(key)[1] - (amount - hold.expected)
        self.accounts[holder] = (hold.token, balance)
        self.held[key] = amount
        self.touched.add(holder)
        if holder in self.states:
            self.states[holder] = dataclasses.replace(self.states[holder], token=hold.token, balance=balance)
        return hold


