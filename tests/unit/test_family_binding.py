"""Family mutual aid (家庭共济) bindings are checked when the money moves: the holder is known,
insured, in the person's own insured region, and no one's dependant (one level: no chains, no
cycles). A claim relying on a binding that breaks a rule is refused MULAID_NOT_ALLOWED, and the
holder's account does not move."""

from __future__ import annotations

import asyncio

import pytest

from gongji.settlement.settler import Settler
from gongji.settlement.memory_store import MemoryStore
from tests.unit.builders import BOOK, PROVINCE, claim, credit, institution, line, person, reversal


def run(events):
    store = MemoryStore()
    outputs = asyncio.run(Settler(store, BOOK).handle(events))
    return [output.value for output in outputs if getattr(output.value, "claim_id", None)], store


def family(holder_overrides=None, patient_overrides=None, holder_id="B"):
    holder = person("B", **(holder_overrides or {}))
    patient = person("A", mulaid_holder_psn_no=holder_id, mulaid_relation="spouse", **(patient_overrides or {}))
    return [institution(), holder, patient, credit("2023-01", amount="50.00", psn_no="B")]


def visit(psn_no="A", flag="1", claim_id=None):
    return claim(line("50.00", lv="03"), psn_no=psn_no, acct_used_flag=flag, claim_id=claim_id)


def test_a_valid_binding_draws_on_the_holder():
    (paid, *_), store = run(family() + [visit()])
    assert paid.acct_mulaid_pay == 5000 and store.states["B"].balance == 0


@pytest.mark.parametrize(("events", "why"), [
    (family(holder_id="Z"), "not in the registry"),
    (family({"psn_insu_stas": "2"}), "not active"),
    # Reported: A (152501) drew 50.00 from B's account (990100).
    (family({"insu_admdvs": PROVINCE}), "insured in region 990100"),
    (family({"mulaid_holder_psn_no": "C", "mulaid_relation": "parent"}), "one level only"),
    # A cycle, A→B→A: each is the other's dependant.
    (family({"mulaid_holder_psn_no": "A", "mulaid_relation": "spouse"}), "one level only"),
], ids=["unknown holder", "inactive holder", "holder in another region", "chain", "cycle"])
def test_a_broken_binding_is_refused_and_moves_nothing(events, why):
    (refused, *_), store = run(events + [visit()])
    assert refused.err_code == "MULAID_NOT_ALLOWED" and why in refused.err_msg
    assert store.states.get("B") is None or store.states["B"].balance == 5000
    assert not any(key[1] == "c:" + refused.claim_id for key in store.records)  # the claim may come again


def test_a_broken_binding_does_not_matter_when_the_account_is_not_used():
    (settled, *_), _ = run(family({"insu_admdvs": PROVINCE}) + [visit(flag="0")])
    assert settled.psn_cash_pay == 5000 and settled.acct_mulaid_pay == 0


def test_the_holder_of_a_chain_still_draws_on_their_own_holder():
    events = [*family({"mulaid_holder_psn_no": "C", "mulaid_relation": "parent"}), person("C"),
              credit("2023-01", amount="80.00", psn_no="C")]
    (refused, paid), store = run(events + [visit("A"), visit("B")])
    assert refused.err_code == "MULAID_NOT_ALLOWED"
    assert paid.acct_pay == 5000 and paid.acct_mulaid_pay == 0  # B's own account covers it first
    assert store.states["C"].balance == 8000


def test_a_change_of_binding_applies_to_later_claims_only():
    """The reversal of a claim paid from B's account refunds B, though A is now bound to C."""
    events = family() + [person("C"), credit("2023-01", amount="80.00", psn_no="C"), visit(claim_id="V1"),
                         person("A", mulaid_holder_psn_no="C", mulaid_relation="spouse"),
                         visit(claim_id="V2"), reversal("V1", psn_no="A")]
    (first, second, undone), store = run(events)
    assert (first.acct_mulaid_pay, second.acct_mulaid_pay, undone.acct_mulaid_pay) == (5000, 5000, -5000)
    assert (store.states["B"].balance, store.states["C"].balance) == (5000, 3000)
