"""Exact money: integer fen (分) inside, yuan Decimals with two places at the edges.

POLICY.md §1: never binary floats; ROUND_HALF_UP to 0.01 yuan on the result of each
multiplication, everything else is sums, differences and minimums of rounded amounts.
"""

from __future__ import annotations

import re
from decimal import ROUND_HALF_UP, Decimal

CENT = Decimal("0.01")
_ONE = Decimal(1)
_MICRO = Decimal("0.000001")
_ZERO_YUAN = Decimal("0.00")


class MoneyError(ValueError):
    """A value that is not an exact amount of yuan with at most two decimals."""


# Plain decimal text only: ASCII digits, an optional sign and point; no exponent, no "_", no
# other scripts' digits (Decimal() itself would take "1_000", "١٢" and "1E+999999999").
_DECIMAL_TEXT = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)", re.ASCII)
# No amount, price or ratio of this system has 18 digits before the point; refusing them before
# any arithmetic keeps every later step exact (and int(Decimal("1E+999999999")) from running forever).
_LIMIT = Decimal(10) ** 18
_SHOWN = 40


def shown(value: object) -> str:
    """`repr(value)`, cut short: what an error message may quote of an input."""
    text = repr(value)
    return text if len(text) <= _SHOWN else text[:_SHOWN] + f"… ({len(text)} characters)"


def to_decimal(value: object, what: str = "amount") -> Decimal:
    """`value` as an exact, finite Decimal below 10^18 in size; binary floats are refused, never
    converted. Raises only MoneyError."""
    if type(value) is Decimal:  # the common case first: Avro decimals, replay's JSON numbers
        number = value
    elif isinstance(value, (bool, float)):
        raise MoneyError(f"{what} must be a decimal string or Decimal, not {type(value).__name__} {shown(value)}")
    elif isinstance(value, Decimal):
        number = value
    elif isinstance(value, int):
        if abs(value) >= _LIMIT:
            raise MoneyError(f"{what} {shown(value)} is out of range (18 digits or more before the point)")
        return Decimal(value)
    elif isinstance(value, str):
        text = value.strip()
        if len(text) > 60 or not _DECIMAL_TEXT.fullmatch(text):
            raise MoneyError(f"not a decimal {what}: {shown(value)}")
        number = Decimal(text)
    else:
        raise MoneyError(f"{what} must be a decimal string or Decimal, not {type(value).__name__}")
    if not number.is_finite():
        raise MoneyError(f"not a finite {what}: {shown(value)}")
    if number and number.adjusted() >= 18:
        raise MoneyError(f"{what} {shown(value)} is out of range (18 digits or more before the point)")
    return number


def _places(number: Decimal, places: Decimal, what: str, value: object) -> Decimal:
    """`number` if it has no more decimals than `places` (exact: it is below 10^18)."""
    if number != number.quantize(places):
        raise MoneyError(f"{what} must have at most {-places.as_tuple().exponent} decimals: {shown(value)}")
    return number


def to_fen(value: object) -> int:
    """Yuan (Decimal, str, int) → integer fen. Rejects floats, sub-fen precision and amounts of 10^18
    yuan or more; raises only MoneyError."""
    if isinstance(value, int) and not isinstance(value, bool):
        return int(to_decimal(value)) * 100
    number = to_decimal(value, "amount")
    if number != number.quantize(CENT):
        raise MoneyError(f"more than two decimals: {shown(value)}")
    return int(number.scaleb(2))


def to_yuan(fen: int) -> Decimal:
    """Integer fen → yuan Decimal with exactly two places: the digits of `fen` with the exponent -2
    (exact below 10^28 fen, and amounts stop at 10^18 yuan)."""
    return Decimal(fen).scaleb(-2) if fen else _ZERO_YUAN


def yuan_text(fen: int) -> str:
    """Fen as yuan text with two places ("-12.05"), for messages; integer arithmetic, no Decimal."""
    if fen < 0:
        return "-" + yuan_text(-fen)
    return "%d.%02d" % divmod(fen, 100)


def mul_round(fen: int, factor: Decimal) -> int:
    """round_half_up(fen × factor) in whole fen: the one rounding rule of POLICY.md §1."""
    return int((Decimal(fen) * factor).quantize(_ONE, rounding=ROUND_HALF_UP))


def yuan_to_fen(yuan: Decimal) -> int:
    """A yuan product (price × count) rounded half-up to whole fen."""
    return mul_round(100, yuan)


def div_round(fen: int, divisor: Decimal) -> int:
    """round_half_up(fen ÷ divisor) in whole fen: the base a capped payment covered at a ratio."""
    return int((Decimal(fen) / divisor).quantize(_ONE, rounding=ROUND_HALF_UP))


def to_price(value: object) -> Decimal:
    """A unit price in yuan with at most 6 places (the national 2204 interface's precision)."""
    return _places(to_decimal(value, "price"), _MICRO, "price", value)


def to_ratio(value: object) -> Decimal:
    """A ratio in [0, 1] as an exact Decimal (strings or Decimals; floats are refused)."""
    ratio = to_decimal(value, "ratio")
    if ratio < 0 or ratio > 1:
        raise MoneyError(f"ratio outside 0–1: {shown(value)}")
    return ratio

