"""The dashboard's figures (gongji.dashboard.domain), worked by hand on a few records."""

from __future__ import annotations

import json
from decimal import Decimal as D

from gongji.dashboard.domain import Board, cap_reached, short_reason

T0 = 1_700_000_000.0  # a whole second


def settlement(claim_id: str, psn_no: str, *, insured="152501", treated="152501", inst="H1", med_type="11",
               hifp="0.00", hifob="0.00", cvlserv="0.00", maf="0.00", acct="0.00", mulaid="0.00", cash="0.00",
               limit_left="1000.00", reversal=False) -> dict:
    fund = D(hifp) + D(hifob) + D(cvlserv) + D(maf)
    personal = D(acct) + D(mulaid) + D(cash)
    data = {
        "claim_id": claim_id, "setl_id": "S" + claim_id, "psn_no": psn_no, "med_type": med_type,
        "insu_admdvs": insured, "mdtrtarea_admvs": treated, "fixmedins_code": inst,
        "medfee_sumamt": fund + personal, "fund_pay_sumamt": fund, "hifp_pay": D(hifp), "hifob_pay": D(hifob),
        "cvlserv_pay": D(cvlserv), "maf_pay": D(maf), "acct_pay": D(acct), "acct_mulaid_pay": D(mulaid),
        "psn_cash_pay": D(cash),
        "setldetail": [{"fund_pay_type": "310100", "fund_payamt": D(hifp), "crt_payb_lmt_amt": D(limit_left),
                        "setl_proc_info": ""}],
    }
    if reversal:
        data["orig_claim_id"] = claim_id
        data["claim_id"] = "R" + claim_id
    return data


def negated(data: dict) -> dict:
    return {k: (-v if isinstance(v, D) else v) for k, v in data.items()}


def test_money_by_fund_region_flow_and_accounts_net_of_reversals():
    board = Board(since=T0, region_names={"152501": "Erenhot"})
    board.institution({"fixmedins_code": "H1", "fixmedins_type": "1", "medins_lv": "3"})
    board.institution({"fixmedins_code": "P1", "fixmedins_type": "2", "medins_lv": "1"})
    a = settlement("c1", "p1", hifp="120.00", acct="30.00", cash="10.00")
    b = settlement("c2", "p2", insured="990100", treated="152501", inst="P1", hifp="50.00", maf="20.00",
                   mulaid="15.00")
    c = settlement("c3", "p3", insured="990100", treated="990100", inst="H2", hifp="200.00", hifob="100.00", cvlserv="40.00")
    for data in (a, b, c):
        board.result("settlement", data, T0 + 1)
    board.result("settlement", a, T0 + 2)  # the same result again (a resend answered again)
    board.result("reversal", negated(settlement("c3", "p3", insured="990100", treated="990100", inst="H2", hifp="200.00",
                                                hifob="100.00", cvlserv="40.00", reversal=True)), T0 + 2)
    snap = json.loads(json.dumps(board.snapshot(T0 + 3)))  # JSON-ready as it is

    assert snap["counts"]["settlements"] == 3 and snap["counts"]["reversals"] == 1 and snap["counts"]["repeats"] == 1
    # Fund: 120 + 50 + 200 − 200 pooling, 100 − 100 large-amount, 40 − 40 civil servant, 20 assistance.
    assert {f["code"]: f["amount"] for f in snap["funds"]} == {"310100": 170.0, "330100": 0.0, "320100": 0.0,
                                                                "610100": 20.0}
    assert snap["money"]["fund_pay_sumamt"] == 190.0
    assert snap["money"]["acct_pay"] == 30.0 and snap["money"]["acct_mulaid_pay"] == 15.0
    assert snap["counts"]["mulaid_claims"] == 1
    regions = {r["code"]: r for r in snap["regions"]}
    assert regions["152501"]["label"] == "152501 Erenhot" and regions["152501"]["fund_paid"] == 120.0
    assert regions["990100"]["fund_paid"] == 70.0 and regions["990100"]["settlements"] == 2
    # Levels: H1 level 3 (120), P1 a pharmacy (70), H2 not in the registry (net 0, one reversal).
    levels = {row["level"]: row for row in snap["levels"]}
    assert levels["Level 3 hospitals"]["fund_paid"] == 120.0
    assert levels["Retail pharmacies"]["fund_paid"] == 70.0
    assert levels["Unknown (not in registry yet)"]["reversals"] == 1
    # Cross-region: only b (insured 990100, treated in 152501).
    assert [(f["insured"], f["treated"], f["settlements"], f["fund_paid"]) for f in snap["flows"]] == [
        ("990100", "152501 Erenhot", 1, 70.0)]


