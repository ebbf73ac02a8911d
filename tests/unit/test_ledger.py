"""The fund ledger's rules: postings per result, worked by hand; reconciliation verdicts (3201/3202);
and the property that every entry the engine's results become balances."""

from __future__ import annotations

from datetime import date
from decimal import Decimal as D

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from tests.unit.test_engine_properties import cases, fold

from gongji.ledger.domain import (
    Detail,
    LedgerError,
    Posting,
    Totals,
    detail_from_row,
    entry_for,
    fen_of,
    reconcile,
)
from gongji.common.avro import SchemaCatalog
from gongji.common.money import MoneyError
from gongji.contract.wire import OUTPUT_RECORDS
from gongji.ledger.store import book_columns
from gongji.settlement.codec import ResultEncoder, from_output
from gongji.settlement.domain import Output
from gongji.settlement.rules import ClaimReversed, ClaimSettled

pytestmark = pytest.mark.unit


def settlement(**changes) -> dict:
    """A 2207 result as decoded from the wire: 500.00 of fees, 150.00 from the funds (120.00
    pooling, 30.00 assistance), 40.00 from the own account, 10.00 from the spouse's, 300.00 cash."""
    base = {"claim_id": "C1", "setl_id": "S1", "psn_no": "P1", "insu_admdvs": "990100", "mdtrtarea_admvs": "152501",
            "fixmedins_code": "H1", "setl_time": "2023-03-31T23:30:00+08:00", "medfee_sumamt": D("500.00"),
            "hifp_pay": D("120.00"), "hifob_pay": D("0.00"), "cvlserv_pay": D("0.00"), "maf_pay": D("30.00"),
            "oth_pay": D("0.00"), "fund_pay_sumamt": D("150.00"), "acct_pay": D("40.00"),
            "acct_mulaid_pay": D("10.00"), "psn_cash_pay": D("300.00"), "mulaid_holder_psn_no": "P2"}
    return base | changes


def test_a_settlement_books_every_source_of_payment_against_the_institution():
    """Fund + accounts + cash (debits) = what the agency owes the institution + the cash it took
    (credits) = medfee_sumamt; family aid is debited to the holder's account."""
    entry = entry_for("settlement", settlement())
    assert set(entry.postings) == {
        Posting("fund:310100:990100", 12000, 0), Posting("fund:610100:990100", 3000, 0),
        Posting("acct:P1", 4000, 0), Posting("acct:P2", 1000, 0), Posting("cash:990100", 30000, 0),
        Posting("inst:H1:payable", 0, 20000), Posting("inst:H1:cash", 0, 30000),
    }
    assert entry.debits == entry.credits == 50000
    assert (entry.entry_id, entry.book_date, entry.acct_pay) == ("S1", date(2023, 3, 31), 5000)


def test_the_book_date_is_the_settlements_own_local_date():
    assert entry_for("settlement", settlement(setl_time="2023-03-31T23:30:00+08:00")).book_date == date(2023, 3, 31)


def test_a_reversal_swaps_every_side():
    reversal = settlement(claim_id="R1", setl_id="S2", orig_setl_id="S1", setl_time="2023-04-02T09:00:00+08:00",
                          **{k: -v for k, v in settlement().items() if isinstance(v, D)})
    entry = entry_for("reversal", reversal)
    original = {p.account: (p.debit, p.credit) for p in entry_for("settlement", settlement()).postings}
    assert {p.account: (p.credit, p.debit) for p in entry.postings} == original
    assert (entry.orig_entry_id, entry.medfee_sumamt, entry.book_date) == ("S1", -50000, date(2023, 4, 2))


def test_the_funds_are_booked_from_the_pay_fields_not_from_setldetail():
    """The README: the `*_pay` fields (which must add up to fund_pay_sumamt) are what is booked;
    setldetail, how each fund's amount came about, is not read, even where it says otherwise."""
    detail = [{"fund_pay_type": "310100", "inscp_scp_amt": D("500.00"), "crt_payb_lmt_amt": D("0.00"),
               "fund_payamt": D("999.00"), "setl_proc_info": "says otherwise"}]
    assert entry_for("settlement", settlement(setldetail=detail)).postings == \
        entry_for("settlement", settlement()).postings


def test_balances_by_account_are_the_persons_accounts_and_by_all_every_account():
    from gongji.ledger.commands import PREFIXES

    assert (PREFIXES["account"], PREFIXES["fund"], PREFIXES["institution"], PREFIXES["cash"], PREFIXES["all"]) == (
        "acct:", "fund:", "inst:", "cash:", None)


def test_a_credit_moves_money_from_the_account_fund_to_the_person():
    entry = entry_for("credit", {"credit_id": "CR1", "psn_no": "P1", "ym": "2023-01", "amount": D("77.00"),
                                 "balc": D("77.00"), "insu_admdvs": "152501"})
    assert entry.postings == (Posting("fund:310200:152501", 7700, 0), Posting("acct:P1", 0, 7700))
    assert entry.book_date == date(2023, 1, 1)


