"""Exact money: integer fen (分) inside, yuan Decimals with two places at the edges.

POLICY.md §1: never binary floats; ROUND_HALF_UP to 0.01 yuan on the result of each
multiplication, everything else is sums, differences and minimums of rounded amounts.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

CENT = Decimal("0.01")
_FEN_PER_YUAN = Decimal(100)
_ONE = Decimal(1)


class MoneyError(ValueError):
    """A value that is not an exact amount of yuan with at most two decimals."""


def _decimal(value: object, what: str) -> Decimal:
    """`value` as an exact, finite Decimal; binary floats are refused, never converted."""
    if isinstance(value, bool) or isinstance(value, float):
        raise MoneyError(f"{what} must be a decimal string or Decimal, not {type(value).__name__} {value!r}")
    try:
        number = value if isinstance(value, Decimal) else Decimal(str(value).strip())
    except InvalidOperation:
        raise MoneyError(f"not a decimal {what}: {value!r}") from None
    if not number.is_finite():
        raise MoneyError(f"not a finite {what}: {value!r}")
    return number


def to_fen(value: object) -> int:
    """Yuan (Decimal, str, int) → integer fen. Rejects floats and sub-fen precision."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value * 100
    fen = _decimal(value, "amount") * _FEN_PER_YUAN
    if fen != fen.to_integral_value():
        raise MoneyError(f"more than two decimals: {value!r}")
    return int(fen)


def to_yuan(fen: int) -> Decimal:
    """Integer fen → yuan Decimal with exactly two places."""
    return (Decimal(fen) / _FEN_PER_YUAN).quantize(CENT)


def yuan_text(fen: int) -> str:
    """Fen as yuan text with two places ("-12.05"), for messages; integer arithmetic, no Decimal."""
    sign, fen = ("-", -fen) if fen < 0 else ("", fen)
    return f"{sign}{fen // 100}.{fen % 100:02d}"


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
    price = _decimal(value, "price")
    if price != price.quantize(Decimal("0.000001")):
        raise MoneyError(f"price must have at most 6 decimals: {value!r}")
    return price


def to_ratio(value: object) -> Decimal:
    """A ratio in [0, 1] as an exact Decimal (strings or Decimals; floats are refused)."""
    ratio = _decimal(value, "ratio")
    if ratio < 0 or ratio > 1:
        raise MoneyError(f"ratio outside 0–1: {value!r}")
    return ratio
