"""POLICY §1 money: exact yuan with two decimals, integer fen inside, ROUND_HALF_UP per multiplication."""

from __future__ import annotations

from decimal import Decimal

import pytest

from gongji.common.money import (
    MoneyError,
    div_round,
    mul_round,
    shown,
    to_fen,
    to_price,
    to_ratio,
    to_yuan,
    yuan_text,
    yuan_to_fen,
)

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("value", "expected_fen"),
    [
        pytest.param("12.34", 1234, id="string two decimals"),
        pytest.param("12.3", 1230, id="string one decimal"),
        pytest.param("12.340", 1234, id="trailing zero beyond two places is still exact"),
        pytest.param(" 7.05 ", 705, id="surrounding spaces"),
        pytest.param(Decimal("0.01"), 1, id="Decimal one fen"),
        pytest.param(12, 1200, id="int is whole yuan"),
        pytest.param("0", 0, id="zero"),
        pytest.param("1000.00", 100000, id="Erenhot deductible"),
    ],
)
def test_to_fen_exact_amounts(value, expected_fen):
    """POLICY §1: yuan with 2 decimals → integer fen."""
    assert to_fen(value) == expected_fen


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(12.34, id="float"),
        pytest.param(0.1, id="float 0.1 (binary)"),
        pytest.param(1.0, id="float that looks whole"),
        pytest.param(True, id="bool"),
        pytest.param("12.345", id="three decimals string"),
        pytest.param(Decimal("0.001"), id="three decimals Decimal"),
        pytest.param("12.3451", id="four decimals"),
        pytest.param("abc", id="not a number"),
        pytest.param("", id="empty"),
        pytest.param("NaN", id="NaN"),
        pytest.param("Infinity", id="infinity"),
    ],
)
def test_to_fen_refuses_floats_and_sub_fen(value):
    """POLICY §1: never binary floats; no precision below 0.01 yuan."""
    with pytest.raises(MoneyError):
        to_fen(value)


def test_money_error_is_a_value_error():
    """So pydantic turns it into a ValidationError at model construction."""
    assert issubclass(MoneyError, ValueError)


@pytest.mark.parametrize(
    ("fen", "expected"),
    [(0, "0.00"), (1, "0.01"), (1235, "12.35"), (100000, "1000.00"), (-250, "-2.50")],
)
def test_to_yuan_two_places(fen, expected):
    """POLICY §1: yuan at the edges always carry exactly 2 decimals."""
    assert str(to_yuan(fen)) == expected


@pytest.mark.parametrize(
    ("fen", "factor", "expected"),
    [
        # 0.01 × 0.5 = 0.005 yuan = 0.5 fen → half up → 0.01
        pytest.param(1, "0.5", 1, id="0.5 fen rounds up"),
        # 0.01 × 0.4 = 0.4 fen → 0.00
        pytest.param(1, "0.4", 0, id="0.4 fen rounds down"),
        # 24.69 × 0.5 = 12.345 → 12.35 (banker's rounding would give 12.34)
        pytest.param(2469, "0.5", 1235, id="12.345 -> 12.35"),
        # 12.35 × 0.10 = 1.235 → 1.24 (乙类 pre-self-pay)
        pytest.param(1235, "0.10", 124, id="1.235 -> 1.24"),
        # 12.25 × 0.10 = 1.225 → 1.23 (HALF_EVEN would give 1.22)
        pytest.param(1225, "0.10", 123, id="1.225 -> 1.23 not half-even"),
        # 12.34 × 0.10 = 1.234 → 1.23
        pytest.param(1234, "0.10", 123, id="1.234 -> 1.23"),
        # 4321.25 × 0.02 = 86.425 → 86.43 (account credit)
        pytest.param(432125, "0.02", 8643, id="86.425 -> 86.43"),
        # 833.33 × 0.60 = 499.998 → 500.00 (fund payment)
        pytest.param(83333, "0.60", 50000, id="499.998 -> 500.00"),
        # 10.01 × 0.5 (count) = 5.005 → 5.01
        pytest.param(1001, "0.5", 501, id="5.005 -> 5.01"),
        pytest.param(0, "0.65", 0, id="zero"),
        pytest.param(12345, "1", 12345, id="factor one"),
        pytest.param(12345, "0", 0, id="factor zero"),
        # 3 × 0.3333 = 0.9999 fen → 1 fen
        pytest.param(3, "0.3333", 1, id="four-decimal ratio"),
    ],
)
def test_mul_round_half_up(fen, factor, expected):
    """POLICY §1: ROUND_HALF_UP to 0.01 yuan on the result of each multiplication."""
    assert mul_round(fen, Decimal(factor)) == expected


@pytest.mark.parametrize(("value", "expected"), [("0.60", Decimal("0.60")), ("0", Decimal(0)), ("1", Decimal(1)),
                                                   (Decimal("0.05"), Decimal("0.05"))])
def test_to_ratio_accepts_zero_to_one(value, expected):
    """Ratios (selfpay_prop, policy ratios) are exact Decimals in [0, 1]."""
    assert to_ratio(value) == expected


@pytest.mark.parametrize("value", [0.6, "1.5", "-0.01", "x", "NaN", True])
def test_to_ratio_refuses(value):
    """CONTRACT INVALID_CLAIM: a ratio outside 0–1; floats refused as for money."""
    with pytest.raises(MoneyError):
        to_ratio(value)


