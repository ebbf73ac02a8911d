"""Which regions an input speaks for, and a key limited to regions (gongji.settlement.regions)."""

from __future__ import annotations

import pytest

from gongji.settlement.regions import check, needed, refusal, spoken_for
from tests.unit.builders import ERENHOT, PROVINCE, claim, credit, institution, person, reversal

pytestmark = pytest.mark.unit

ONLY_ERENHOT = frozenset({ERENHOT})
REGISTRY = {"P1": person("P1", ERENHOT), "P9": person("P9", PROVINCE)}
INSTITUTIONS = {"H3": institution("H3", admdvs=ERENHOT), "H9": institution("H9", admdvs=PROVINCE)}


def verdict(event, persons=REGISTRY, institutions=INSTITUTIONS, regions=ONLY_ERENHOT):
    return check([(event, "erenhot", regions)], persons, institutions)[0]


@pytest.mark.parametrize("event, allowed", [
    # person: its own insu_admdvs, and where it is registered now
    (person("P1", ERENHOT), True),
    (person("P9", PROVINCE), False),
    (person("P9", ERENHOT), False),  # moving a 990100 person into 152501: the old region must be covered
    (person("P1", PROVINCE), False),  # moving a 152501 person out to 990100
    (person("NEW", ERENHOT), True),
    (person("NEW", PROVINCE), False),
    # institution: its admdvs, and where it is registered now
    (institution("H3", admdvs=ERENHOT), True),
    (institution("H9", admdvs=PROVINCE), False),
    (institution("H9", admdvs=ERENHOT), False),
    (institution("HNEW", admdvs=PROVINCE), False),
    # claim: the person's insured region and the institution's region
    (claim(psn_no="P1", fixmedins_code="H3"), True),
    (claim(psn_no="P9", fixmedins_code="H9"), False),
    (claim(psn_no="P9", fixmedins_code="H3"), False),  # a 990100 person treated in 152501
    (claim(psn_no="P1", fixmedins_code="H9"), False),  # a 152501 person treated in 990100
    (claim(psn_no="NOBODY", fixmedins_code="H3"), False),  # region unknown: refused to a limited key
    (claim(psn_no="P1", fixmedins_code="NOWHERE"), False),
    # reversal and credit: the person's insured region
    (reversal("C1", psn_no="P1"), True),
    (reversal("C1", psn_no="P9"), False),
    (reversal("C1", psn_no="NOBODY"), False),
    (credit("2023-05", base="5000.00", psn_no="P1"), True),
    (credit("2023-05", base="5000.00", psn_no="P9"), False),
], ids=lambda value: type(value).__name__ if not isinstance(value, bool) else str(value))
def test_a_152501_key_speaks_only_for_152501(event, allowed):
    assert (verdict(event) is None) is allowed


def test_an_unlimited_key_or_an_unsigned_event_is_never_refused():
    events = [(claim(psn_no="P9", fixmedins_code="H9"), None, None), (person("NEW", PROVINCE), "hub", None)]
    assert check(events, REGISTRY, INSTITUTIONS) == [None, None]


def test_a_key_for_both_regions_may_send_a_cross_region_claim():
    both = frozenset({ERENHOT, PROVINCE})
    assert verdict(claim(psn_no="P9", fixmedins_code="H3"), regions=both) is None


def test_the_reason_names_the_key_its_regions_and_the_region_refused():
    assert verdict(claim(psn_no="P9", fixmedins_code="H3")) == (
        "key 'erenhot' may speak only for 152501, not 990100 (the person's insured region)")
    assert "the institution's region is unknown" in verdict(claim(psn_no="P1", fixmedins_code="NOWHERE"))


def test_registry_events_taken_earlier_in_a_batch_count_for_the_events_after_them():
    new_person, new_institution = person("NEW", ERENHOT), institution("HNEW", admdvs=ERENHOT)
    later = claim(psn_no="NEW", fixmedins_code="HNEW")
    assert check([(new_person, "e", ONLY_ERENHOT), (new_institution, "e", ONLY_ERENHOT), (later, "e", ONLY_ERENHOT)],
                 {}, {}) == [None, None, None]


def test_a_refused_registry_event_does_not_change_the_registry_for_later_events():
    # A forged move of P9 into 152501 is refused, so the claim after it still speaks for 990100.
    verdicts = check([(person("P9", ERENHOT), "e", ONLY_ERENHOT),
                      (claim(psn_no="P9", fixmedins_code="H3"), "e", ONLY_ERENHOT)], REGISTRY, INSTITUTIONS)
    assert verdicts[0] is not None and verdicts[1] is not None


def test_an_unlimited_keys_move_counts_for_a_limited_keys_claim_after_it():
    # The hub moves P9 to 152501 in the same batch; the 152501 key's claim after it is then its own.
    verdicts = check([(person("P9", ERENHOT), "hub", None),
                      (claim(psn_no="P9", fixmedins_code="H3"), "e", ONLY_ERENHOT)], REGISTRY, INSTITUTIONS)
    assert verdicts == [None, None]


def test_spoken_for_lists_each_region_and_what_it_is():
    assert spoken_for(person("P9", ERENHOT), REGISTRY, INSTITUTIONS) == [
        (ERENHOT, "the person's insured region"), (PROVINCE, "the person's insured region before this change")]
    assert spoken_for(claim(psn_no="P1", fixmedins_code="H9"), REGISTRY, INSTITUTIONS) == [
        (ERENHOT, "the person's insured region"), (PROVINCE, "the institution's region")]


def test_refusal_with_every_region_covered_is_none():
    assert refusal("k", ONLY_ERENHOT, [(ERENHOT, "x")]) is None


def test_needed_names_the_entries_spoken_for_reads():
    events = [claim(psn_no="P1", fixmedins_code="H3"), institution("H9"), person("P7"), credit("2023-05", base="1.00",
                                                                                                psn_no="P8")]
    assert needed(events) == ({"P1", "P7", "P8"}, {"H3", "H9"})