def test_a_result_that_does_not_add_up_is_refused_not_booked():
    with pytest.raises(LedgerError, match="medfee_sumamt"):
        entry_for("settlement", settlement(psn_cash_pay=D("299.99")))
    with pytest.raises(LedgerError, match="fund_pay_sumamt"):
        entry_for("settlement", settlement(hifp_pay=D("121.00")))
    with pytest.raises(LedgerError, match="no holder"):
        entry_for("settlement", settlement(mulaid_holder_psn_no=None))
    with pytest.raises(LedgerError, match="rejection"):
        entry_for("rejection", {"claim_id": "C9"})


def test_a_claim_paid_in_cash_only_has_no_empty_lines():
    entry = entry_for("settlement", settlement(hifp_pay=D("0.00"), maf_pay=D("0.00"), fund_pay_sumamt=D("0.00"),
                                               acct_pay=D("0.00"), acct_mulaid_pay=D("0.00"), psn_cash_pay=D("500.00")))
    assert set(entry.postings) == {Posting("cash:990100", 50000, 0), Posting("inst:H1:cash", 0, 50000)}


# ---------------------------------------------------------------- reconciliation (3201/3202)

A, B, C = (Detail("S1", 10000, 6000, 1000), Detail("S2", 5000, 2000, 0), Detail("S3", 2000, 0, 500))


@pytest.mark.parametrize(("theirs", "details", "verdict", "differing"), [
    (Totals(3, 17000, 8000, 1500), None, "balanced", []),
    (Totals(2, 15000, 8000, 1000), None, "centre has more", []),  # they miss S3
    (Totals(4, 18000, 8100, 1500), None, "institution has more", []),
    (Totals(3, 17000, 8000, 1400), None, "centre has more", []),  # less on one figure only: still a side
    (Totals(3, 17100, 7900, 1500), None, "mismatch", []),
    (Totals(2, 15000, 8000, 1600), None, "mismatch", []),  # fewer, less, the same, but more account pay
    (Totals(2, 15000, 8000, 1000), [A, B], "centre has more", [("S3", "centre has more")]),
    (Totals(4, 18000, 8100, 1500), [A, B, C, Detail("S4", 1000, 100, 0)], "institution has more",
     [("S4", "institution has more")]),
    (Totals(3, 17000, 8000, 1500), [A, Detail("S2", 5000, 2100, 0), Detail("S4", 2000, -100, 500)], "mismatch",
     [("S2", "mismatch"), ("S3", "centre has more"), ("S4", "institution has more")]),
    # S3 missing on their side and S4 on ours, with the same amounts: the totals agree, the sides do not
    (Totals(3, 17000, 8000, 1500), [A, B, Detail("S4", 2000, 0, 500)], "mismatch",
     [("S3", "centre has more"), ("S4", "institution has more")]),
    # A settlement the institution lists twice is one it counted twice.
    (Totals(4, 27000, 14000, 2500), [A, B, C, A], "institution has more", [("S1", "institution has more")]),
])
def test_reconciliation_verdicts(theirs, details, verdict, differing):
    report = reconcile([A, B, C], theirs, details)
    assert report.verdict == verdict
    assert [(d.setl_id, d.kind) for d in report.differences] == differing
    assert report.centre == Totals(3, 17000, 8000, 1500)


def test_a_refund_period_is_compared_by_magnitude():
    """3201 over a period of reversals only: the sums are negative, and the side with the refund the
    other lacks has more (−150.00 against −100.00), not less."""
    refunds = [Detail("R1", -10000, -6000, -1000), Detail("R2", -5000, -2000, 0)]
    assert reconcile(refunds, Totals(1, -10000, -6000, -1000)).verdict == "centre has more"
    assert reconcile(refunds[:1], Totals(2, -15000, -8000, -1000)).verdict == "institution has more"


def test_totals_that_agree_hide_no_differing_line():
    """Two errors that cancel out in the totals are still found line by line."""
    report = reconcile([A, B], Totals(2, 15000, 8000, 1000), [Detail("S1", 10000, 5000, 1000),
                                                             Detail("S2", 5000, 3000, 0)])
    assert report.verdict == "mismatch" and [d.setl_id for d in report.differences] == ["S1", "S2"]


def test_detail_lines_are_read_in_yuan():
    assert detail_from_row({"setl_id": "S1", "medfee_sumamt": "100.00", "fund_pay_sumamt": "60",
                            "acct_pay": 10.0}) == A
    with pytest.raises(LedgerError, match="medfee_sumamt"):
        detail_from_row({"setl_id": "S1", "fund_pay_sumamt": "60", "acct_pay": "10"})


# ---------------------------------------------------------------- property


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(case=cases())
def test_every_entry_the_engine_produces_balances(case):
    """Issue 4: the ledger always balances, per entry and so per day, for any sequence of claims and
    reversals the engine settles."""
    run = fold(case)
    entries = []
    for outcome in run.outcomes:
        if isinstance(outcome, (ClaimSettled, ClaimReversed)):
            kind, wire = from_output(Output(outcome.settlement.psn_no, outcome.settlement))
            entries.append(entry_for(kind, wire))
    for entry in entries:
        assert entry.debits == entry.credits == sum(max(0, p.debit) for p in entry.postings)
        assert all((p.debit > 0) != (p.credit > 0) for p in entry.postings)
    by_day: dict[date, list[int]] = {}
    for entry in entries:
        by_day.setdefault(entry.book_date, [0, 0])
        by_day[entry.book_date][0] += entry.debits
        by_day[entry.book_date][1] += entry.credits
    assert all(debit == credit for debit, credit in by_day.values())


