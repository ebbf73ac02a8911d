"""Reports (gongji.common.reports and the rows each command makes): money exact to the fen as yuan
with two places, whatever it arrives as; a float or a third decimal place is refused, not rounded."""

from __future__ import annotations

import argparse
import csv
import json
from datetime import date
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gongji.clearing.domain import STATEMENT_COLUMNS, STATEMENT_MONEY, empty, statement, statement_rows
from gongji.common.reports import csv_text, json_line, money_text
from gongji.ledger.commands import REPORT_COLUMNS, REPORT_MONEY, report_rows
from gongji.ledger.domain import Detail, Totals, reconcile

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(("value", "text"), [
    (0, "0.00"), (5, "0.05"), (-1205, "-12.05"), (123450, "1234.50"), (10**16 - 1, "99999999999999.99"),
    (Decimal("1234.5"), "1234.50"), (Decimal("-0.10"), "-0.10"), (Decimal("7"), "7.00"), (Decimal("1E+3"), "1000.00"),
])
def test_money_text_is_yuan_with_two_places(value, text):
    assert money_text(value) == text


@pytest.mark.parametrize("value", [0.1, True, "1.00", Decimal("0.005"), Decimal("1.234")])
def test_money_text_refuses_floats_and_fractions_of_a_fen(value):
    with pytest.raises((TypeError, ValueError)):
        money_text(value)


@settings(derandomize=True, max_examples=300)
@given(st.integers(min_value=-(10**16), max_value=10**16))
def test_any_fen_amount_survives_the_round_trip_through_csv(fen):
    text = csv_text(("id", "amount"), [{"id": "a,b", "amount": fen}], money=("amount",))
    (row,) = csv.DictReader(text.splitlines())
    assert row["id"] == "a,b" and int(Decimal(row["amount"]) * 100) == fen
    assert json.loads(json_line({"amount": fen}, ("amount",)))["amount"] == row["amount"]


def test_a_float_in_a_report_is_refused():
    with pytest.raises(TypeError):
        csv_text(("n",), [{"n": 0.5}])


def test_clearing_statements_as_rows_a_row_per_direction():
    a_to_b, b_to_a = empty(), empty()
    a_to_b.update(settlements=3, medfee_sumamt=100_05, hifp_pay=50_00, fund_pay_sumamt=60_01, acct_pay=10_00)
    b_to_a.update(settlements=1, adjustments=1, medfee_sumamt=20_00, fund_pay_sumamt=15_50)
    s = statement("2023-03", "152501", "990100", a_to_b, b_to_a, "2023-04-01T00:00:00+00:00")
    rows = list(csv.DictReader(csv_text(STATEMENT_COLUMNS, statement_rows([s]), STATEMENT_MONEY).splitlines()))
    assert [(r["treatment_admdvs"], r["insured_admdvs"]) for r in rows] == [("152501", "990100"), ("990100", "152501")]
    first, second = rows
    assert (first["settlements"], first["medfee_sumamt"], first["owed"]) == ("3", "100.05", "70.01")
    assert (second["adjustments"], second["owed"], second["hifp_pay"]) == ("1", "15.50", "0.00")
    assert first["net_to_a"] == second["net_to_a"] == "54.51"  # 70.01 − 15.50
    assert first["statement_id"] == s["statement_id"] and first["ym"] == "2023-03"


def test_a_reconciliation_as_rows_totals_then_each_side_of_each_difference():
    ours = [Detail("S1", 100_00, 60_00, 10_00, setl_time="2023-03-01T09:00:00+08:00"),
            Detail("S2", 50_00, 30_00, 0, setl_time="2023-03-02T09:00:00+08:00")]
    theirs = [Detail("S2", 50_00, 31_00, 0)]
    report = reconcile(ours, Totals(1, 50_00, 31_00, 0), theirs)
    args = argparse.Namespace(fixmedins="H1", start=date(2023, 3, 1), end=date(2023, 3, 31), refunds=False)
    rows = list(csv.DictReader(csv_text(REPORT_COLUMNS, report_rows(report, args), REPORT_MONEY).splitlines()))
    assert [(r["line"], r["side"], r["setl_id"]) for r in rows] == [
        ("total", "centre", ""), ("total", "institution", ""),
        ("centre has more", "centre", "S1"), ("mismatch", "centre", "S2"), ("mismatch", "institution", "S2")]
    assert (rows[0]["count"], rows[0]["medfee_sumamt"], rows[0]["acct_pay"]) == ("2", "150.00", "10.00")
    assert rows[4]["fund_pay_sumamt"] == "31.00" and rows[3]["fund_pay_sumamt"] == "30.00"
    assert {r["verdict"] for r in rows} == {report.verdict} and rows[0]["stmt_begndate"] == "2023-03-01"


def test_clearing_per_institution_counts_each_settlement_once_under_its_institution():
    from gongji.clearing.domain import INSTITUTION_COLUMNS, INSTITUTION_MONEY, Contribution, fold_by_institution
    from gongji.clearing.domain import institution_rows

    items = [Contribution("S1", "2023-03", "152501", "990100", {"settlements": 1, "fund_pay_sumamt": 10_00,
                                                                "acct_pay": 5}, "H2"),
             Contribution("S1", "2023-03", "152501", "990100", {"settlements": 1, "fund_pay_sumamt": 10_00}, "H2"),
             Contribution("S2", "2023-03", "152501", "990100", {"settlements": 1, "fund_pay_sumamt": 1}, "H1"),
             Contribution("S3", "2023-03", "152501", "990100", {"settlements": -1, "fund_pay_sumamt": -10_00}, "H2")]
    shares = fold_by_institution(items)
    rows = institution_rows("2023-03", {key[1:]: share for key, share in shares.items()})
    parsed = list(csv.DictReader(csv_text(INSTITUTION_COLUMNS, rows, INSTITUTION_MONEY).splitlines()))
    assert [(r["fixmedins_code"], r["settlements"], r["fund_pay_sumamt"], r["owed"]) for r in parsed] == [
        ("H1", "1", "0.01", "0.01"), ("H2", "0", "0.00", "0.05")]
