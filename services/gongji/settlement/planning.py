"""Planning a settlement pass, pure: given the batch and what the store returned, decide which events
commit, which move holds, which wait for the next pass, and the writes that make each true.

No store call and no await here: gongji.settlement.settler reads, hands the reads to these
functions, writes what they planned and tells them what the store answered.

The rules of a pass. Writes go holds first, commits second, so a pass may only contain writes whose
order on each person's state cannot change: for every person, either commits of their own events
or holds on their account, never both. An event that waits for the next pass blocks every later
event touching a person it touches, so nothing overtakes it. From a person's first failed write on,
all their events in the pass go again.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple, Protocol

from gongji.settlement.domain import (ClaimRecord, Output, PersonState, Rejection, new_claim_record, new_credit_record,
                                      new_output, new_person_state, positional)
from gongji.settlement import inquiry, window
from gongji.settlement.catalogue import Versions
from gongji.settlement.steps import Work
from gongji.settlement.events import INQUIRIES, Claim, Credit, Event, Institution, Person, PreSettlement, Reversal
from gongji.settlement.family import Family, HoldKey, Holds
from gongji.settlement.idempotency import fingerprint, replayed, taken
from gongji.settlement.store import Commit, Hold, HolderView, Record, Snapshot, Status, claim_key, credit_key

if TYPE_CHECKING:
    from gongji.settlement.policy import PolicyBook
    from gongji.settlement.rules import AccountCredited, ClaimReversed, ClaimSettled



class Rules(Protocol):
    """What planning asks of the rules: gongji.settlement.rules, or a stand-in a test passes."""

    def check_person(self, person: Person) -> Rejection | None: ...

    def check_binding(self, person: Person, holder: Person | None, claim_id: str) -> Rejection | None: ...

    def settle_claim(self, claim: Claim, person: Person | None, institution: Institution | None,
                     book: PolicyBook, state: PersonState, holder_available: int | None = None,
                     prescriber: Institution | None = None,
                     catalogue: Versions | None = None) -> ClaimSettled | Rejection: ...

    def reverse_claim(self, reversal: Reversal, original: ClaimRecord | None,
                      state: PersonState) -> ClaimReversed | Rejection: ...

    def apply_credit(self, credit: Credit, person: Person | None, book: PolicyBook,
                     state: PersonState) -> AccountCredited | Rejection: ...


# ---------------------------------------------------------------- what a pass reads


def _event_key(event: Claim | Reversal | Credit) -> str:
    return credit_key(event.credit_id) if isinstance(event, Credit) else claim_key(event.claim_id)


class Reads(NamedTuple):
    """SettlementStore.read's arguments for a pass."""

    psn_nos: set[str]
    codes: set[str]
    keys: set[tuple[str, str]]
    claims: set[tuple[str, str]]


def reads(work: Work, optimistic: bool) -> Reads:
    """What a pass reads. The optimistic pass does not read each event's own record, since almost
    every event is new; a commit finds a duplicate anyway and refuses it."""
    wanted = Reads(set(), set(), set(), set())
    for _, event in work:
        wanted.psn_nos.add(event.psn_no)
        if isinstance(event, INQUIRIES):  # a question claims no id and reads no record
            if isinstance(event, PreSettlement):
                wanted.codes.add(event.fixmedins_code)
                if event.rx_fixmedins_code:
                    wanted.codes.add(event.rx_fixmedins_code)
            continue
        wanted.claims.add((_event_key(event), event.psn_no))
        if isinstance(event, Claim):
            wanted.codes.add(event.fixmedins_code)
            if event.rx_fixmedins_code:  # 双通道: the prescribing institution
                wanted.codes.add(event.rx_fixmedins_code)
            if not optimistic:
                wanted.keys.add((event.psn_no, claim_key(event.claim_id)))
        elif isinstance(event, Reversal):
            if not optimistic:
                wanted.keys.add((event.psn_no, claim_key(event.claim_id)))
            wanted.keys.add((event.psn_no, claim_key(event.orig_claim_id)))
        elif not optimistic:
            wanted.keys.add((event.psn_no, credit_key(event.credit_id)))
    return wanted


