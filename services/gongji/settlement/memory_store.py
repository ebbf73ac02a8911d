"""The settlement store in dictionaries: for `gongji replay` and unit tests.

It passes the same contract suite as Redis (tests/integration/test_store_contract.py), so what a
test proves on it holds for the service.
"""

from __future__ import annotations

import dataclasses

from gongji.settlement import window
from gongji.settlement.catalogue import CatalogueItem
from gongji.settlement.domain import PersonState
from gongji.settlement.events import Institution, Person
from gongji.settlement.store import Commit, Hold, HolderView, Record, Snapshot, Status

_EMPTY = PersonState()  # a person of whom nothing is stored (frozen: shared)


class MemoryStore:
    """Dictionaries; for `gongji replay` and unit tests. Passes the same contract suite as Redis."""

    def __init__(self) -> None:
        self.persons: dict[str, Person] = {}
        self.institutions: dict[str, Institution] = {}
        self.catalogue: dict[tuple[str, str], dict[str, CatalogueItem]] = {}  # (region, item) → first day → version
        self.states: dict[str, PersonState] = {}
        self.records: dict[tuple[str, str], Record] = {}
        self.holds: dict[tuple[str, str, str], int] = {}  # (holder, patient, claim id) → fen held
        self.owners: dict[str, str] = {}  # event key → person
        self.kept: dict[str, list[str]] = {}  # person → their record keys, oldest first

    def _close(self, psn_no: str, kept_from: int) -> None:
        """Drop the person's records of the years before `kept_from`, and their ids (as Redis does)."""
        keys = []
        for key in self.kept.get(psn_no, ()):
            if window.year_of(self.records[(psn_no, key)]) < kept_from:
                del self.records[(psn_no, key)]
                if self.owners.get(key) == psn_no:
                    del self.owners[key]
            else:
                keys.append(key)
        self.kept[psn_no] = keys

    async def put_persons(self, persons: list[Person]) -> None:
        for person in persons:
            self.persons[person.psn_no] = person

    async def put_institutions(self, institutions: list[Institution]) -> None:
        for institution in institutions:
            self.institutions[institution.fixmedins_code] = institution

    async def put_catalogue(self, items: list[CatalogueItem]) -> None:
        for item in items:
            self.catalogue.setdefault((item.admdvs, item.med_list_codg), {})[item.begndate.isoformat()] = item

    async def read_catalogue(self, wants):
        return {want: tuple(self.catalogue.get(want, {}).values()) for want in wants}

    async def read(self, psn_nos, institution_codes, record_keys, claims=frozenset(), catalogue=frozenset(),
                   holders=frozenset(), along=None) -> Snapshot:
        _no_round_trips(along)
        states, persons, institutions, records, owners = (self.states, self.persons, self.institutions,
                                                          self.records, self.owners)
        return Snapshot(
            persons={psn: persons.get(psn) for psn in psn_nos},
            institutions={code: institutions.get(code) for code in institution_codes},
            states={psn: states.get(psn, _EMPTY) for psn in psn_nos},
            records={key: records.get(key) for key in record_keys},
            owners={key: owners.setdefault(key, psn) for key, psn in claims},
            catalogue={want: tuple(self.catalogue.get(want, {}).values()) for want in catalogue},
            holders=self._views(holders),
        )

    def reading(self, *args, **kwargs) -> None:
        return None  # no round trips: the pass reads when it comes

    async def read_holders(self, wants):
        return self._views(wants)

    def _views(self, wants):
        views = {}
        for holder, patient, claim_id in wants:
            state = self.states.get(holder, PersonState())
            held = self.holds.get((holder, patient, claim_id), 0)
            views[(holder, patient, claim_id)] = HolderView(state.token, state.balance, held, self.persons.get(holder))
        return views

    async def mark_pending(self, marks: list[tuple[str, str, str]]) -> None:
        for patient, claim_id, holder in marks:
            state = self.states.get(patient, PersonState())
            self.states[patient] = dataclasses.replace(state, pending={**state.pending, claim_id: holder})

    async def hold(self, holds: list[Hold]) -> list[Status]:
        statuses = []
        for hold in holds:
            state = self.states.get(hold.holder, PersonState())
            key = (hold.holder, hold.patient, hold.claim_id)
            if self.holds.get(key, 0) != hold.expected or (
                    hold.holder_token is not None and state.token != hold.holder_token):
                statuses.append(Status.STALE)
                continue
            delta = hold.amount - hold.expected
            if delta > state.balance:
                statuses.append(Status.SHORT)
                continue
            if delta:
                if hold.amount:
                    self.holds[key] = hold.amount
                else:
                    del self.holds[key]
                self.states[hold.holder] = dataclasses.replace(state, balance=state.balance - delta, token=hold.token)
            statuses.append(Status.OK)
        return statuses

    async def commit(self, commits: list[Commit], along=None) -> list[Status]:
        _no_round_trips(along)
        statuses = []
        states, records, kept = self.states, self.records, self.kept
        for commit in commits:
            psn_no = commit.psn_no
            if (psn_no, commit.record_key) in records:
                statuses.append(Status.DUPLICATE)
                continue
            before = states.get(psn_no, _EMPTY)
            if before.token != commit.expected:
                statuses.append(Status.STALE)
                continue
            if commit.reverses is not None:
                original = records.get((psn_no, commit.reverses))
                if original is None or original.reversed_by is not None:
                    statuses.append(Status.STALE)
                    continue
            # Redis writes only the fields the event moved: the pending marks stay as stored, less
            # the one of this event. Nearly always there are none (states are never changed in
            # place, so the commit's own state is kept as it is then).
            state = commit.state
            stored = before.pending
            if stored or state.pending:
                event_id = commit.record_key.split(":", 1)[1]
                pending = {claim: holder for claim, holder in stored.items() if claim != event_id}
                state = dataclasses.replace(state, pending=pending)
            states[psn_no] = state
            if state.kept_from > before.kept_from:  # the reversal window closed years (window.py)
                self._close(psn_no, state.kept_from)
            records[(psn_no, commit.record_key)] = commit.record
            if psn_no in kept:
                kept[psn_no].append(commit.record_key)
            else:
                kept[psn_no] = [commit.record_key]
            if commit.reverses is not None:
                original = records[(psn_no, commit.reverses)]
                records[(psn_no, commit.reverses)] = dataclasses.replace(
                    original, reversed_by=commit.record.settlement.claim_id)
            statuses.append(Status.OK)
        return statuses


def _no_round_trips(along) -> None:
    if along is not None:  # the batch's markers would never be read nor sealed
        raise ValueError("the memory store makes no round trips for other commands to ride")