def test_level_moves_once_the_registry_names_the_institution():
    board = Board(since=T0)
    board.result("settlement", settlement("c1", "p1", inst="H9", hifp="10.00"), T0)
    assert [row["level"] for row in board.snapshot(T0)["levels"]] == ["Unknown (not in registry yet)"]
    board.institution({"fixmedins_code": "H9", "fixmedins_type": "1", "medins_lv": "2"})
    assert [(row["level"], row["fund_paid"]) for row in board.snapshot(T0)["levels"]] == [("Level 2 hospitals", 10.0)]


def test_annual_cap_share_of_persons():
    board = Board(since=T0)
    # p1: paid 300 of 1000 left, then exactly the 700 left: reached. p2: 0 left, pays 0: already there.
    # p3: 50 of 1000. p4: a chronic-disease claim (med_type 14), not counted.
    board.result("settlement", settlement("c1", "p1", hifp="300.00", limit_left="1000.00"), T0)
    board.result("settlement", settlement("c2", "p1", hifp="700.00", limit_left="700.00"), T0)
    board.result("settlement", settlement("c3", "p2", hifp="0.00", limit_left="0.00"), T0)
    board.result("settlement", settlement("c4", "p3", hifp="50.00", limit_left="1000.00"), T0)
    board.result("settlement", settlement("c5", "p4", med_type="14", hifp="5.00", limit_left="5.00"), T0)
    assert board.snapshot(T0)["cap"] == {"persons": 3, "reached": 2, "share": 2 / 3}
    assert cap_reached(settlement("x", "p", hifp="0.00", limit_left="10.00")) is False
    assert cap_reached(settlement("x", "p", med_type="14")) is None


def test_rate_counts_whole_seconds_by_record_time():
    board = Board(since=T0)
    for second, n in ((0, 3), (1, 5), (2, 0), (3, 7), (4, 5), (5, 9)):
        for i in range(n):
            board.result("settlement", settlement(f"c{second}-{i}", "p"), T0 + second + 0.5)
    # At T0+5.2 second 5 is still filling: the last five whole seconds are 0..4, 20 settlements.
    assert board.rate(T0 + 5.2) == 20 / 5
    series = board.snapshot(T0 + 6.0)["rate"]["series"]
    assert series[-6:] == [[int(T0) + s, n] for s, n in ((0, 3), (1, 5), (2, 0), (3, 7), (4, 5), (5, 9))]
    assert len(series) == 120


def test_rejections_dead_letters_signals_statements_and_lag():
    board = Board(since=T0, latest_signals=2)
    for code, claim in (("UNKNOWN_PERSON", "c1"), ("INVALID_CLAIM", "c2"), ("UNKNOWN_PERSON", "c3"),
                        ("UNKNOWN_PERSON", "c3")):
        board.result("rejection", {"claim_id": claim, "psn_no": "p", "err_code": code, "err_msg": ""}, T0)
    board.result("credit", {"credit_id": "k1", "psn_no": "p"}, T0)
    board.dead_letter({"reason": "undecodable: not Avro single-object encoding: expected marker c3 01, got 47 4f"})
    board.dead_letter({"reason": "undecodable: not Avro single-object encoding: got 00 00"})
    for n in range(3):
        board.fraud_signal({"signal_id": f"s{n}", "rule_id": "VISITS_PER_DAY", "category": "fraud",
                            "severity": "high", "subject_type": "person", "subject_id": f"P{n}",
                            "claim_ids": ["a", "b"], "count": 4, "threshold": "> 3 visits",
                            "amount": D("12.50"), "reason": "4 visits in a day", "detected_at": "t"})
    board.fraud_signal({"signal_id": "s2", "rule_id": "OTHER"})  # raised again: kept as first seen
    board.clearing_statement({"statement_id": "m1", "ym": "2023-03", "region_a": "152501", "region_b": "990100",
                              "a_to_b": {"settlements": 2, "owed": D("10.00")},
                              "b_to_a": {"settlements": 1, "owed": D("4.00")}, "net_to_a": D("6.00")})
    board.set_lag({"settlement": {"group": "g", "lag": 12, "partitions": 6, "topics": {"claims": 12}}}, T0)
    snap = json.loads(json.dumps(board.snapshot(T0)))
    assert snap["rejections"] == [{"code": "UNKNOWN_PERSON", "count": 2}, {"code": "INVALID_CLAIM", "count": 1}]
    assert snap["counts"]["credits"] == 1 and snap["counts"]["repeats"] == 1
    assert snap["dead_letters"] == [{"reason": "undecodable: not Avro single-object encoding", "count": 2}]
    # Newest first, two kept; a person's signal under its keyed reference (Pseudonym.signal).
    assert [s["signal_id"] for s in snap["signals"]] == [board.pseudonym.signal("s2"), board.pseudonym.signal("s1")]
    assert snap["signals"][0]["amount"] == 12.5 and snap["signals"][0]["evidence"] == 2
    assert snap["counts"]["fraud_signals"] == 3 and snap["signal_rules"] == [{"rule": "VISITS_PER_DAY", "count": 3}]
    assert snap["statements"][0]["net_to_a"] == 6.0
    assert snap["lag"] == [{"service": "settlement", "group": "g", "lag": 12, "partitions": 6,
                            "topics": {"claims": 12}}]


