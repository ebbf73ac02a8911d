"""The demo's figures, folded by the dashboard's Board: what counts as the answer to a message sent
on `claims` (so that its drain waits for every answer and its summary is not taken early), and
what its summary prints."""

from __future__ import annotations

from decimal import Decimal as D
from pathlib import Path

import pytest

from gongji.local.demo.figures import Run
from gongji.local.demo.summaries import summary
from gongji.local.demo.traffic import JUNK
from gongji.settings import Settings

pytestmark = pytest.mark.unit
T0 = 1_700_000_000.0


def letter(service: str) -> dict:
    return {"topic": "d1.claims", "partition": 0, "offset": 7, "key": b"P1", "reason": "undecodable: not Avro",
            "original": JUNK + b"rest", "failed_at": "2026-11-23T00:00:00+00:00", "service": service}


def a_run(sent: int = 0) -> Run:
    run = Run(Settings(), rate=100, log=Path("settlement.log"), region_names={"152501": "Erenhot", "990100": ""})
    run.sent.claims = sent
    return run


def settlement(claim_id: str, insured: str, treated: str, fund: str, cash: str, sign: int = 1) -> dict:
    fund_, cash_ = sign * D(fund), sign * D(cash)
    return {"claim_id": claim_id, "setl_id": "S" + claim_id, "psn_no": "p", "med_type": "11",
            "insu_admdvs": insured, "mdtrtarea_admvs": treated, "fixmedins_code": "H1",
            "medfee_sumamt": fund_ + cash_, "fund_pay_sumamt": fund_, "hifp_pay": fund_, "acct_pay": D("0.00"),
            "acct_mulaid_pay": D("0.00"), "psn_cash_pay": cash_, "setldetail": []}


def test_junk_is_answered_once_by_settlement_whoever_else_dead_letters_it():
    """The fraud service reads claims too and dead-letters the same junk: that is not a second
    answer (counted as one, the drain ended while real results were still unread)."""
    run = a_run(sent=2)
    run.fold("DeadLetter", letter("settlement"), T0)
    run.fold("DeadLetter", letter("fraud"), T0)
    assert run.board.answered == 1 and run.board.counts["dead letter"] == 2
    assert run.in_flight() == 1


def test_a_resend_answered_again_is_an_answer_but_one_settlement_and_a_credits_refusal_is_none():
    run = a_run(sent=3)
    first = settlement("c1", "152501", "152501", "10.00", "2.00")
    run.fold("Settlement", first, T0)
    run.fold("Settlement", first, T0)  # the hospital sent it again
    run.fold("Rejection", {"credit_id": "k1", "psn_no": "p", "input_type": "credit", "err_code": "X"}, T0)
    assert run.board.counts["settlement"] == 1 and run.board.repeats == 1
    assert run.board.answered == 2 and run.in_flight() == 1
    run.fold("Rejection", {"claim_id": "c2", "psn_no": "p", "input_type": "claim", "err_code": "INVALID_CLAIM"}, T0)
    assert run.in_flight() == 0


def test_the_summary_shows_settled_reversed_and_net_and_each_regions_fund_before_reversals():
    run = a_run()
    run.fold("Settlement", settlement("c1", "152501", "152501", "120.00", "30.00"), T0)
    run.fold("Settlement", settlement("c2", "990100", "152501", "50.00", "5.00"), T0)
    run.fold("ReversalResult", {**settlement("R-c1", "152501", "152501", "120.00", "30.00", sign=-1),
                                "orig_claim_id": "c1"}, T0)
    run.fold("DeadLetter", {**letter("settlement"), "reason": "x" * 70}, T0)
    lines = summary(run).splitlines()
    assert "results: 2 settlements, 1 reversals, 0 credits, 0 rejections, 1 dead letters; 0 repeated" in lines[2]
    fund = next(line for line in lines if line.startswith("fund paid (fund_pay_sumamt)")).split()
    assert fund[-3:] == ["170.00", "-120.00", "50.00"]
    assert "by insured region: 152501 Erenhot: 1 settlements, fund paid 120.00; " \
           "990100: 1 settlements, fund paid 50.00" in lines
    assert "treated in another region: 1 settlements" in lines
    assert f"dead letters by reason: 1 × {'x' * 59}…" in lines
