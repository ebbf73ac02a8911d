"""Settling one event at a time straight on the in-memory store: `gongji replay`'s engine.

Replay settles a file in order from empty state, with nothing else writing: the Settler's passes,
overlays, tokens and retries (gongji.settlement.settler, planning) guard against what cannot happen
here. This applies the same rules (gongji.settlement.rules) to each event and writes the store's
dictionaries as MemoryStore.commit would. What involves a family account (家庭共济: holds on another
person's account) and the gateway's questions go to the Settler itself, on the same store, so there
is still one implementation of those.

Tests: tests/unit/test_replay_engine.py (against the Settler one event at a time, and a large
synthetic stream against the batching path).
"""

from __future__ import annotations

import dataclasses
import secrets

from gongji.settlement import rules as settlement_rules
from gongji.settlement.domain import ClaimRecord, CreditRecord, Output, PersonState, Rejection
from gongji.settlement.events import INQUIRIES, Claim, Credit, Event, Institution, Person, Reversal
from gongji.settlement.idempotency import fingerprint, replayed, taken
from gongji.settlement.memory_store import MemoryStore
from gongji.settlement.planning import Rules
from gongji.settlement.policy import PolicyBook
from gongji.settlement.settler import Settler
from gongji.settlement.store import claim_key, credit_key

_EMPTY = PersonState()


class Sequential:
    """Settles events one at a time, in order, on a MemoryStore: what a Settler handed them one by
    one gives, with less work per event."""

    def __init__(self, book: PolicyBook, rules: Rules = settlement_rules):
        self.store = MemoryStore()
        self.book = book
        self.rules = rules
        self.settler = Settler(self.store, book, rules)
        self.nonce = secrets.token_hex(6)

    async def handle(self, event: Event) -> list[Output]:
        """The event's results (none for an accepted registry entry)."""
        if isinstance(event, Person):
            refused = self.rules.check_person(event)
            if refused:
                return [Output(event.psn_no, refused)]
            self.store.persons[event.psn_no] = event
            return []
        if isinstance(event, Institution):
            self.store.institutions[event.fixmedins_code] = event
            return []
        if isinstance(event, INQUIRIES):
            return await self.settler.handle([event])
        if isinstance(event, Claim):
            output = self._claim(event)
        elif isinstance(event, Reversal):
            output = self._reversal(event)
        else:
            output = self._credit(event)
        return await self.settler.handle([event]) if output is None else [output]

    def _taken(self, event, key: str) -> Output | None:
        """A conflict if the id is another person's; else the result again if the event was settled."""
        owner = self.store.owners.setdefault(key, event.psn_no)
        if owner != event.psn_no:
            return Output(event.psn_no, taken(event, owner))
        record = self.store.records.get((event.psn_no, key))
        if record is not None:
            kind = "claim" if isinstance(event, Claim) else "reversal" if isinstance(event, Reversal) else "credit"
            return replayed(event, record, kind)
        return None

    def _commit(self, psn_no: str, key: str, state: PersonState, record) -> None:
        """What MemoryStore.commit writes: the state (the pending marks as stored, less this event's),
        the record."""
        store = self.store
        pending = store.states.get(psn_no, _EMPTY).pending
        ident = key[2:]
        if ident in pending:
            pending = {claim: holder for claim, holder in pending.items() if claim != ident}
        store.states[psn_no] = dataclasses.replace(state, token=f"{key}@{self.nonce}", pending=pending)
        store.records[(psn_no, key)] = record

    def _claim(self, claim: Claim) -> Output | None:
        store = self.store
        person = store.persons.get(claim.psn_no)
        state = store.states.get(claim.psn_no, _EMPTY)
        holder = person.mulaid_holder_psn_no if person is not None and claim.acct_used_flag == "1" else None
        if holder is not None or claim.claim_id in state.pending:
            return None  # a family account: the Settler's holds
        key = claim_key(claim.claim_id)
        answer = self._taken(claim, key)
        if answer is not None:
            return answer
        rx = claim.rx_fixmedins_code
        outcome = self.rules.settle_claim(claim, person, store.institutions.get(claim.fixmedins_code), self.book,
                                          state, None, prescriber=store.institutions.get(rx) if rx else None)
        if isinstance(outcome, Rejection):
            return Output(claim.psn_no, outcome)
        self._commit(claim.psn_no, key, outcome.state, ClaimRecord(fingerprint(claim), outcome.settlement, outcome.effects))
        return Output(claim.psn_no, outcome.settlement)

    def _reversal(self, reversal: Reversal) -> Output | None:
        store = self.store
        key = claim_key(reversal.claim_id)
        answer = self._taken(reversal, key)
        if answer is not None:
            return answer
        original_key = (reversal.psn_no, claim_key(reversal.orig_claim_id))
        original = store.records.get(original_key)
        outcome = self.rules.reverse_claim(reversal, original, store.states.get(reversal.psn_no, _EMPTY))
        if isinstance(outcome, Rejection):
            return Output(reversal.psn_no, outcome)
        if outcome.refund_holder:
            return None  # gives a family account back its payment: the Settler's holds
        self._commit(reversal.psn_no, key, outcome.state, ClaimRecord(fingerprint(reversal), outcome.settlement, original.effects))
        store.records[original_key] = dataclasses.replace(original, reversed_by=reversal.claim_id)
        return Output(reversal.psn_no, outcome.settlement)

    def _credit(self, credit: Credit) -> Output | None:
        store = self.store
        key = credit_key(credit.credit_id)
        answer = self._taken(credit, key)
        if answer is not None:
            return answer
        outcome = self.rules.apply_credit(credit, store.persons.get(credit.psn_no), self.book,
                                          store.states.get(credit.psn_no, _EMPTY))
        if isinstance(outcome, Rejection):
            return Output(credit.psn_no, outcome)
        self._commit(credit.psn_no, key, outcome.state, CreditRecord(fingerprint(credit), outcome.result))
        return Output(credit.psn_no, outcome.result)