def test_signal_counts_are_net_of_withdrawals_and_a_resend_counts_once():
    """Issue 14: a withdrawal (same signal_id, status "withdrawn") takes its signal out of the counts
    and the list; a withdrawal of one never seen, or seen twice, changes nothing; it may be raised
    again. A resend counts once even after the list let it go."""
    board = Board(since=T0, latest_signals=2)

    def signal(ident, rule="EARLY_REFILL", status=None):
        board.fraud_signal({"signal_id": ident, "rule_id": rule, "subject_type": "institution", "subject_id": "H1",
                            **({"status": status} if status else {})})

    for ident in ("a", "b", "c"):
        signal(ident)
    signal("x", "INSTITUTION_SPIKE")
    signal("a")  # a resend of one the list of two let go
    signal("b", status="withdrawn")
    signal("b", status="withdrawn")
    signal("nobody", status="withdrawn")
    signal("x", "INSTITUTION_SPIKE", status="withdrawn")
    snap = board.snapshot(T0)
    assert snap["counts"]["fraud_signals"] == 2
    assert snap["signal_rules"] == [{"rule": "EARLY_REFILL", "count": 2}]
    assert [s["signal_id"] for s in snap["signals"]] == ["c"]
    signal("b", status="raised")  # raised again by later evidence
    assert board.snapshot(T0)["counts"]["fraud_signals"] == 3


def test_short_reason_keeps_the_kind_of_failure():
    assert short_reason("a: b: c: d") == "a: b"
    assert len(short_reason("x" * 100)) == 60


