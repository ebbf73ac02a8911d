"""The settlement state store: its interface (SettlementStore), what passes through it, and its keys.

State per person is versioned by an opaque token. A commit names the token it was computed from;
the store applies it only if the person's token is still that one, and only if the event's record
does not exist yet. That makes every write conditional (no lost update, e.g. from a zombie
consumer after a rebalance) and idempotent (a redelivered event finds its record).

Family mutual aid (家庭共济) touches two persons, who live in different Redis Cluster slots. The
holder's side is a separate step, "hold": the amount held from the holder's account for patient P's
claim X goes from E (what the plan read) to N, only if it is still E. It runs before the patient's
commit; a redo finds it done, a stale plan finds it changed, and a reversal sets it to 0, which
refunds the holder.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Protocol

from gongji.settlement.catalogue import CatalogueItem
from gongji.settlement.domain import ClaimRecord, CreditRecord, PersonState
from gongji.settlement.events import Institution, Person

Record = ClaimRecord | CreditRecord


def escape(text: str, specials: str = ":{}") -> str:
    """`text` with backslash and each of `specials` escaped by a backslash, so that an id joined to
    others by one of them can be split back unambiguously (patient "X" with claim "c:1" is never
    patient "X:c" with claim "1"). Ids without those characters are unchanged."""
    if "\\" not in text and not any(char in text for char in specials):
        return text
    text = text.replace("\\", "\\\\")
    for char in specials:
        text = text.replace(char, "\\" + char)
    return text


def unescape(text: str) -> str:
    """`escape` undone: each backslash-escaped character as itself."""
    if "\\" not in text:
        return text
    out, chars = [], iter(text)
    for char in chars:
        out.append(next(chars, "") if char == "\\" else char)
    return "".join(out)


def hold_field(patient: str, claim_id: str) -> str:
    """The field of a holder's holds hash for one patient's claim: "<patient>:<claim id>", the
    patient escaped (the claim id is the rest of the field, whatever it holds)."""
    return f"{escape(patient)}:{claim_id}"


def claim_key(claim_id: str) -> str:
    return "c:" + claim_id


def credit_key(credit_id: str) -> str:
    return "k:" + credit_id


@dataclass(frozen=True, slots=True)
class Snapshot:
    persons: dict[str, Person | None]
    institutions: dict[str, Institution | None]
    states: dict[str, PersonState]
    records: dict[tuple[str, str], Record | None]
    # event key ("c:<claim id>", "k:<credit id>") → the asking person's psn_no when it is theirs, else
    # a token that is no psn_no (whose it is stays unsaid: Redis keeps a hash of the owner only)
    owners: dict[str, str]
    catalogue: dict[tuple[str, str], tuple[CatalogueItem, ...]] = field(default_factory=dict)  # read(catalogue=)
    holders: dict[tuple[str, str, str], HolderView] = field(default_factory=dict)  # read(holders=)


@dataclass(frozen=True, slots=True)
class HolderView:
    """A family account holder's account as one claim sees it."""

    token: str
    balance: int
    held: int  # already held from this account for this very claim (a retry after a crash)
    person: Person | None = None  # the holder's registry entry, to check the binding

    @property
    def available(self) -> int:
        return self.balance + self.held


@dataclass(frozen=True, slots=True)
class Hold:
    """Move the amount held from `holder`'s account for `patient`'s `claim_id` from `expected` to
    `amount` (fen), if it is still `expected` and, when `holder_token` is given, the holder's state
    token is still that one; the holder's balance moves the other way."""

    holder: str
    patient: str
    claim_id: str
    amount: int
    expected: int
    nonce: str = ""
    # The holder's token the plan read: a hold planned on top of a write that did not happen (an
    # earlier hold or commit on the same account) is stale, never applied to another balance.
    holder_token: str | None = None

    @property
    def field(self) -> str:
        return hold_field(self.patient, self.claim_id)

    @property
    def token(self) -> str:
        return f"h:{self.field}:{self.amount}@{self.nonce}"


