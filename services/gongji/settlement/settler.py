"""Settle a batch of input events against a store: the one use case both the service and replay run.

A batch is settled in a few round trips whatever its size: read everything the batch needs, read
the family account holders it touches, compute every event in order on an overlay (so later events
see earlier ones), then write: holds first, commits second.

The first pass is optimistic: it does not read each event's own record, since almost every event is
new; a commit finds a duplicate anyway and refuses it. Events of persons with a family account
holder (and of the holder) skip the first pass, because a hold is written before the commit that
would catch the duplicate. Further passes take what is left, as a batch, reading everything, while
they make progress. What still finds the state changed under it (a zombie consumer) goes one event
at a time, until it sticks.
"""

from __future__ import annotations

import dataclasses
import hashlib
from datetime import datetime, timezone
from decimal import Decimal
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

import orjson

from gongji.settlement import rules
from gongji.settlement.domain import (
    Claim,
    ClaimRecord,
    Credit,
    CreditRecord,
    Event,
    Institution,
    Person,
    PersonState,
    Rejection,
    Reversal,
    Output,
    SettlementError,
)
from gongji.settlement.policy import PolicyBook
from gongji.settlement.store import (
    Commit,
    HolderView,
    Hold,
    SettlementStore,
    Status,
    claim_key,
    credit_key,
)

MAX_ATTEMPTS = 20


class StoreContention(SettlementError):
    """An event kept finding its person's state changed under it; the batch must be retried."""


def _canonical(value):
    if isinstance(value, dict):  # absent and null are the same: a field added later changes nothing
        return {key: _canonical(item) for key, item in value.items() if item is not None}
    if isinstance(value, (list, tuple)):
        return [_canonical(item) for item in value]
    if isinstance(value, Decimal):  # 3 and 3.0000 are one count
        return format(value.normalize(), "f")
    if isinstance(value, datetime):  # one instant, whatever the offset it was written with
        return value.astimezone(timezone.utc).isoformat()
    return value


def fingerprint(event: Claim | Reversal | Credit) -> str:
    """Content hash: the same id with other content is a DUPLICATE_CONFLICT. Canonical, so a resend
    written differently (decimal places, UTC offset, a newer schema's empty field) is the same."""
    canonical = orjson.dumps(_canonical(event.model_dump()), option=orjson.OPT_SORT_KEYS)
    return hashlib.blake2b(canonical, digest_size=16).hexdigest()


def _holder(person: Person | None, claim: Claim) -> str | None:
    """The family account holder this claim may draw on (家庭共济), if any."""
    return person.mulaid_holder_psn_no if person is not None and claim.acct_used_flag == "1" else None


def _stray(state: PersonState, claim: Claim, holder: str | None) -> str | None:
    """A holder an earlier, uncommitted attempt at this claim put a hold with, other than `holder`."""
    marked = state.pending.get(claim.claim_id)
    return marked if marked is not None and marked != holder else None


def _accounts(event: Event, snap, records) -> set[str]:
    """The family account holders whose account this event may move: a claim's holder (and the one
    an earlier attempt left a hold with), the holder a reversal refunds."""
    if isinstance(event, Claim):
        holder = _holder(snap.persons.get(event.psn_no), event)
        stray = _stray(snap.states[event.psn_no], event, holder)
        return {psn for psn in (holder, stray) if psn is not None}
    if isinstance(event, Reversal):
        original = records.get((event.psn_no, claim_key(event.orig_claim_id)))
        if original is not None and original.effects.mulaid_holder:
            return {original.effects.mulaid_holder}
    return set()


def _event_key(event: Claim | Reversal | Credit) -> str:
    return credit_key(event.credit_id) if isinstance(event, Credit) else claim_key(event.claim_id)


