"""The out-of-pocket share of people in difficulty (seed 003: "reasonably control the proportion of out
of pocket expenses within the scope of policies for people with difficulties"): the share's definition,
the OOP_SHARE signal at its threshold and minimum and one fen either side, its withdrawal, its
independence of read order, the category on the settlement result, and the ledger's report rows."""

from __future__ import annotations

import io
from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gongji.common.burden import left_share, over_share
from gongji.fraud.domain import MemoryBuckets, VisitReversed, VisitSettled, reversal_from_wire, visit_from_wire
from gongji.fraud.rules import detect
from gongji.ledger.burden import as_record, print_rows, rows_from
from gongji.ledger.domain import entry_for
from gongji.fraud_settings import FraudSettings

pytestmark = pytest.mark.unit

T0 = datetime.fromisoformat("2024-03-04T09:00:00+08:00")


# ------------------------------------------------------------------ the share


def test_the_share_left_is_what_the_funds_did_not_pay_of_the_in_scope_costs_to_four_places_half_up():
    assert left_share(500_000, 400_000) == Decimal("0.2000")
    assert left_share(300, 200) == Decimal("0.3333")
    assert left_share(3, 1) == Decimal("0.6667")  # 0.66666… half up
    assert left_share(20_000, 19_999) == Decimal("0.0001")  # 0.00005 half up
    assert left_share(0, 0) is None and left_share(-100, -80) is None


@pytest.mark.parametrize("inscope, fund, over", [
    (500_000, 400_000, False),  # exactly 20 % left: not over
    (500_000, 400_001, False),  # one fen less left
    (500_000, 399_999, True),   # one fen more left: over, although 20.0002 % shows as 20.00 %
    (499_999, 0, False),        # everything left, but one fen under the minimum in scope
    (500_001, 400_000, True),   # one fen over the minimum, left 100 000.01 > 20 % of 5 000.01
])
def test_over_the_threshold_is_exact_at_the_threshold_and_the_minimum(inscope, fund, over):
    assert over_share(inscope, fund, Decimal("0.20"), 500_000) is over


# ------------------------------------------------------------------ OOP_SHARE


def visit(cid, inscope, fund, category="dibao", psn="P1", region="152501", when=T0):
    return VisitSettled(cid, psn, "H1", region, region, when, inscope, inscope - fund, inscp_fen=inscope, fund_fen=fund,
                        psn_idet_type=category)


def reversal(cid, of: VisitSettled, after=timedelta(days=2)):
    return VisitReversed(cid, of.claim_id, of.psn_no, of.fixmedins_code, of.mdtrtarea_admvs, of.setl_time + after,
                         of.setl_time, -of.psn_part_fen, insu_admdvs=of.insu_admdvs, inscp_fen=-of.inscp_fen,
                         fund_fen=-of.fund_fen, psn_idet_type=of.psn_idet_type)


def signals(events, **config):
    return [s for s in detect(FraudSettings(**config), MemoryBuckets(), events).signals if s.rule_id == "OOP_SHARE"]


def final(events, **config) -> set[str]:
    state: dict[tuple, str] = {}
    for s in signals(events, **config):
        state[(s.subject_id, s.window.start)] = s.status
    return {subject for (subject, _), status in state.items() if status == "raised"}


def test_a_person_in_difficulty_left_over_the_threshold_is_signalled_once_for_review():
    events = [visit("a", 300_000, 240_000), visit("b", 200_000, 159_999, when=T0 + timedelta(days=1))]
    # 5 000.00 in scope, 3 999.99 paid by the funds: 1 000.01 left, over 20 %
    (signal,) = signals(events + [visit("c", 10_000, 0, when=T0 + timedelta(days=2))])
    record = signal.to_wire("2024-03-06T10:00:00+08:00")
    assert (record["rule_id"], record["category"], record["severity"]) == ("OOP_SHARE", "relief_review", "medium")
    assert record["claim_ids"] == ["a", "b"] and record["amount"] == Decimal("1000.01")
    assert record["window_start"] == "2024-01-01T00:00:00+08:00"
    assert "20.00% of 5000.00 yuan in scope" in record["reason"] and "P1" not in record["reason"]