# ---------------------------------------------------------------- planning each event


@dataclass(slots=True)
class _Planned:
    """What computing one event decided: its result, and the writes that make it true."""

    output: Output | None
    commit: Commit | None = None
    holds: tuple[Hold, ...] = ()
    again: bool = False  # cannot be decided in this pass: go to the next


@dataclass(slots=True)
class _Overlay:
    """The pass as planned so far: the states and records the events before have left, the holds."""

    snap: Snapshot
    book: PolicyBook
    rules: Rules
    nonce: str
    states: dict[str, PersonState]
    records: dict
    holds: Holds
    catalogue: Versions = field(default_factory=dict)  # the entries the pass's claims read


new_commit = positional(Commit)


def with_token(state: PersonState, token: str) -> PersonState:
    """dataclasses.replace(state, token=token), without replace's look at the fields on every call."""
    return new_person_state(token, state.balance, state.years, state.pending, state.kept_from, state.first_year)


def _committed(state: PersonState, token: str, record: Record, year: int, person: Person | None,
               pass_: _Overlay) -> PersonState:
    """The state an event dated in `year` writes with `record`: the rules' new state with the
    write's token, and the years the event's date closes dropped (window.closing)."""
    return window.closing(with_token(state, token), window.year_of(record), year, person, pass_.book)


def _plan_claim(claim: Claim, key: str, links: tuple[str | None, str | None], pass_: _Overlay) -> _Planned:
    snap, holds, nonce = pass_.snap, pass_.holds, pass_.nonce
    state = pass_.states[claim.psn_no]
    year = window.event_year(claim)
    existing = window.kept(pass_.records.get((claim.psn_no, key)), state)
    too_old = window.closed(claim, year, state)
    if existing is not None or too_old is not None:
        return _Planned(Output(claim.psn_no, too_old) if too_old else replayed(claim, existing, "claim"))
    person = snap.persons.get(claim.psn_no)
    holder, stray = links
    account = (holder, claim.psn_no, claim.claim_id)
    family = holder is not None and holds.known(account)
    # A hold an earlier attempt left with a holder this claim no longer uses goes back to them.
    stray_account = (stray, claim.psn_no, claim.claim_id)
    returned = (holds.move(stray_account, 0, nonce),) \
        if stray is not None and holds.known(stray_account) and holds.held[stray_account] else ()
    refused = pass_.rules.check_binding(person, holds.views[account].person, claim.claim_id) \
        if family and person.active else None
    outcome = refused or pass_.rules.settle_claim(
        claim, person, snap.institutions.get(claim.fixmedins_code), pass_.book, state,
        holds.available(account) if family else None,
        prescriber=snap.institutions.get(claim.rx_fixmedins_code) if claim.rx_fixmedins_code else None,
        catalogue=pass_.catalogue)
    if isinstance(outcome, Rejection):
        # A hold left by an earlier attempt at this claim goes back to the holder.
        release = (holds.move(account, 0, nonce),) if family and holds.held[account] else ()
        return _Planned(Output(claim.psn_no, outcome), holds=returned + release)
    moves = returned
    if family and outcome.effects.mulaid_pay != holds.held[account]:
        moves += (holds.move(account, outcome.effects.mulaid_pay, nonce),)
    record = new_claim_record(fingerprint(claim), outcome.settlement, outcome.effects, None)
    new_state = _committed(outcome.state, f"c:{claim.claim_id}@{nonce}", record, year, person, pass_)
    return _Planned(new_output(claim.psn_no, outcome.settlement),
                    new_commit(claim.psn_no, state.token, new_state, key, record, None), moves)


