"""Keys and fields built from ids are unambiguous: no two different (person, claim) pairs meet,
whatever separators the ids hold, and every key of one person keeps one Redis Cluster hash tag."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from gongji.settlement.redis_store import RedisStore
from gongji.settlement.store import claim_key, escape, hold_field

IDS = st.text(alphabet=":{}\\xc1", min_size=1, max_size=8)
SETTINGS = settings(max_examples=2000, derandomize=True, deadline=None)
STORE = RedisStore(client=None, prefix="gj")


def hash_tag(key: str) -> str:
    """Redis Cluster's rule: between the first "{" and the first "}" after it, if not empty."""
    start = key.find("{")
    end = key.find("}", start + 1)
    return key[start + 1:end] if start >= 0 and end > start + 1 else key


@SETTINGS
@given(IDS, IDS, IDS, IDS)
def test_hold_fields_and_record_keys_are_injective(p1, c1, p2, c2):
    same = (p1, c1) == (p2, c2)
    assert (hold_field(p1, c1) == hold_field(p2, c2)) == same
    assert (STORE._key(p1, "rec:" + claim_key(c1)) == STORE._key(p2, "rec:" + claim_key(c2))) == same


@SETTINGS
@given(IDS, IDS)
def test_one_persons_keys_share_one_hash_tag(psn, claim):
    tags = {hash_tag(STORE._key(psn, suffix)) for suffix in ("state", "holds", "rec:" + claim_key(claim))}
    assert len(tags) == 1


def test_ordinary_ids_are_written_as_they_are():
    assert escape("152501000123") == "152501000123"
    assert hold_field("P1", "C:1") == "P1:C:1"
    assert STORE._key("P1", "state") == "gj:{P1}:state"
    assert hold_field("X:c", "1") == "X\\:c:1" != hold_field("X", "c:1")