@pytest.mark.parametrize("fund, raised", [(400_000, False), (400_001, False), (399_999, True)])
def test_the_threshold_one_fen_either_side(fund, raised):
    assert bool(signals([visit("a", 500_000, fund)])) is raised


@pytest.mark.parametrize("inscope, raised", [(499_999, False), (500_000, True), (500_001, True)])
def test_the_minimum_in_scope_one_fen_either_side(inscope, raised):
    assert bool(signals([visit("a", inscope, 0)])) is raised


def test_a_person_in_no_category_is_never_judged():
    assert signals([visit("a", 900_000, 0, category=None)]) == []


def test_the_threshold_is_the_insured_region_s_own():
    events = [visit("a", 500_000, 350_000, region="990100")]  # 30 % left
    assert signals(events, oop_share_threshold_by_region={"990100": Decimal("0.35")}) == []
    assert len(signals(events, oop_share_threshold_by_region={"152501": Decimal("0.35")})) == 1


def test_a_reversal_that_brings_the_year_back_under_withdraws_it_and_one_read_first_keeps_it_from_firing():
    a, b = visit("a", 400_000, 400_000), visit("b", 200_000, 0, when=T0 + timedelta(days=1))  # 33.33 % left
    undo = reversal("r", b)
    raised, withdrawn = signals([a, b, undo])
    assert (raised.status, withdrawn.status) == ("raised", "withdrawn")
    assert "Back to 0.00% of 4000.00 yuan in scope" in withdrawn.reason
    assert signals([undo, a, b]) == []
    assert signals([a, b, undo, b, undo]) == [raised, withdrawn]  # resends count nothing twice


def test_a_reversal_counts_in_its_original_s_year():
    late = visit("a", 600_000, 300_000, when=datetime.fromisoformat("2024-12-31T23:30:00+08:00"))
    raised, withdrawn = signals([late, reversal("r", late, after=timedelta(hours=2))])
    assert raised.window == withdrawn.window and raised.window.start.year == 2024


@st.composite
def share_world(draw) -> list:
    events = []
    for n in range(draw(st.integers(1, 6))):
        inscope = draw(st.sampled_from((100_000, 300_000, 500_000)))
        v = visit(f"V{n}", inscope, inscope * draw(st.sampled_from((50, 80, 100))) // 100,
                  psn=f"P{draw(st.integers(0, 1))}", when=T0 + timedelta(days=draw(st.integers(0, 300))))
        events.append(v)
        if draw(st.booleans()):
            events.append(reversal(f"R{n}", v, timedelta(days=draw(st.integers(0, 30)))))
    return events


@settings(max_examples=150, deadline=None, derandomize=True)
@given(share_world(), st.randoms(use_true_random=False))
def test_the_final_signals_are_the_same_in_any_read_order(events, rng):
    shuffled = list(events)
    rng.shuffle(shuffled)
    assert final(shuffled) == final(events)


# ------------------------------------------------------------------ results, ledger


RESULT = {"claim_id": "C1", "setl_id": "S1", "psn_no": "P1", "fixmedins_code": "H1", "insu_admdvs": "152501",
          "mdtrtarea_admvs": "152501", "setl_time": "2024-03-04T09:00:00+08:00", "medfee_sumamt": Decimal("100.00"),
          "fulamt_ownpay_amt": Decimal("10.00"), "overlmt_selfpay": Decimal("0"), "inscp_scp_amt": Decimal("90.00"), "fund_pay_sumamt": Decimal("63.00"), "psn_part_amt": Decimal("37.00"),
          "hifp_pay": Decimal("50.00"), "hifob_pay": Decimal("0"), "cvlserv_pay": Decimal("0"),
          "maf_pay": Decimal("13.00"), "oth_pay": Decimal("0"), "acct_pay": Decimal("0"),
          "acct_mulaid_pay": Decimal("0"), "psn_cash_pay": Decimal("37.00"), "psn_idet_type": "tekun"}