def _plan_reversal(reversal: Reversal, key: str, pass_: _Overlay) -> _Planned:
    state = pass_.states[reversal.psn_no]
    year = window.event_year(reversal)
    existing = window.kept(pass_.records.get((reversal.psn_no, key)), state)
    too_old = window.closed(reversal, year, state)
    if existing is not None or too_old is not None:
        return _Planned(Output(reversal.psn_no, too_old) if too_old else replayed(reversal, existing, "reversal"))
    original_key = claim_key(reversal.orig_claim_id)
    original = window.kept(pass_.records.get((reversal.psn_no, original_key)), state)
    person = pass_.snap.persons.get(reversal.psn_no)
    refused = window.original_closed(reversal, year, original, state, person, pass_.book)
    outcome = refused or pass_.rules.reverse_claim(reversal, original, state)
    if isinstance(outcome, Rejection):
        return _Planned(Output(reversal.psn_no, outcome))
    refunds = ()
    if outcome.refund_holder:
        account = (outcome.refund_holder, reversal.psn_no, reversal.orig_claim_id)
        if not pass_.holds.known(account):  # the original settled in this very batch: decide next pass
            return _Planned(None, again=True)
        refunds = (pass_.holds.move(account, 0, pass_.nonce),)
    record = ClaimRecord(fingerprint(reversal), outcome.settlement, original.effects)
    new_state = _committed(outcome.state, f"c:{reversal.claim_id}@{pass_.nonce}", record, year, person,
                           pass_)
    return _Planned(Output(reversal.psn_no, outcome.settlement),
                    Commit(reversal.psn_no, state.token, new_state, key, record, reverses=original_key), refunds)


def _plan_credit(credit: Credit, key: str, pass_: _Overlay) -> _Planned:
    state = pass_.states[credit.psn_no]
    year = window.event_year(credit)
    existing = window.kept(pass_.records.get((credit.psn_no, key)), state)
    too_old = window.closed(credit, year, state)
    if existing is not None or too_old is not None:
        return _Planned(Output(credit.psn_no, too_old) if too_old else replayed(credit, existing, "credit"))
    person = pass_.snap.persons.get(credit.psn_no)
    outcome = pass_.rules.apply_credit(credit, person, pass_.book, state)
    if isinstance(outcome, Rejection):
        return _Planned(Output(credit.psn_no, outcome))
    record = new_credit_record(fingerprint(credit), outcome.result)
    new_state = _committed(outcome.state, f"k:{credit.credit_id}@{pass_.nonce}", record, year, person, pass_)
    return _Planned(new_output(credit.psn_no, outcome.result), new_commit(credit.psn_no, state.token, new_state, key,
                                                                            record, None))


_NOBODY: frozenset[str] = frozenset()


def _touches(index: int, event: Event, found: Family, records: dict) -> frozenset[str]:
    """The family account holders whose account this event may move: a claim's holder (and the one
    an earlier attempt left a hold with), the holder a reversal refunds. A reversal asks the overlay,
    not the snapshot: its original may have settled earlier in this pass."""
    if isinstance(event, Claim):
        links = found.links[index]
        return _NOBODY if links == (None, None) else frozenset(psn for psn in links if psn is not None)
    if isinstance(event, Reversal):
        original = records.get((event.psn_no, claim_key(event.orig_claim_id)))
        if original is not None and original.effects.mulaid_holder:
            return frozenset((original.effects.mulaid_holder,))
    return _NOBODY


# ---------------------------------------------------------------- the pass


@dataclass(slots=True)
class Pass:
    """A planned pass: every event's plan in order, and, as the writes are answered, each person's
    first position whose write failed. From there on, that person's events go to the next pass."""

    planned: list[tuple[int, Event, _Planned]]
    waiting: Work  # deferred events: straight to the next pass
    first_failure: dict[str, int] = field(default_factory=dict)  # person → position

    def fail(self, position: int) -> None:
        psn_no = self.planned[position][1].psn_no
        self.first_failure[psn_no] = min(position, self.first_failure.get(psn_no, position))

    def holds(self) -> list[tuple[int, Hold]]:
        """The holds to write, first (the holder's side must exist before the patient's record does)."""
        planned = self.planned
        return [(position, hold) for position, (_, event, plan) in enumerate(planned)
                for hold in plan.holds if position < self.first_failure.get(event.psn_no, len(planned))]

    def commits(self) -> list[tuple[int, Commit]]:
        """The commits to write, after the holds' answers."""
        planned = self.planned
        return [(position, plan.commit) for position, (_, event, plan) in enumerate(planned)
                if plan.commit is not None and position < self.first_failure.get(event.psn_no, len(planned))]

    def answered(self, writes: list[tuple[int, Hold | Commit]], statuses: list[Status]) -> None:
        """The store's answers to `writes`: a write that did not apply fails its position."""
        for (position, _), status in zip(writes, statuses):
            if status is not Status.OK:
                self.fail(position)

    def outcome(self) -> tuple[dict[int, Output], Work]:
        """The answers that stand (by position in the batch), and the events that must go again,
        in event order (for the slow path)."""
        answers: dict[int, Output] = {}
        retry = list(self.waiting)
        planned = self.planned
        for position, (index, event, plan) in enumerate(planned):
            if position >= self.first_failure.get(event.psn_no, len(planned)):
                retry.append((index, event))
            else:
                answers[index] = plan.output
        return answers, sorted(retry, key=lambda item: item[0])


