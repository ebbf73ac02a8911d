"""Reports as files a centre's tools open: CSV (UTF-8, a header row, RFC 4180 quoting, lines ending
in LF) and JSON lines, money as yuan with exactly two decimals, never through a float.

`money_text` takes what the parts hold: fen (int) or yuan (Decimal, as PostgreSQL's numeric and the
clearing statements give them); anything else, or a yuan amount with more than two places, is a
bug upstream and raises rather than rounding in a report.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any, TextIO

from gongji.common.money import CENT, to_yuan


def money_text(value: int | Decimal) -> str:
    """'1234.50' from 123450 fen or Decimal('1234.5'): two places, no separators."""
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise TypeError(f"money must be fen (int) or yuan (Decimal), not {type(value).__name__}")
    yuan = to_yuan(value) if isinstance(value, int) else value
    if yuan != yuan.quantize(CENT):
        raise ValueError(f"{value} yuan has more than two decimal places")
    return f"{yuan.quantize(CENT):f}"


def _cell(value: Any, money: bool) -> str:
    if value is None:
        return ""
    if money:
        return money_text(value)
    if isinstance(value, float):
        raise TypeError("a float in a report: money and counts are exact")
    return str(value)


def write_csv(out: TextIO, columns: Sequence[str], rows: Iterable[Mapping[str, Any]],
              money: Iterable[str] = ()) -> None:
    """One row per mapping, in `columns`' order (a mapping's other keys are left out); the columns in
    `money` as yuan with two places."""
    money = frozenset(money)
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell(row.get(name), name in money) for name in columns])


def csv_text(columns: Sequence[str], rows: Iterable[Mapping[str, Any]], money: Iterable[str] = ()) -> str:
    out = io.StringIO()
    write_csv(out, columns, rows, money)
    return out.getvalue()


def json_line(row: Mapping[str, Any], money: Iterable[str] = ()) -> str:
    """One JSON object; money as strings with two places (JSON numbers are floats to most readers)."""
    money = frozenset(money)
    return json.dumps({name: (money_text(value) if name in money and value is not None else value)
                       for name, value in row.items()}, ensure_ascii=False, default=str)