@dataclass(frozen=True, slots=True)
class Commit:
    """Write `state` and `record` for `psn_no` if its token is still `expected`. `state` differs
    from the stored one in the token, the balance, and the accumulators the record's effects moved."""

    psn_no: str
    expected: str
    state: PersonState  # carries the new token
    record_key: str
    record: Record
    # For a reversal: the original's record key, to mark it reversed by this event.
    reverses: str | None = None


class Status(Enum):
    OK = "ok"
    STALE = "stale"  # the state (or a hold) changed since it was read: read again and recompute
    DUPLICATE = "duplicate"  # the record appeared since it was read: read again
    SHORT = "short"  # a hold found too little in the holder's account


class Along(Protocol):
    """Commands of another part (the batch's markers, gongji.settlement.seen.Riding) run at the end
    of one of a store's round trips; given only to a store that makes round trips."""

    scripts: tuple  # the Lua scripts its commands run, loaded again where the server lost them

    def queue(self, pipe) -> int:
        """Queue the commands; how many."""
        ...

    def take(self, replies: list) -> None:
        """Their replies, once every reply of the round trip is read (may raise: the pass fails)."""
        ...


class Reading(Along, Protocol):
    """A read made in another round trip (SettlementStore.reading), then its Snapshot."""

    async def snapshot(self) -> Snapshot: ...


class SettlementStore(Protocol):
    """What settlement needs from a store. Implemented in memory (replay) and on Redis (service)."""

    async def put_persons(self, persons: list[Person]) -> None: ...

    async def put_institutions(self, institutions: list[Institution]) -> None: ...

    async def put_catalogue(self, items: list[CatalogueItem]) -> None:
        """Store each version under its region, item and first day (one with the same key replaces it)."""
        ...

    async def read_catalogue(self, wants: set[tuple[str, str]]) -> dict[tuple[str, str], tuple[CatalogueItem, ...]]:
        """(region, item) → every version stored, in no particular order; () for none."""
        ...

    async def read(self, psn_nos: set[str], institution_codes: set[str],
                   record_keys: set[tuple[str, str]], claims: set[tuple[str, str]] = frozenset(),
                   catalogue: set[tuple[str, str]] = frozenset(),
                   holders: set[tuple[str, str, str]] = frozenset(), along: Along | None = None) -> Snapshot:
        """Read what a pass needs; `claims` are (event key, person) pairs: each event id is claimed
        for its person the first time it is seen, and `owners` says whose it is; `catalogue` and
        `holders`: what read_catalogue and read_holders would give, read along (Snapshot.catalogue,
        Snapshot.holders); `along` runs in the same round trip."""
        ...

    def reading(self, psn_nos: set[str], institution_codes: set[str], record_keys: set[tuple[str, str]],
                claims: set[tuple[str, str]] = frozenset(), catalogue: set[tuple[str, str]] = frozenset(),
                holders: set[tuple[str, str, str]] = frozenset()) -> Reading | None:
        """`read` as an Along, to run in a round trip made anyway (after a pass's commits); None for
        a store that makes no round trips (it reads when asked)."""
        ...

    async def read_holders(self, wants: set[tuple[str, str, str]]) -> dict[tuple[str, str, str], HolderView]:
        """(holder, patient, claim_id) → the holder's account as that claim sees it."""
        ...

    async def mark_pending(self, marks: list[tuple[str, str, str]]) -> None:
        """(patient, claim id, holder): note in the patient's state, before the hold is written,
        which holder it goes to; the claim's commit clears it."""
        ...

    async def hold(self, holds: list[Hold]) -> list[Status]: ...

    async def commit(self, commits: list[Commit], along: Along | None = None) -> list[Status]:
        """Each commit's outcome; `along` runs in the last round trip, after the commits."""
        ...