def test_the_book_date_is_the_local_date_in_china_whatever_offset_was_sent():
    """01:30 on 1 April in Beijing, sent in UTC: booked on 1 April, as the engine's year and
    clearing's month count it."""
    assert entry_for("settlement", settlement(setl_time="2023-03-31T17:30:00+00:00")).book_date == date(2023, 4, 1)


def test_a_zero_result_is_an_entry_without_postings():
    """An empty opening balance or a free visit moved nothing: booked (so it is accounted for),
    with no lines, and it balances."""
    credit = entry_for("credit", {"credit_id": "CR0", "psn_no": "P1", "ym": "2023-01", "amount": D("0.00"),
                                  "balc": D("0.00"), "insu_admdvs": "152501"})
    zeros = {k: D("0.00") for k, v in settlement().items() if isinstance(v, D)}
    free = entry_for("settlement", settlement(**zeros, mulaid_holder_psn_no=None))
    assert credit.postings == () == free.postings and credit.debits == credit.credits == 0


@settings(max_examples=40, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(case=cases())
def test_an_entry_read_from_the_wires_unscaled_integers_is_the_entry_read_from_decimals(case):
    """The service reads amounts as decode_unscaled leaves them (bytes of fen): the same entries,
    to the fen, as from decode's Decimals, refunds (negative amounts) included."""
    catalog = SchemaCatalog()
    encoder = ResultEncoder(catalog, OUTPUT_RECORDS)
    run = fold(case)
    for outcome in run.outcomes:
        if isinstance(outcome, (ClaimSettled, ClaimReversed)):
            kind, value, _ = encoder.encode(Output(outcome.settlement.psn_no, outcome.settlement))
            _, unscaled, decimals = catalog.decode_unscaled(value)
            assert decimals is not None and isinstance(unscaled["medfee_sumamt"], bytes)
            assert entry_for(kind, unscaled) == entry_for(kind, catalog.decode(value)[1])


@pytest.mark.parametrize("value, fen", [(b"\x00", 0), (b"\x01\x00", 256), (b"\xff", -1), (b"\xff\x38", -200),
                                        (D("-2.00"), -200), ("12.30", 1230)])
def test_an_amount_in_fen_from_the_wire_or_from_yuan(value, fen):
    assert fen_of(value) == fen


def test_an_amount_past_10_to_the_18_yuan_is_refused_from_the_wire_as_from_yuan():
    with pytest.raises(MoneyError):
        fen_of((10 ** 20).to_bytes(9, "big", signed=True))
    with pytest.raises(MoneyError):
        fen_of(D(10 ** 18))
    assert fen_of((10 ** 20 - 1).to_bytes(9, "big", signed=True)) == 10 ** 20 - 1


def test_a_batch_is_one_column_a_field_first_copy_of_an_entry_only_amounts_in_fen():
    """LedgerStore.book's parameters: each entry once (a redelivered copy in the same batch is the
    same entry), its postings numbered from 1, money in fen for the server to scale."""
    first = entry_for("settlement", settlement())
    credit = entry_for("credit", {"credit_id": "CR1", "psn_no": "P1", "ym": "2023-01", "amount": D("12.30"),
                                  "insu_admdvs": "152501"})
    columns = book_columns([(first, ("settlements", 1, 7)), (credit, None), (first, ("settlements", 2, 9))])
    assert len(columns) == 25
    assert columns[0] == [first.entry_id, "CR1"] and columns[14:17] == [["settlements", None], [1, None], [7, None]]
    assert columns[10] == [50000, 0] and columns[8] == [first.setl_time, None]
    postings = list(zip(*columns[19:]))
    assert postings[-2:] == [("CR1", 1, "fund:310200:152501", 1230, 0, credit.book_date),
                             ("CR1", 2, "acct:P1", 0, 1230, credit.book_date)]
    assert [line[1] for line in postings if line[0] == first.entry_id] == list(range(1, len(first.postings) + 1))
    assert sum(line[3] for line in postings) == sum(line[4] for line in postings) == first.debits + 1230


@pytest.mark.parametrize("field", ["psn_no", "fixmedins_code", "setl_id", "mulaid_holder_psn_no", "psn_idet_type"])
def test_a_nul_byte_in_any_text_is_refused_as_psycopg_refuses_it(field):
    """Texts go in binary, where psycopg lets a NUL through and PostgreSQL's refusal would not name
    it: the dead letter says NUL, as before (tests/integration/test_poison.py)."""
    entry = entry_for("settlement", settlement(**{field: "X\x001"}))
    with pytest.raises(psycopg.DataError, match="NUL"):
        book_columns([(entry, None)])
    assert book_columns([(entry_for("settlement", settlement(**{field: "X1"})), None)])