def pending_marks(holds: list[tuple[int, Hold]]) -> list[tuple[str, str, str]]:
    """(patient, claim id, holder) for each hold that takes from the holder: the patient's side
    learns the holder before the holder's side is debited."""
    return [(hold.patient, hold.claim_id, hold.holder) for _, hold in holds if hold.amount > hold.expected]


def plan_pass(work: Work, snap: Snapshot, found: Family, views: dict[HoldKey, HolderView], book: PolicyBook,
              rules: Rules, nonce: str, optimistic: bool, catalogue: Versions | None = None) -> Pass:
    """Compute every event of the pass in order on an overlay, so later events see earlier ones.
    Every write carries `nonce` in its token, so a commit computed on top of one that failed can
    never match a token some earlier, real commit wrote."""
    waiting = [item for item in work if item[1].psn_no in found.deferred] if found.deferred else []
    if waiting:
        work = [item for item in work if item[1].psn_no not in found.deferred]
    states = dict(snap.states)
    records = dict(snap.records)
    pass_ = _Overlay(snap, book, rules, nonce, states, records, Holds(views, states), catalogue or {})
    holds = pass_.holds
    blocked = set(found.deferred)  # persons with an event waiting for the next pass
    committing: set[str] = set()  # persons with a commit planned in this pass
    planned: list[tuple[int, Event, _Planned]] = []
    owners, touched = snap.owners, holds.touched
    for index, event in work:
        psn_no = event.psn_no
        touches = _touches(index, event, found, records)
        waits = (psn_no in blocked or psn_no in touched
                 or (touches and (not touches.isdisjoint(blocked) or not touches.isdisjoint(committing))))
        if isinstance(event, INQUIRIES):  # an answer, and nothing written: the overlay stays as it is
            plan = _Planned(None, again=True) if waits else _Planned(inquiry.answer(event, found.links.get(index), pass_))
        elif owners.get(key := _event_key(event), psn_no) != psn_no:
            plan = _Planned(Output(psn_no, taken(event, owners[key])))
        elif waits:
            plan = _Planned(None, again=True)
        elif isinstance(event, Claim):
            plan = _plan_claim(event, key, found.links[index], pass_)
        elif isinstance(event, Reversal):
            plan = _plan_reversal(event, key, pass_)
        else:
            plan = _plan_credit(event, key, pass_)
        if plan.again:
            blocked.add(psn_no)
            blocked.update(touches)
        commit = plan.commit
        if commit is not None:
            committing.add(psn_no)
            states[psn_no] = commit.state
            records[(psn_no, commit.record_key)] = commit.record
            if commit.reverses:
                reversed_key = (psn_no, commit.reverses)
                records[reversed_key] = dataclasses.replace(records[reversed_key], reversed_by=event.claim_id)
        planned.append((index, event, plan))
    decided = Pass(planned, waiting)
    for position, (_, event, plan) in enumerate(planned):
        if plan.again:
            decided.fail(position)
        elif optimistic and plan.commit is None and isinstance(plan.output.value, Rejection):
            # Without its own record read, a refusal may be wrong: a redelivered reversal finds
            # its original reversed (by itself). Refusals are rare; the full pass decides them.
            decided.fail(position)
    return decided
