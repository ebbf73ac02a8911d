"""The gateway's questions answered by the settler (gongji.settlement.inquiry): a pre-settlement
(2206) and an accumulator query (5206) see exactly the state the events before them leave, in a
batch of any size as one at a time, and change nothing: no accumulator, balance, hold, record or
claimed id; a stream with questions settles its claims exactly as the same stream without them."""

from __future__ import annotations

import asyncio

from hypothesis import given
from hypothesis import strategies as st

from gongji.settlement.codec import from_output
from gongji.settlement.domain import Accumulators, Rejection, Settlement, YearTotals
from gongji.settlement.events import AccumulatorQuery, Claim, PreSettlement
from gongji.settlement.inquiry import accumulators
from gongji.settlement.memory_store import MemoryStore
from gongji.settlement.settler import Settler
from tests.unit import builders
from tests.unit.builders import BOOK, ERENHOT
from tests.unit.test_batch_invariance import PSNS, SETTINGS, streams


def presettlement(claim: Claim, ident: str) -> PreSettlement:
    return PreSettlement(**{**dict(claim), "claim_id": ident})


@st.composite
def asking(draw) -> tuple[list, list]:
    """A stream, and the same stream with questions between its events: pre-settlements of its
    claims (before or after them) and accumulator queries for its persons and one never seen."""
    events = draw(streams())
    claims = [event for event in events if isinstance(event, Claim)]
    asked = list(events)
    for serial in range(draw(st.integers(1, 12))):
        at = draw(st.integers(0, len(asked)))
        if claims and draw(st.booleans()):
            question = presettlement(draw(st.sampled_from(claims)), f"q:{serial}")
        else:
            question = AccumulatorQuery(query_id=f"q:{serial}", psn_no=draw(st.sampled_from(PSNS + ("nobody",))),
                                        year=2023)
        asked.insert(at, question)
    return events, asked


async def settle(events: list, sizes: list[int]) -> tuple[list, dict]:
    store = MemoryStore()
    settler = Settler(store, BOOK)
    answers, position, turn = [], 0, 0
    while position < len(events):
        size = sizes[turn % len(sizes)]
        batch = events[position:position + size]
        for event, outputs in zip(batch, await settler.handle_each(batch)):
            answers.append((isinstance(event, (PreSettlement, AccumulatorQuery)), [from_output(o) for o in outputs]))
        position, turn = position + size, turn + 1
    states = {psn: (state.balance, state.years, state.pending) for psn, state in store.states.items()}
    return answers, {"states": states, "records": store.records, "holds": store.holds, "owners": store.owners}


@SETTINGS
@given(streams_=asking(), sizes=st.lists(st.integers(2, 60), min_size=1, max_size=6))
def test_questions_see_the_one_by_one_state_in_any_batch_and_change_nothing(streams_, sizes):
    plain, asked = streams_
    one, one_state = asyncio.run(settle(asked, [1]))
    batched, batched_state = asyncio.run(settle(asked, sizes))
    assert batched == one
    assert batched_state == one_state
    without, without_state = asyncio.run(settle(plain, [1]))
    assert [outputs for question, outputs in one if not question] == [outputs for _, outputs in without]
    assert one_state == without_state  # no state, record, hold or claimed id from any question
    for question, outputs in one:
        if question:
            assert len(outputs) == 1 and outputs[0][0] in ("settlement", "rejection", "accumulators")


def test_a_presettlement_is_the_settlement_its_claim_then_gets_and_settles_nothing():
    claim = builders.claim(builders.line("1500.00"), claim_id="c1", psn_no="P", acct_used_flag="1")

    async def run():
        store = MemoryStore()
        settler = Settler(store, BOOK)
        await settler.handle([builders.institution("H3"), builders.person("P"),
                              builders.credit("2023-01", amount="500.00", psn_no="P", credit_id="k1")])
        answers = await settler.handle([presettlement(claim, "q1"), presettlement(claim, "q2"), claim,
                                        presettlement(claim, "q3")])
        return store, answers

    store, (asked, again, settled, after) = asyncio.run(run())
    assert isinstance(asked.value, Settlement) and isinstance(settled.value, Settlement)

    def money(output) -> dict:
        return {k: v for k, v in from_output(output)[1].items() if k not in ("claim_id", "setl_id")}

    assert money(asked) == money(again) == money(settled)
    assert asked.value.act_pay_dedc == 1000_00 and asked.value.acct_pay == 500_00
    # Only the claim used the deductible and the account: the question after it sees that.
    assert after.value.act_pay_dedc == 0 and after.value.acct_pay == 0
    assert set(store.owners) == {"k:k1", "c:c1"} and set(store.records) == {("P", "k:k1"), ("P", "c:c1")}
    assert store.states["P"].balance == 0 and store.states["P"].year(2023).deductible_used == 1000_00


def test_accumulators_show_the_year_and_what_is_left_of_each_limit():
    totals = YearTotals(deductible_used=400_00, outpatient_pool_paid=100_00, fund_cap_used=100_00, visits=2,
                        medfee=900_00)
    state = builders.state("300.00", y2023=totals)
    answer = accumulators(AccumulatorQuery(query_id="q", psn_no="P", year=2023), builders.person("P"), BOOK, state)
    assert isinstance(answer, Accumulators) and (answer.balc, answer.visits, answer.insu_admdvs) == (300_00, 2, ERENHOT)
    rows = {row.cum_type_code: (row.cum, row.payb_lmt_amt, row.crt_payb_lmt_amt) for row in answer.cuminfo}
    # 二连浩特: annual deductible 1,000, in-service outpatient cap 4,000 (tests/unit/builders.py)
    assert rows["deductible"] == (400_00, 1000_00, 600_00)
    assert rows["outpatient_pool"] == (100_00, 4000_00, 3900_00)
    assert rows["medfee"] == (900_00, None, None)
    other_year = accumulators(AccumulatorQuery(query_id="q", psn_no="P", year=2024), builders.person("P"), BOOK, state)
    assert {row.cum for row in other_year.cuminfo} == {0} and other_year.balc == 300_00
    unknown = accumulators(AccumulatorQuery(query_id="q", psn_no="nobody", year=2023), None, BOOK, state)
    assert isinstance(unknown, Rejection) and unknown.err_code == "UNKNOWN_PERSON" and unknown.claim_id == "q"
