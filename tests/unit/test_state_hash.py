"""A person's state hash read back (gongji.settlement.state_hash.parse_state) as the reading that
decoded and split every field name each time did, the names it keeps included (hypothesis,
derandomized)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from gongji.settlement import state_hash
from gongji.settlement.domain import PersonState, YearTotals
from gongji.settlement.state_hash import parse_state

pytestmark = pytest.mark.unit

SCALARS = ["deductible_used", "outpatient_pool_paid", "fund_cap_used", "visits", "medfee", "hifob_paid", "maf_paid"]


def reference(raw: dict[bytes, bytes]) -> PersonState:
    """parse_state as it was: each field name decoded and split."""
    if not raw:
        return PersonState()
    years: dict[int, dict] = {}
    pending: dict[str, str] = {}
    for field, value in raw.items():
        name = field.decode()
        if name.startswith("pending:"):
            pending[name[8:]] = value.decode()
        elif ":" in name and name[0].isdigit():
            year, accumulator, *group = name.split(":", 2)
            values = years.setdefault(int(year), {})
            if group:
                values.setdefault(accumulator, {})[group[0]] = int(value)
            else:
                values[accumulator] = int(value)
    return PersonState(token=raw.get(b"ver", b"").decode(), kept_from=int(raw.get(b"from", b"0")),
                       first_year=int(raw.get(b"first", b"0")), balance=int(raw.get(b"balc", b"0")),
                       years={year: YearTotals(**values) for year, values in years.items()}, pending=pending)


years = st.sampled_from([2022, 2023, 2024])
fields = st.one_of(
    st.tuples(years, st.sampled_from(SCALARS)).map(lambda t: f"{t[0]}:{t[1]}".encode()),
    st.tuples(years, st.sampled_from(["chronic_paid", "chronic_deductible_used"]),
              st.sampled_from(["M01", "M02:x", "慢1"])).map(lambda t: f"{t[0]}:{t[1]}:{t[2]}".encode()),
    st.text(min_size=1, max_size=6).map(lambda claim: f"pending:{claim}".encode()),
    st.sampled_from([b"person", b"1x", b"9"]),
)
numbers = st.integers(min_value=0, max_value=10**12).map(lambda n: str(n).encode())


@settings(max_examples=400, derandomize=True)
@given(st.dictionaries(fields, numbers, max_size=12), numbers, st.booleans())
def test_a_state_hash_reads_back_as_each_field_decoded_and_split(raw, balance, first):
    raw = {b"ver": b"c:C-1@0a1b2c3d4e5f", b"balc": balance, **({b"first": b"2023"} if first else {}), **raw}
    assert parse_state(raw) == reference(raw)
    assert parse_state(raw) == reference(raw)  # again, with every name now kept


def test_the_names_kept_are_bounded_and_pending_claims_never_kept(monkeypatch):
    monkeypatch.setattr(state_hash, "_FIELDS", {})
    for claim in range(100):
        parse_state({b"ver": b"t", f"pending:C-{claim}".encode(): b"H", b"2023:visits": b"1"})
    assert state_hash._FIELDS == {b"ver": None, b"2023:visits": (2023, "visits", None)}
    for index in range(70_000):
        state_hash._state_field(f"2023:x{index}".encode())
    assert len(state_hash._FIELDS) <= 65_536
