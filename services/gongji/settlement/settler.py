"""Settle a batch of input events against a store: the one use case both the service and replay run.

A batch is settled in a few round trips whatever its size: read what the batch needs, read the
family accounts it touches, plan every event in order (gongji.settlement.planning, pure), then
write: holds first, commits second. The first pass is optimistic (no read of each event's own
record, family claims deferred); further passes take what is left, as a batch, reading everything,
while they make progress; a pass that defers events reads for their pass after its commits, in their
round trip, and the service's markers ride on the batch's first read and last commits (`guard`).
What still finds the state changed under it (a zombie consumer) goes one event at a time, until it
sticks.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import Protocol

from gongji.settlement import catalogue as centre_catalogue, planning, rules as settlement_rules
from gongji.settlement.domain import Output, SettlementError
from gongji.settlement.family import family_accounts
from gongji.settlement.events import Claim, Event
from gongji.settlement.policy import PolicyBook
from gongji.settlement.steps import Registry, steps as steps_of
from gongji.settlement.store import Along, Reading, SettlementStore, Snapshot

MAX_ATTEMPTS = 20


class Guard(Protocol):
    """The batch's markers (gongji.settlement.seen.Riding), carried by the batch's round trips: read
    with its first read, before any write, and sealed with the commits of its last pass."""

    admission: Along | None  # None once the markers are read
    sealing: Along
    sealed: bool  # set here: the seal rode on the batch's last write


class StoreContention(SettlementError):
    """An event kept finding its person's state changed under it; the batch must be retried."""


