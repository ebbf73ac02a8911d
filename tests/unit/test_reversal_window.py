"""The reversal window, by event time (CONTRACT.md, REVERSAL_WINDOW_CLOSED): a settled claim can be
reversed until the end of the year after its year (the region policy's reversal_window_years, 1 in
the sample policies); once an event of the person dated after that commits, the person's records
and accumulators of the closed years are dropped, and every event of a closed year is refused, so
a resend whose record is gone never settles twice. The same in any batch size."""

from __future__ import annotations

import asyncio
import pytest
from tests.unit.builders import BOOK, settled_with_store, claim, credit, fen, institution, line, person, reversal

from gongji.settlement import window
from gongji.settlement.policy import PolicyBook

pytestmark = pytest.mark.unit


def settle_all(events, size: int = 1, book: PolicyBook = BOOK):
    return asyncio.run(settled_with_store(events, size, book))


def answers(outputs):
    return [(kind, wire.get("claim_id") or wire.get("credit_id"), wire.get("err_code")) for kind, wire in outputs]


def at(day: str) -> str:
    return f"{day}T10:00:00+08:00"


REGISTRY = [person(), institution()]


@pytest.mark.parametrize("size", [1, 3, 20])
def test_an_event_past_the_window_closes_the_year_and_a_resend_of_it_is_refused_not_settled_twice(size):
    old = claim(line("300.00"), claim_id="C2023", setl_time=at("2023-06-01"))
    events = [*REGISTRY, old,
              claim(line("100.00"), claim_id="C2024", setl_time=at("2024-03-01")),
              old,  # 2023 is still kept: the identical result again
              claim(line("100.00"), claim_id="C2025", setl_time=at("2025-01-02")),  # closes 2023
              old,  # its record is gone: refused, never settled a second time
              reversal("C2023", claim_id="R-OLD", setl_time=at("2025-01-03")),
              credit("2023-12", amount="10.00", credit_id="K2023"),
              reversal("C2024", claim_id="R-2024", setl_time=at("2025-02-01"))]
    outputs, store = settle_all(events, size)
    assert answers(outputs) == [
        ("settlement", "C2023", None), ("settlement", "C2024", None), ("settlement", "C2023", None),
        ("settlement", "C2025", None), ("rejection", "C2023", "REVERSAL_WINDOW_CLOSED"),
        ("rejection", "R-OLD", "REVERSAL_WINDOW_CLOSED"), ("rejection", "K2023", "REVERSAL_WINDOW_CLOSED"),
        ("reversal", "R-2024", None)]
    assert outputs[0] == outputs[2]
    state = store.states["P1"]
    assert state.kept_from == 2024 and set(state.years) == {2024, 2025}
    assert state.year(2024).visits == 0 and state.year(2025).visits == 1  # 2024's claim reversed
    assert sorted(key for _, key in store.records) == ["c:C2024", "c:C2025", "c:R-2024"]


def test_a_reversal_dated_after_its_originals_window_is_refused_even_while_the_record_is_kept():
    events = [*REGISTRY, claim(line("300.00"), claim_id="C1", setl_time=at("2023-06-01"), acct_used_flag="0"),
              reversal("C1", claim_id="R-LATE", setl_time=at("2025-01-01")),
              reversal("C1", claim_id="R-IN", setl_time=at("2024-12-31"))]
    outputs, store = settle_all(events)
    assert answers(outputs) == [("settlement", "C1", None), ("rejection", "R-LATE", "REVERSAL_WINDOW_CLOSED"),
                                    ("reversal", "R-IN", None)]
    assert "2023" in outputs[1][1]["err_msg"]


def test_without_closed_years_an_unknown_original_stays_unknown():
    outputs, _ = settle_all([*REGISTRY, reversal("NEVER", claim_id="R1", setl_time=at("2024-01-01"))])
    assert answers(outputs) == [("rejection", "R1", "UNKNOWN_ORIGINAL")]


def test_a_region_with_a_longer_window_keeps_the_years_longer():
    region = BOOK.region(person().insu_admdvs)
    longer = PolicyBook([region.model_copy(update={"reversal_window_years": 2}),
                         *(BOOK.region(code) for code in BOOK.regions if code != region.admdvs)])
    events = [*REGISTRY, claim(line("300.00"), claim_id="C1", setl_time=at("2023-06-01")),
              claim(line("100.00"), claim_id="C2", setl_time=at("2025-06-01")),
              reversal("C1", claim_id="R1", setl_time=at("2025-07-01"))]
    outputs, store = settle_all(events, book=longer)
    assert answers(outputs)[-1] == ("reversal", "R1", None)
    assert store.states["P1"].kept_from == 0
    outputs, store = settle_all(events)  # the sample's one year: closed
    assert answers(outputs)[-1] == ("rejection", "R1", "REVERSAL_WINDOW_CLOSED")
    assert store.states["P1"].kept_from == 2024


def test_what_a_person_keeps_does_not_grow_with_the_years_insured():
    events = list(REGISTRY)
    for year in range(2023, 2033):
        events += [credit(f"{year}-01", amount="100.00", credit_id=f"K{year}")]
        events += [claim(line("50.00"), claim_id=f"C{year}-{n}", setl_time=at(f"{year}-0{n + 1}-01"), acct_used_flag="1")
                   for n in range(3)]
    outputs, store = settle_all(events, size=7)
    assert all(kind != "rejection" for kind, _ in outputs)
    state = store.states["P1"]
    assert state.kept_from == 2031 and set(state.years) == {2031, 2032}
    assert len(store.records) == 8  # two years of one credit and three claims
    # the balance carries over: every year's credit less what every claim drew, closed years too
    assert state.balance == fen("100.00") * 10 - sum(fen(wire["acct_pay"]) for kind, wire in outputs
                                                    if kind == "settlement")


def test_event_years_are_beijing_years():
    assert window.event_year(claim(line("1.00"), setl_time="2023-12-31T17:00:00+00:00")) == 2024
    assert window.event_year(credit("2023-12", amount="1.00")) == 2023