def _taken(event: Claim | Reversal | Credit, owner: str) -> Rejection:
    """CONTRACT Idempotency: an id is one request of one person; another person's use of it conflicts."""
    kind = "credit" if isinstance(event, Credit) else "reversal" if isinstance(event, Reversal) else "claim"
    ident = {"credit_id": event.credit_id} if isinstance(event, Credit) else {"claim_id": event.claim_id}
    return Rejection(err_code="DUPLICATE_CONFLICT", psn_no=event.psn_no, input_type=kind,
                     err_msg=f"{kind} id {next(iter(ident.values()))} already belongs to a {kind} of another "
                             f"person; the original stands. Send this one with a new id", **ident)


def _conflict(event: Claim | Reversal | Credit, kind: str) -> Rejection:
    ident = {"credit_id": event.credit_id} if isinstance(event, Credit) else {"claim_id": event.claim_id}
    name = next(iter(ident.values()))
    return Rejection(err_code="DUPLICATE_CONFLICT", psn_no=event.psn_no, input_type=kind,
                     err_msg=f"{kind} {name} was already processed with different content; the original stands. "
                             "Send a reversal and a new claim id to change it", **ident)


@dataclass(slots=True)
class _Planned:
    """What computing one event decided: its result, and the writes that make it true."""

    output: Output | None
    commit: Commit | None = None
    holds: tuple[Hold, ...] = ()
    again: bool = False  # cannot be decided in this pass: go to the next


class _Holds:
    """This pass's view of family accounts: each holder's balance and token, and the amount held
    per (holder, patient, claim), as this batch's holds so far leave them."""

    def __init__(self, views: dict[tuple[str, str, str], HolderView], states: dict[str, PersonState]):
        self.views = views
        self.states = states
        self.held = {key: view.held for key, view in views.items()}
        self.accounts: dict[str, tuple[str, int]] = {}  # holder → (token, balance)
        # Holders whose account a hold of this pass moves. Holds are written before commits, so a
        # holder's own later events cannot chain on the hold's token here: they go to the next pass.
        self.touched: set[str] = set()

    def known(self, key: tuple[str, str, str]) -> bool:
        return key in self.held

    def account(self, key: tuple[str, str, str]) -> tuple[str, int]:
        holder = key[0]
        if holder in self.accounts:
            return self.accounts[holder]
        if holder in self.states:  # the holder settles in this batch too: their overlay state
            return self.states[holder].token, self.states[holder].balance
        view = self.views[key]
        return view.token, view.balance

    def available(self, key: tuple[str, str, str]) -> int:
        return self.account(key)[1] + self.held[key]

    def move(self, key: tuple[str, str, str], amount: int, nonce: str) -> Hold:
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