def test_the_fraud_service_and_the_ledger_read_the_share_s_figures_off_the_result():
    seen = visit_from_wire(RESULT)
    assert (seen.inscp_fen, seen.fund_fen, seen.psn_idet_type) == (9000, 6300, "tekun")
    undo = reversal_from_wire({**RESULT, "claim_id": "C2", "orig_claim_id": "C1", "orig_setl_time": RESULT["setl_time"],
                               **{k: -RESULT[k] for k in ("inscp_scp_amt", "fund_pay_sumamt", "psn_part_amt")}})
    assert (undo.insu_admdvs, undo.inscp_fen, undo.fund_fen, undo.psn_idet_type) == ("152501", -9000, -6300, "tekun")
    entry = entry_for("settlement", RESULT)
    assert (entry.inscp_scp_amt, entry.psn_idet_type) == (9000, "tekun")
    assert entry_for("settlement", {**RESULT, "psn_idet_type": None}).psn_idet_type is None


def test_the_report_rows_hand_worked():
    fraud = FraudSettings(oop_share_threshold_by_region={"990100": Decimal("0.15")})
    rows = rows_from([
        {"region": "152501", "category": None, "persons": 3, "inscope": Decimal("1000.00"), "fund": Decimal("600.00"),
         "over": 0},
        {"region": "152501", "category": "dibao", "persons": 2, "inscope": Decimal("12000.00"),
         "fund": Decimal("9599.99"), "over": 1},
        {"region": "990100", "category": "tekun", "persons": 1, "inscope": Decimal("0.00"), "fund": Decimal("0.00"),
         "over": 0},
    ], fraud)
    assert [as_record(row) for row in rows][1] == {
        "insu_admdvs": "152501", "psn_idet_type": "dibao", "persons": 2, "inscp_scp_amt": 1_200_000,
        "fund_pay_sumamt": 959_999, "left_to_persons": 240_001, "left_share": "0.2000", "threshold": "0.20",
        "persons_over": 1}
    assert rows[2].share is None and rows[2].threshold == Decimal("0.15")
    out = io.StringIO()
    print_rows(rows, "csv", 500_000, out)
    assert out.getvalue().splitlines()[2] == "152501,dibao,2,12000.00,9599.99,2400.01,0.2000,0.20,1"
    out = io.StringIO()
    print_rows(rows, "table", 500_000, out)
    table = out.getvalue()
    assert "20.00%" in table and "—" in table and "at least 5000.00 yuan in scope" in table


def test_an_empty_period_says_so():
    out = io.StringIO()
    print_rows([], "table", 0, out)
    assert out.getvalue() == "no settlements in the period\n"


def test_a_result_names_the_assistance_category_it_was_settled_under_and_its_reversal_keeps_it():
    from tests.unit.builders import BOOK, claim, institution, line, person, record, reversal as reversal_event, state

    from gongji.settlement.rules import reverse_claim, settle_claim

    h3 = institution("H3", level="3")
    general = settle_claim(claim(line("300.00")), person(psn_idet_type="tekun"), h3, BOOK, state())
    assert general.settlement.psn_idet_type == "tekun"  # no assistance on general outpatient, still the category
    assert settle_claim(claim(line("300.00")), person(), h3, BOOK, state()).settlement.psn_idet_type is None
    unknown = settle_claim(claim(line("300.00")), person(psn_idet_type="veteran"), h3, BOOK, state())
    assert unknown.settlement.psn_idet_type is None  # a code the region's policy has no category for
    undone = reverse_claim(reversal_event(general.settlement.claim_id),
                           record(general), general.state)
    assert undone.settlement.psn_idet_type == "tekun"


def test_a_category_granted_on_application_is_named_on_the_results_within_its_period_only():
    from tests.unit.builders import BOOK, claim, institution, line, person, state

    from gongji.settlement.rules import settle_claim

    granted = person(aid_idet_type="relapse_risk", aid_begndate="2023-06-01", aid_enddate="2023-06-30",
                     aid_apprv_org="二连浩特市医疗保障局", aid_apprv_date="2023-05-20")
    h3 = institution("H3", level="3")
    inside = settle_claim(claim(line("300.00"), setl_time="2023-06-30T23:59:00+08:00"), granted, h3, BOOK, state())
    after = settle_claim(claim(line("300.00"), setl_time="2023-07-01T00:00:00+08:00"), granted, h3, BOOK, state())
    assert (inside.settlement.psn_idet_type, after.settlement.psn_idet_type) == ("relapse_risk", None)
    standing = settle_claim(claim(line("300.00")), granted.model_copy(update={"psn_idet_type": "dibao"}), h3, BOOK,
                            state())
    assert standing.settlement.psn_idet_type == "dibao"  # the standing category comes first