def test_the_figures_module_does_no_io():
    import ast
    from pathlib import Path

    import gongji.dashboard.domain as domain

    tree = ast.parse(Path(domain.__file__).read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module if node.module.startswith("gongji.") else node.module.split(".")[0]
                 for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert imported <= {"__future__", "collections", "dataclasses", "decimal", "gongji.contract.wire",
                        "gongji.common.pseudonym"}, imported


def test_lag_is_measured_for_every_group_setting_services_add():
    from gongji.settings import Settings
    from gongji.dashboard.service import service_groups

    class WithAudit(Settings):
        audit_group: str = "gongji-audit"

    assert service_groups(Settings()) == {"settlement": "gongji-settlement", "clearing": "gongji-clearing",
                                          "ledger": "gongji-ledger", "fraud": "gongji-fraud"}
    assert service_groups(WithAudit())["audit"] == "gongji-audit"


def test_the_fraud_services_group_is_its_faust_app_id_with_the_topic_prefix():
    """The dashboard reads the fraud service's lag under the group faust really joins."""
    from gongji.settings import Settings
    from gongji.dashboard.service import service_groups

    groups = service_groups(Settings(topic_prefix="d1a2b3.", fraud_group="d1a2b3-fraud", ledger_group="d1a2b3-ledger"))
    assert groups["fraud"] == "d1a2b3.d1a2b3-fraud" and groups["ledger"] == "d1a2b3-ledger"


def test_settled_and_reversed_kept_apart_the_latest_settlements_and_the_answers_to_claims():
    """What the demo shows beside the dashboard's figures (gongji.local.demo folds with a Board)."""
    board = Board(since=T0, latest_settlements=2)
    a = settlement("c1", "p1", hifp="100.00", cash="10.00")
    b = settlement("c2", "p2", insured="990100", hifp="40.00", acct="5.00")
    c = settlement("c3", "p3", hifp="7.00")
    for data in (a, b, c, a):
        board.result("settlement", data, T0)
    board.result("reversal", negated(settlement("c1", "p1", hifp="100.00", cash="10.00", reversal=True)), T0)
    board.result("rejection", {"credit_id": "k1", "psn_no": "p", "input_type": "credit", "err_code": "X"}, T0)
    board.result("credit", {"credit_id": "k2", "psn_no": "p"}, T0)
    board.dead_letter({"topic": "x.claims", "reason": "undecodable", "service": "settlement"})
    board.dead_letter({"topic": "x.claims", "reason": "undecodable", "service": "fraud"})
    assert board.paid["settlement"]["hifp_pay"] == D("147.00") and board.paid["reversal"]["hifp_pay"] == D("-100.00")
    assert board.net("medfee_sumamt") == D("52.00") and board.net("psn_cash_pay") == D("0.00")
    assert board.regions["152501"].settled_fund == D("107.00") and board.regions["152501"].fund_paid == D("7.00")
    assert [data["claim_id"] for data in board.latest] == ["c2", "c3"]
    assert board.cross_region() == 1
    # Three settlements, the resend answered again, the reversal and settlement's dead letter; not
    # the credit, nor its refusal, nor fraud's second letter for the same junk.
    assert board.answered == 6


def test_a_reversal_takes_its_claim_out_of_the_counts_of_every_slice_it_was_counted_in():
    board = Board(since=T0, region_names={"152501": "Erenhot"})
    board.institution({"fixmedins_code": "H1", "fixmedins_type": "1", "medins_lv": "3"})
    away = settlement("c1", "p1", insured="990100", treated="152501", hifp="80.00", acct="20.00")
    home = settlement("c2", "p2", hifp="10.00")
    for data in (away, home, settlement("c3", "p3", insured="990100", treated="152501", hifp="5.00")):
        board.result("settlement", data, T0)
    board.result("reversal", negated(settlement("c1", "p1", insured="990100", treated="152501", hifp="80.00",
                                                acct="20.00", reversal=True)), T0 + 1)
    snap = json.loads(json.dumps(board.snapshot(T0 + 2)))
    assert snap["counts"]["settlements"] == 3 and snap["counts"]["reversals"] == 1
    assert snap["counts"]["net_settlements"] == 2
    assert {r["code"]: r["claims"] for r in snap["regions"]} == {"152501": 1, "990100": 1}
    assert [(row["level"], row["claims"]) for row in snap["levels"]] == [("Level 3 hospitals", 3 - 1)]
    [flow] = snap["flows"]
    assert (flow["settlements"], flow["reversals"], flow["claims"]) == (2, 1, 1)
    assert board.cross_region() == 1
    # The same reversal again (a redelivery) takes nothing more out.
    board.result("reversal", negated(settlement("c1", "p1", insured="990100", treated="152501", hifp="80.00",
                                                acct="20.00", reversal=True)), T0 + 1)
    assert board.snapshot(T0 + 2)["counts"]["net_settlements"] == 2 and board.cross_region() == 1


def test_cross_region_flows_carry_amounts_net_of_reversals_per_pair_of_regions():
    board = Board(since=T0, region_names={"152501": "Erenhot", "990100": "Demo City"})
    rows = [settlement("a1", "p1", insured="990100", treated="152501", hifp="120.00", maf="30.00", acct="12.34",
                       cash="0.66"),
            settlement("a2", "p2", insured="990100", treated="152501", hifp="0.10", cash="0.20"),
            settlement("b1", "p3", insured="152501", treated="990100", hifp="50.00", cvlserv="7.00", cash="3.00"),
            settlement("h1", "p4", hifp="999.00")]  # at home: no flow
    for data in rows:
        board.result("settlement", data, T0)
    board.result("reversal", negated(settlement("a2", "p2", insured="990100", treated="152501", hifp="0.10",
                                                cash="0.20", reversal=True)), T0)
    flows = {(f["insured"], f["treated"]): f for f in board.snapshot(T0)["flows"]}
    assert set(flows) == {("990100 Demo City", "152501 Erenhot"), ("152501 Erenhot", "990100 Demo City")}
    there = flows[("990100 Demo City", "152501 Erenhot")]
    assert (there["claims"], there["fund_paid"], there["medfee"]) == (1, 150.0, 163.0)
    assert there["by_fund"] == {"310100": 120.0, "330100": 0.0, "320100": 0.0, "610100": 30.0}
    back = flows[("152501 Erenhot", "990100 Demo City")]
    assert (back["claims"], back["fund_paid"], back["medfee"]) == (1, 57.0, 60.0)
    # Kept exact inside, rounded only for the page: a thousand 0.10 claims are 100.00, not 99.99….
    for n in range(1000):
        board.result("settlement", settlement(f"m{n}", "p5", insured="990100", treated="152501", hifp="0.10"), T0)
    assert board.flows[("990100", "152501")].fund_paid == D("250.00")