@pytest.mark.parametrize(
    ("yuan", "expected_fen"),
    [
        # 0.0125 × 100 tablets = 1.25 yuan exactly
        pytest.param("1.2500", 125, id="exact product"),
        # 0.0125 × 3 = 0.0375 yuan = 3.75 fen → 4 fen
        pytest.param("0.0375", 4, id="3.75 fen rounds up"),
        # 0.005 yuan = 0.5 fen → 1 fen (half up)
        pytest.param("0.005", 1, id="half a fen rounds up"),
        pytest.param("0.004999", 0, id="just under half a fen rounds down"),
        pytest.param("12.345", 1235, id="12.345 -> 12.35"),
    ],
)
def test_yuan_to_fen_rounds_half_up(yuan, expected_fen):
    """POLICY §1: a price × count product in yuan is rounded ROUND_HALF_UP to the fen."""
    assert yuan_to_fen(Decimal(yuan)) == expected_fen


@pytest.mark.parametrize(("value", "expected"), [("0.0125", Decimal("0.0125")), ("12.345678", Decimal("12.345678")),
                                                   ("10", Decimal(10)), (Decimal("0.000001"), Decimal("0.000001"))])
def test_to_price_keeps_six_places(value, expected):
    """2204 unit prices carry up to 6 decimals (a tablet can cost 0.0125 yuan)."""
    assert to_price(value) == expected


@pytest.mark.parametrize("value", [0.0125, "0.0000001", "1.2345678", "NaN", "x", True])
def test_to_price_refuses_floats_and_seven_places(value):
    """POLICY §1: never binary floats; prices at most 6 decimals."""
    with pytest.raises(MoneyError):
        to_price(value)


@pytest.mark.parametrize("function", [to_fen, to_price, to_ratio])
@pytest.mark.parametrize("value", [
    pytest.param("1" * 40, id="40 digits (InvalidOperation in to_price before)"),
    pytest.param("1" + "0" * 18, id="10^18: 19 digits"),
    pytest.param(10**18, id="int 10^18"),
    pytest.param(Decimal("1E+999999999"), id="Decimal 1E+999999999"),
    pytest.param("1e3", id="exponent in text"),
    pytest.param("1_000", id="underscores"),
    pytest.param("١٢", id="Arabic-Indic digits"),
    pytest.param("12" + "0" * 100, id="101 characters"),
    pytest.param([1], id="a list"),
    pytest.param(None, id="None"),
])
def test_out_of_range_or_odd_text_raises_only_money_error(function, value):
    """Never InvalidOperation, Overflow or TypeError: pydantic names the field only for ValueErrors."""
    with pytest.raises(MoneyError):
        function(value)


def test_eighteen_digits_before_the_point_are_exact():
    assert to_fen("999999999999999999.99") == 99_999_999_999_999_999_999
    assert to_price("999999999999999999.999999") == Decimal("999999999999999999.999999")


def test_sub_fen_far_below_the_precision_is_still_refused():
    """1.000…0001 with 40 places: a 28-digit context would round it to 100 fen."""
    with pytest.raises(MoneyError):
        to_fen("1." + "0" * 40 + "1")
    with pytest.raises(MoneyError):
        to_fen(Decimal("1E-999999999"))


def test_messages_quote_a_short_piece_of_the_input():
    assert shown("x" * 1000).startswith("'xxx") and len(shown("x" * 1000)) < 70
    with pytest.raises(MoneyError) as error:
        to_fen("9" * 50)
    assert len(str(error.value)) < 120


@pytest.mark.parametrize(
    ("fen", "divisor", "expected"),
    [
        # 0.10 ÷ 0.8 = 0.125 yuan = 12.5 fen → 13 (half-even would give 12)
        pytest.param(10, "0.8", 13, id="12.5 -> 13 not half-even"),
        # 0.09 ÷ 0.8 = 11.25 fen → 11 (rounding up would give 12)
        pytest.param(9, "0.8", 11, id="11.25 -> 11 not up"),
        # 0.07 ÷ 0.8 = 8.75 fen → 9 (rounding down would give 8)
        pytest.param(7, "0.8", 9, id="8.75 -> 9 not down"),
        # 11000.11 ÷ 0.88 = 12500.125 → 12500.13: an Erenhot level-2 inpatient base at the fund cap
        pytest.param(1100011, "0.88", 1250013, id="12500.125 -> 12500.13"),
        pytest.param(12345, "1", 12345, id="divisor one"),
    ],
)
def test_div_round_half_up(fen, divisor, expected):
    """POLICY §1: the base a capped payment covered (payment ÷ ratio) is rounded half up as well."""
    assert div_round(fen, Decimal(divisor)) == expected


@pytest.mark.parametrize(
    ("fen", "expected"),
    [(0, "0.00"), (1, "0.01"), (5, "0.05"), (-1, "-0.01"), (-100, "-1.00"), (123456, "1234.56"), (-250, "-2.50")],
)
def test_yuan_text_for_messages(fen, expected):
    """The notes and messages show fen as yuan with two places; zero has no sign."""
    assert yuan_text(fen) == expected