class Settler:
    """Settles batches of events against a store under a policy book."""

    def __init__(self, store: SettlementStore, book: PolicyBook):
        self.store = store
        self.book = book

    async def handle(self, events: Sequence[Event]) -> list[Output]:
        """Settle `events` in order; returns their results in the same order (registry events
        that were accepted produce none). The results are those of handing the events over one at
        a time: a registry change applies between the events before it and those after it."""
        return [output for outputs in await self.handle_each(events) for output in outputs]

    async def handle_each(self, events: Sequence[Event]) -> list[list[Output]]:
        """As `handle`, the results of each event apart (none for an accepted registry event)."""
        results: list[list[Output]] = [[] for _ in events]
        persons: list[Person] = []
        institutions: list[Institution] = []
        work: list[tuple[int, Event]] = []
        for index, event in enumerate(events):
            if isinstance(event, (Person, Institution)):
                if work:  # the events before it see the registry as it was
                    await self._settle_all(work, results)
                    work = []
                if isinstance(event, Person):
                    refused = rules.check_person(event)
                    if refused:
                        results[index].append(Output(event.psn_no, refused))
                    else:
                        persons.append(event)
                else:
                    institutions.append(event)
            else:
                if persons or institutions:
                    await self._put_registry(persons, institutions)
                    persons, institutions = [], []
                work.append((index, event))
        if persons or institutions:
            await self._put_registry(persons, institutions)
        if work:
            await self._settle_all(work, results)
        return results

    async def _put_registry(self, persons: list[Person], institutions: list[Institution]) -> None:
        if persons:
            await self.store.put_persons(persons)
        if institutions:
            await self.store.put_institutions(institutions)

    async def _settle_all(self, work: list[tuple[int, Event]], results: list[list[Output]]) -> None:
        """Claims, reversals and credits, in passes: an optimistic one, then full passes over what
        is left while they make progress, then one event at a time."""
        retry = await self._settle(work, results, optimistic=True)
        while retry:  # full passes over what is left, as a batch, while they make progress
            left = await self._settle(retry, results, optimistic=False)
            if len(left) == len(retry):
                break
            retry = left
        for item in retry:  # the slow path: one event at a time, in order
            for _ in range(MAX_ATTEMPTS):
                if not await self._settle([item], results, optimistic=False):
                    break
            else:
                raise StoreContention(f"event {item[1]!r:.120} found its state changed {MAX_ATTEMPTS} times")

    async def _settle(self, work: list[tuple[int, Event]], results: list[list[Output]],
                      optimistic: bool) -> list[tuple[int, Event]]:
        """One pass; returns the events that must go again."""
        psn_nos, codes, keys, claims = set(), set(), set(), set()
        for _, event in work:
            psn_nos.add(event.psn_no)
            claims.add((_event_key(event), event.psn_no))
            if isinstance(event, Claim):
                codes.add(event.fixmedins_code)
                if not optimistic:
                    keys.add((event.psn_no, claim_key(event.claim_id)))
            elif isinstance(event, Reversal):
                if not optimistic:
                    keys.add((event.psn_no, claim_key(event.claim_id)))
                keys.add((event.psn_no, claim_key(event.orig_claim_id)))
            elif not optimistic:
                keys.add((event.psn_no, credit_key(event.credit_id)))
        snap = await self.store.read(psn_nos, codes, keys, claims)

        wants = set()  # (holder, patient, claim id) whose hold this pass reads
        deferred: set[str] = set()  # persons whose events wait for the second pass
        for _, event in work:
            if isinstance(event, Claim):
                holder = _holder(snap.persons.get(event.psn_no), event)
                stray = _stray(snap.states[event.psn_no], event, holder)
                if holder is not None or stray is not None:
                    if optimistic:
                        # The holder's own events too: they keep their order against the hold.
                        deferred.update(psn for psn in (event.psn_no, holder) if psn is not None)
                        continue
                    if holder is not None:
                        wants.add((holder, event.psn_no, event.claim_id))
                    if stray is not None:
                        wants.add((stray, event.psn_no, event.claim_id))
            elif isinstance(event, Reversal):
                original = snap.records.get((event.psn_no, claim_key(event.orig_claim_id)))
                if original is not None and original.effects.mulaid_holder:
                    wants.add((original.effects.mulaid_holder, event.psn_no, event.orig_claim_id))
        if deferred:
            retry_first = [item for item in work if item[1].psn_no in deferred]
            work = [item for item in work if item[1].psn_no not in deferred]
        else:
            retry_first = []
        views = await self.store.read_holders(wants) if wants else {}

        # Every write of this pass carries a fresh nonce in its token, so a commit computed on top
        # of one that failed can never match a token some earlier, real commit wrote.
        nonce = secrets.token_hex(6)
        states = dict(snap.states)
        records = dict(snap.records)
        holds = _Holds(views, states)
        # Writes go holds first, commits second, so a pass may only contain writes whose order on
        # each person's state that cannot change: for every person, either commits of their own
        # events or holds on their account, never both. And an event that waits for the next pass
        # blocks every later event touching a person it touches, so nothing overtakes it.
        blocked = set(deferred)  # persons with an event waiting for the next pass
        committing: set[str] = set()  # persons with a commit planned in this pass
        planned: list[tuple[int, Event, _Planned]] = []
        for index, event in work:
            touches = _accounts(event, snap, records)
            if snap.owners.get(_event_key(event), event.psn_no) != event.psn_no:
                plan = _Planned(Output(event.psn_no, _taken(event, snap.owners[_event_key(event)])))
            elif (event.psn_no in blocked or event.psn_no in holds.touched
                  or not touches.isdisjoint(blocked) or not touches.isdisjoint(committing)):
                plan = _Planned(None, again=True)
            elif isinstance(event, Claim):
                plan = self._plan_claim(event, snap, states, records, holds, nonce)
            elif isinstance(event, Reversal):
                plan = self._plan_reversal(event, states, records, holds, nonce)
            else:
                plan = self._plan_credit(event, snap, states, records, nonce)
            if plan.again:
                blocked.add(event.psn_no)
                blocked.update(touches)
            if plan.commit is not None:
                committing.add(event.psn_no)
                states[event.psn_no] = plan.commit.state
                records[(event.psn_no, plan.commit.record_key)] = plan.commit.record
                if plan.commit.reverses:
                    key = (event.psn_no, plan.commit.reverses)
                    records[key] = dataclasses.replace(records[key], reversed_by=event.claim_id)
            planned.append((index, event, plan))

        # Writes: holds first (the holder's side must exist before the patient's record does).
        first_failure: dict[str, int] = {}  # person → position of their first write that failed

        def fail(position: int, psn_no: str) -> None:
            first_failure[psn_no] = min(position, first_failure.get(psn_no, position))

        for position, (_, event, plan) in enumerate(planned):
            if plan.again:
                fail(position, event.psn_no)
            elif optimistic and plan.commit is None and isinstance(plan.output.value, Rejection):
                # Without its own record read, a refusal may be wrong: a redelivered reversal finds
                # its original reversed (by itself). Refusals are rare; the full pass decides them.
                fail(position, event.psn_no)

        to_hold = [(position, event, hold) for position, (_, event, plan) in enumerate(planned)
                   for hold in plan.holds if position < first_failure.get(event.psn_no, len(planned))]
        marks = [(hold.patient, hold.claim_id, hold.holder) for *_, hold in to_hold if hold.amount > hold.expected]
        if marks:  # the patient's side learns the holder before the holder's side is debited
            await self.store.mark_pending(marks)
        if to_hold:
            for (position, event, _), status in zip(to_hold, await self.store.hold([h for *_, h in to_hold])):
                if status is not Status.OK:
                    fail(position, event.psn_no)
        commits = [(position, event, plan.commit) for position, (_, event, plan) in enumerate(planned)
                   if plan.commit is not None and position < first_failure.get(event.psn_no, len(planned))]
        if commits:
            for (position, event, _), status in zip(commits, await self.store.commit([c for *_, c in commits])):
                if status is not Status.OK:
                    fail(position, event.psn_no)

        retry = retry_first
        for position, (index, event, plan) in enumerate(planned):
            # From a person's first failed write on, all their events in this batch go again.
            if position >= first_failure.get(event.psn_no, len(planned)):
                retry.append((index, event))
            else:
                results[index] = [plan.output]
        return sorted(retry, key=lambda item: item[0])  # in event order, for the slow path

    def _replay(self, event, record, kind: str) -> _Planned:
        """The event was processed before: the identical result again, or a conflict."""
        if record.fingerprint != fingerprint(event):
            return _Planned(Output(event.psn_no, _conflict(event, kind)))
        if isinstance(record, CreditRecord):
            return _Planned(Output(event.psn_no, record.result))
        return _Planned(Output(event.psn_no, record.settlement))

    def _plan_claim(self, claim: Claim, snap, states, records, holds: _Holds, nonce: str) -> _Planned:
        key = claim_key(claim.claim_id)
        existing = records.get((claim.psn_no, key))
        if existing is not None:
            return self._replay(claim, existing, "claim")
        person = snap.persons.get(claim.psn_no)
        state = states[claim.psn_no]
        holder = _holder(person, claim)
        account = (holder, claim.psn_no, claim.claim_id)
        family = holder is not None and holds.known(account)
        # A hold an earlier attempt left with a holder this claim no longer uses goes back to them.
        stray = _stray(snap.states[claim.psn_no], claim, holder)
        stray_account = (stray, claim.psn_no, claim.claim_id)
        returned = (holds.move(stray_account, 0, nonce),) \
            if stray is not None and holds.known(stray_account) and holds.held[stray_account] else ()
        refused = rules.check_binding(person, holds.views[account].person, claim.claim_id) \
            if family and person.active else None
        outcome = refused or rules.settle_claim(claim, person, snap.institutions.get(claim.fixmedins_code),
                                                 self.book, state, holds.available(account) if family else None)
        if isinstance(outcome, Rejection):
            # A hold left by an earlier attempt at this claim goes back to the holder.
            release = (holds.move(account, 0, nonce),) if family and holds.held[account] else ()
            return _Planned(Output(claim.psn_no, outcome), holds=returned + release)
        moves = returned
        if family and outcome.effects.mulaid_pay != holds.held[account]:
            moves += (holds.move(account, outcome.effects.mulaid_pay, nonce),)
        record = ClaimRecord(fingerprint(claim), outcome.settlement, outcome.effects)
        new_state = dataclasses.replace(outcome.state, token=f"c:{claim.claim_id}@{nonce}")
        return _Planned(Output(claim.psn_no, outcome.settlement),
                        Commit(claim.psn_no, state.token, new_state, key, record), moves)

    def _plan_reversal(self, reversal: Reversal, states, records, holds: _Holds, nonce: str) -> _Planned:
        key = claim_key(reversal.claim_id)
        existing = records.get((reversal.psn_no, key))
        if existing is not None:
            return self._replay(reversal, existing, "reversal")
        original_key = claim_key(reversal.orig_claim_id)
        original = records.get((reversal.psn_no, original_key))
        state = states[reversal.psn_no]
        outcome = rules.reverse_claim(reversal, original, state)
        if isinstance(outcome, Rejection):
            return _Planned(Output(reversal.psn_no, outcome))
        refunds = ()
        if outcome.refund_holder:
            account = (outcome.refund_holder, reversal.psn_no, reversal.orig_claim_id)
            if not holds.known(account):  # the original settled in this very batch: decide next pass
                return _Planned(None, again=True)
            refunds = (holds.move(account, 0, nonce),)
        record = ClaimRecord(fingerprint(reversal), outcome.settlement, original.effects)
        new_state = dataclasses.replace(outcome.state, token=f"c:{reversal.claim_id}@{nonce}")
        return _Planned(Output(reversal.psn_no, outcome.settlement),
                        Commit(reversal.psn_no, state.token, new_state, key, record, reverses=original_key), refunds)

    def _plan_credit(self, credit: Credit, snap, states, records, nonce: str) -> _Planned:
        key = credit_key(credit.credit_id)
        existing = records.get((credit.psn_no, key))
        if existing is not None:
            return self._replay(credit, existing, "credit")
        state: PersonState = states[credit.psn_no]
        outcome = rules.apply_credit(credit, snap.persons.get(credit.psn_no), self.book, state)
        if isinstance(outcome, Rejection):
            return _Planned(Output(credit.psn_no, outcome))
        record = CreditRecord(fingerprint(credit), outcome.result)
        new_state = dataclasses.replace(outcome.state, token=f"k:{credit.credit_id}@{nonce}")
        return _Planned(Output(credit.psn_no, outcome.result), Commit(credit.psn_no, state.token, new_state, key, record))