class Settler:
    """Settles batches of events against a store under a policy book, by `rules` (a test may pass a
    stand-in)."""

    def __init__(self, store: SettlementStore, book: PolicyBook, rules: planning.Rules = settlement_rules):
        self.store = store
        self.book = book
        self.rules = rules
        # Each institution's region as last read: which catalogue entries a pass will want, asked
        # for with its read (a guess: what the pass reads decides; a wrong guess costs a round trip).
        self._regions: dict[str, str] = {}

    def _likely(self, work: planning.Work, catalogue: dict) -> set[tuple[str, str]]:
        """The catalogue entries the pass's claims will want if their institutions' regions are as
        last read, less those the step has."""
        regions = self._regions
        return {want for _, event in work if isinstance(event, Claim) and event.fixmedins_code in regions
                for want in centre_catalogue.wanted(event, regions[event.fixmedins_code])} - catalogue.keys()

    def _learn(self, institutions: dict) -> None:
        if len(self._regions) > 100_000:
            self._regions.clear()
        for code, institution in institutions.items():
            if institution is not None:
                self._regions[code] = institution.admdvs

    async def handle(self, events: Sequence[Event]) -> list[Output]:
        """Settle `events` in order: the results of handing them over one at a time, in order."""
        return [output for outputs in await self.handle_each(events) for output in outputs]

    async def handle_each(self, events: Sequence[Event], guard: Guard | None = None) -> list[list[Output]]:
        """As `handle`, the results of each event apart (none for an accepted registry event).
        `guard`: the batch's markers, read with its first read and sealed with its last commits
        where its passes allow (the caller seals apart unless `guard.sealed`)."""
        results: list[list[Output]] = [[] for _ in events]
        steps, refused = steps_of(list(events), self.rules)
        for index, output in refused.items():
            results[index] = [output]
        for number, step in enumerate(steps):
            if isinstance(step, Registry):
                await self.admit(guard)  # no read comes before this write
                if step.persons:
                    await self.store.put_persons(step.persons)
                if step.institutions:
                    await self.store.put_institutions(step.institutions)
                if step.catalogue:
                    await self.store.put_catalogue(step.catalogue)
            else:
                await self._settle_all(step, results, guard, number == len(steps) - 1)
        return results

    async def admit(self, guard: Guard | None) -> None:
        """The batch's markers read apart, if no read has carried them yet."""
        if guard is not None and guard.admission is not None:
            await self.store.read(set(), set(), set(), along=guard.admission)

    async def _settle_all(self, work: planning.Work, results: list[list[Output]], guard: Guard | None,
                          last: bool) -> None:
        # The catalogue entries read so far: no registry step comes between this step's passes.
        catalogue: dict = {}
        retry, snap, ahead = await self._settle(work, results, True, catalogue, None, guard, last)
        while retry:  # full passes over what is left, as a batch, while they make progress
            left, snap, ahead = await self._settle(retry, results, False, catalogue, snap, guard, last, ahead)
            if len(left) == len(retry):
                break
            retry = left
        for item in retry:  # the slow path: one event at a time, in order
            before = snap  # the last batch pass's, which read every event left
            for _ in range(MAX_ATTEMPTS):
                left, before, _ = await self._settle([item], results, False, catalogue, before, guard, last)
                if not left:
                    break
            else:
                raise StoreContention(f"event {item[1]!r:.120} found its state changed {MAX_ATTEMPTS} times")

    async def _settle(self, work: planning.Work, results: list[list[Output]], optimistic: bool,
                      catalogue: dict, before: Snapshot | None, guard: Guard | None = None,
                      last: bool = False, ahead: Reading | None = None
                      ) -> tuple[planning.Work, Snapshot, Reading | None]:
        """One pass: read, plan, write; returns the events that must go again, and what it read.
        `catalogue`: the entries read in the step so far, completed here with those this pass needs.
        `before`: what the pass before read, from which the family accounts this one will want are
        guessed and read along (what this pass reads decides; a wrong guess costs a round trip).
        `guard`: its markers ride on the read while unread, and the seal on the commits of a pass
        of the batch's `last` step that defers nothing (it is the last pass unless a write fails).
        `ahead`: this pass's read, made by the pass before after its commits, in their round trip
        (it deferred events, and knew what their pass reads: `_reads`)."""
        if ahead is not None:
            snap = await ahead.snapshot()
        else:
            admission = guard.admission if guard is not None else None
            snap = await self.store.read(*self._reads(work, optimistic, catalogue, before),
                                         **({"along": admission} if admission else {}))
        self._learn(snap.institutions)
        catalogue.update(snap.catalogue)
        missing = centre_catalogue.pass_wants((event for _, event in work), snap.institutions) - catalogue.keys()
        if missing:
            catalogue.update(await self.store.read_catalogue(missing))
        family = family_accounts(work, snap, optimistic)
        views = {want: snap.holders[want] for want in family.wants if want in snap.holders}
        if len(views) < len(family.wants):
            views.update(await self.store.read_holders(family.wants - views.keys()))
        plan = planning.plan_pass(work, snap, family, views, self.book, self.rules, secrets.token_hex(6), optimistic,
                                  catalogue)
        holds = plan.holds()
        marks = planning.pending_marks(holds)
        if marks:
            await self.store.mark_pending(marks)
        if holds:
            plan.answered(holds, await self.store.hold([hold for _, hold in holds]))
        commits = plan.commits()
        seal = guard.sealing if guard is not None and last and commits and not plan.waiting else None
        # The deferred events' pass reads persons this pass does not write: read them after its commits.
        ahead = self.store.reading(*self._reads(plan.waiting, False, catalogue, snap)) \
            if commits and plan.waiting else None
        along = seal or ahead
        if commits:
            plan.answered(commits, await self.store.commit([commit for _, commit in commits],
                                                           **({"along": along} if along else {})))
        answers, retry = plan.outcome()
        for index, output in answers.items():
            results[index] = [output]
        if guard is not None and (marks or holds or commits):
            guard.sealed = seal is not None and not retry
        return retry, snap, ahead if ahead is not None and len(retry) == len(plan.waiting) else None

    def _reads(self, work: planning.Work, optimistic: bool, catalogue: dict, before: Snapshot | None) -> tuple:
        """What a pass reads: its events' (planning.reads), and along, the catalogue entries and the
        family accounts it will likely want (guessed from the regions last read and from `before`)."""
        likely = family_accounts(work, before, False).wants if before is not None and not optimistic else set()
        return (*planning.reads(work, optimistic), self._likely(work, catalogue), likely)
