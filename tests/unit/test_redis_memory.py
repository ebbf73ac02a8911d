"""The bench's Redis footprint: which key is what, and the figures per claim and per person."""

from gongji.local.redis_memory import Footprint, kind_of


def test_keys_are_sorted_by_what_they_hold():
    cases = {
        b"b1:{P1}:rec:c:C1": "claim record",
        b"b1:{P\\}:x}:rec:c:C:1": "claim record",  # an escaped brace in the person's id
        b"b1:{P1}:rec:k:K1": "credit record",
        b"b1:id:c:C1": "claim id",
        b"b1:id:k:K1": "credit id",
        b"b1:{P1}:state": "state",
        b"b1:{P1}:holds": "holds",
        b"b1:{P1}:recs": "records",
        b"b1:ids:4095": "id bucket",
        b"b1:inst:H1": "other",
        b"b1:seen:{0}:g": "other",
    }
    assert {key: kind_of(key, "b1") for key in cases} == cases
    assert kind_of(b"b1:{clr:2026-01}:flow", "b1") is None  # clearing's, not settlement's
    assert kind_of(b"b10:{P1}:state", "b1") is None  # another run's prefix


def test_per_claim_counts_the_record_and_its_id_key_per_person_the_state_and_holds():
    footprint = Footprint(used_before=1_000, used_after=5_000)
    for kind, size in [("claim record", 300), ("claim record", 100), ("claim id", 50), ("claim id", 50),
                       ("credit record", 999), ("state", 600), ("holds", 200), ("state", 400)]:
        footprint.add(kind, size)
    assert footprint.per_claim() == 250
    assert footprint.per_person() == 600
    assert "250 bytes per settled claim" in footprint.summary()
    assert "used_memory grew 2,000 bytes a claim" in footprint.summary()
    assert Footprint().per_claim() is None and "no claims" in Footprint().summary()


def test_a_hash_of_claims_and_credits_is_shared_by_its_number_of_fields():
    footprint = Footprint()
    footprint.share("records", 900, [b"c:C1", b"k:K1", b"c:C2"])
    footprint.share("id bucket", 120, [b"c:C1", b"c:C2", b"k:K1", b"k:K2"])
    assert footprint.keys["claim record"] == 2 and footprint.keys["credit record"] == 1
    assert footprint.bytes["claim record"] == 600 and footprint.bytes["claim id"] == 60
    assert footprint.per_claim() == 330
