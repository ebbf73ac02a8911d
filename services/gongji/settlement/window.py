"""The reversal window (CONTRACT.md, REVERSAL_WINDOW_CLOSED): how long a settled event stays
reversible and recognisable when sent again, by event time only (so replay, rebuild and the
service keep the same state). Pure.

A region's policy sets `reversal_window_years` N (the sample's 1: until the end of the year after
the claim's year). When an event of a person, dated in year E, commits and the person keeps
records of years before E − N, those years close: their records and accumulators are dropped
(`PersonState.kept_from` says the first year kept), so what a person costs does not grow with the
years insured. From then on an event of a closed year is refused, because a resend whose record is
gone could otherwise settle twice, and so is a reversal whose original is not (or no longer) kept.
"""

from __future__ import annotations

import dataclasses

from gongji.contract.wire import SHANGHAI
from gongji.settlement.domain import ClaimRecord, CreditRecord, PersonState, Rejection
from gongji.settlement.events import Claim, Credit, Person, Reversal
from gongji.settlement.policy import PolicyBook
from gongji.settlement.store import Record

DEFAULT_YEARS = 1  # where the person or their region is unknown


def event_year(event: Claim | Reversal | Credit) -> int:
    """The year an event is dated in: a claim's or reversal's setl_time in Beijing time, a credit's ym."""
    return int(event.ym[:4]) if isinstance(event, Credit) else event.setl_time.astimezone(SHANGHAI).year


def year_of(record: Record) -> int:
    """The year a record is kept under: a claim's year, a reversal's original's (its effects are the
    original's), a credit's ym."""
    return int(record.result.ym[:4]) if isinstance(record, CreditRecord) else record.effects.year


def kept(record: Record | None, state: PersonState) -> Record | None:
    """`record`, unless the person's window closed its year (in this very batch, perhaps: the store
    no longer has it)."""
    return record if record is not None and year_of(record) >= state.kept_from else None


def window_years(person: Person | None, book: PolicyBook) -> int:
    region = book.region(person.insu_admdvs) if person is not None else None
    return region.reversal_window_years if region is not None else DEFAULT_YEARS


def closed(event: Claim | Reversal | Credit, year: int, state: PersonState) -> Rejection | None:
    """An event dated in `year` (event_year), one the person's window closed: refused, whether new or a resend."""
    if year >= state.kept_from:
        return None
    kind, ident = ("credit", {"credit_id": event.credit_id}) if isinstance(event, Credit) else \
        ("reversal" if isinstance(event, Reversal) else "claim", {"claim_id": event.claim_id})
    return Rejection(err_code="REVERSAL_WINDOW_CLOSED", psn_no=event.psn_no, input_type=kind, **ident,
                     err_msg=f"{kind} dated in {year}: the reversal window of this person's events before "
                             f"{state.kept_from} is closed, so it is neither settled nor reversed here (if it was "
                             "settled, its result stands)")


def original_closed(reversal: Reversal, year: int, original: Record | None, state: PersonState,
                    person: Person | None, book: PolicyBook) -> Rejection | None:
    """A reversal after its original's window: the original (a kept record) is dated more than the
    region's window before the reversal's year, or no claim of this person is kept under its id and
    the person's window has closed years (so it may have been among them)."""
    years = window_years(person, book)
    mine = isinstance(original, ClaimRecord) and not original.settlement.is_reversal \
        and original.settlement.psn_no == reversal.psn_no
    original_year = original.effects.year if mine else None
    if original_year is None:
        if not state.kept_from:
            return None
        why = f"no claim {reversal.orig_claim_id} of this person is kept for reversal: their events before " \
              f"{state.kept_from} are past the reversal window"
    elif original_year < max(state.kept_from, year - years):
        why = f"claim {reversal.orig_claim_id} of {original_year} is past its reversal window " \
              f"({years} year(s) after its year)"
    else:
        return None
    return Rejection(err_code="REVERSAL_WINDOW_CLOSED", psn_no=reversal.psn_no, input_type="reversal",
                     claim_id=reversal.claim_id, err_msg=why + "; it changes nothing (a longer window is the "
                     "region policy's reversal_window_years)")


def closing(state: PersonState, record_year: int, year: int, person: Person | None, book: PolicyBook) -> PersonState:
    """`state`, the state after an event dated in `year` that keeps a record of `record_year`, with
    the years that date closes dropped, once the person keeps a record from before them (the store
    drops those records when it writes the state)."""
    # A state written before first_year was kept (0) says its years by its accumulators.
    first = min(state.first_year or record_year, record_year, *state.years)
    cut = year - window_years(person, book)
    if first >= cut:
        return state if first == state.first_year else dataclasses.replace(state, first_year=first)
    kept_from = max(state.kept_from, cut)
    years = {year: totals for year, totals in state.years.items() if year >= kept_from}
    return dataclasses.replace(state, kept_from=kept_from, first_year=kept_from, years=years)
