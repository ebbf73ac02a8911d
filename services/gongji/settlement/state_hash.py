"""A person's state hash in Redis (`<prefix>:{psn}:state`, gongji.settlement.redis_store) to and from
the domain's PersonState, pure: the fields an event changed, written absolute, and a hash read back."""

from __future__ import annotations

from gongji.settlement.domain import ACCUMULATES, CHRONIC_ACCUMULATORS, ClaimRecord, PersonState, YearTotals
from gongji.settlement.store import Record

_FIELDS: dict[bytes, tuple[int, str, str | None] | None] = {}  # a state field → (year, accumulator, group)


def _state_field(field: bytes) -> tuple[int, str, str | None] | None:
    """"<year>:<accumulator>" or "<year>:chronic_paid:<group>" as its parts; None: another field. Kept
    by name (every person has the same few), but "pending:<claim id>" (parse_state reads it first)."""
    parts = _FIELDS.get(field, _FIELDS)
    if parts is _FIELDS:
        name = field.decode()
        parts = None
        if ":" in name and name[0].isdigit():
            year, accumulator, *group = name.split(":", 2)
            parts = (int(year), accumulator, group[0] if group else None)
        if len(_FIELDS) >= 65_536:
            _FIELDS.clear()
        _FIELDS[field] = parts
    return parts


def parse_state(raw: dict[bytes, bytes]) -> PersonState:
    if not raw:
        return PersonState()
    years: dict[int, dict] = {}
    pending: dict[str, str] = {}
    for field, value in raw.items():
        if field.startswith(b"pending:"):
            pending[field[8:].decode()] = value.decode()
            continue
        parts = _state_field(field)
        if parts is not None:
            year, accumulator, group = parts
            values = years.get(year)
            if values is None:
                values = years[year] = {}
            if group is not None:  # "<year>:chronic_paid:<group>"
                values.setdefault(accumulator, {})[group] = int(value)
            else:
                values[accumulator] = int(value)
    return PersonState(
        token=raw.get(b"ver", b"").decode(),
        kept_from=int(raw.get(b"from", b"0")),
        first_year=int(raw.get(b"first", b"0")),
        balance=int(raw.get(b"balc", b"0")),
        years={year: YearTotals(**values) for year, values in years.items()},
        pending=pending,
    )


def state_fields(state: PersonState, record: Record) -> list[str]:
    """The fields an event changed: the balance, and the accumulators its record's effects moved in
    the one year they touched (a claim's, or for a reversal the original's); a credit moves none;
    and the first year a record is kept of (settlement/window.py)."""
    fields = ["balc", str(state.balance)]
    if state.first_year:
        fields += ["first", str(state.first_year)]
    if isinstance(record, ClaimRecord):
        effects = record.effects
        year = effects.year
        totals = state.year(year)
        for name, source in ACCUMULATES.items():
            if getattr(effects, source):
                fields += [f"{year}:{name}", str(getattr(totals, name))]
        if effects.chronic_group is not None:
            for name in CHRONIC_ACCUMULATORS:
                fields += [f"{year}:{name}:{effects.chronic_group}", str(getattr(totals, name)[effects.chronic_group])]
    return fields
