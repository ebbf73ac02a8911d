"""`gongji publish`'s order (issue 11): the subjects each line's result depends on, so that a line
waits for an earlier one exactly when replay's result could differ without it (a family member's
claim and the holder's credit; a registry entry and the claims that need it) and never for an
unrelated person's line."""

from __future__ import annotations

import io
import json
from datetime import datetime

import pytest

from gongji.common.avro import SchemaCatalog
from gongji.local.publish import Dependencies, Line, Tally, rows_for
from gongji.settings import Settings

pytestmark = pytest.mark.unit

NOW = datetime.fromisoformat("2024-12-31T12:00:00+08:00")
LINE = {"feedetl_sn": "1", "med_list_codg": "XF06", "list_type": "201", "chrgitm_lv": "01",
        "det_item_fee_sumamt": "30.00", "cnt": "3", "pric": "10.00"}


def person(psn_no: str, **fields) -> dict:
    return {"event_type": "person", "psn_no": psn_no, "insutype": "310", "psn_type": "1101",
            "insu_admdvs": "152501", "psn_insu_stas": "1", **fields}


def claim(claim_id: str, psn_no: str, acct_used_flag: str = "1", fixmedins_code: str = "H1") -> dict:
    return {"event_type": "claim", "claim_id": claim_id, "mdtrt_id": "M-" + claim_id, "psn_no": psn_no,
            "fixmedins_code": fixmedins_code, "med_type": "11", "insutype": "310",
            "setl_time": "2023-06-01 10:00:00", "acct_used_flag": acct_used_flag, "fee_details": [LINE]}


def subjects(*lines: dict) -> list[set[str]]:
    encoded = [json.dumps(line).encode() for line in lines]
    errors = io.StringIO()
    found = [subjects for _, _, subjects in rows_for(encoded, Settings(), SchemaCatalog(), errors, Tally(), NOW)]
    assert errors.getvalue() == ""
    return found


def test_a_family_members_claim_on_the_holders_account_writes_the_holders_state():
    holder, member, other = "H0001", "M0001", "X0001"
    found = subjects(
        person(holder), person(member, mulaid_holder_psn_no=holder, mulaid_relation="parent"), person(other),
        {"event_type": "credit", "credit_id": "K-1", "psn_no": holder, "ym": "2023-01", "crdt_type": "monthly",
         "crdt_base": "8000.00"},
        claim("C-1", member), claim("C-2", member, acct_used_flag="0"), claim("C-3", other),
        {"event_type": "reversal", "claim_id": "R-1", "orig_claim_id": "C-1", "psn_no": member,
         "setl_time": "2023-06-02 10:00:00"},
        {"event_type": "reversal", "claim_id": "R-2", "orig_claim_id": "C-2", "psn_no": member,
         "setl_time": "2023-06-02 10:00:00"},
        {"event_type": "institution", "fixmedins_code": "H1", "fixmedins_name": "H", "fixmedins_type": "1",
         "medins_lv": "3", "grassroots": False, "admdvs": "152501"})
    assert found == [
        (set(), {"registry:H0001"}), (set(), {"registry:M0001"}), (set(), {"registry:X0001"}),
        ({"registry:H0001"}, {"person:H0001"}),
        # draws on the holder's account
        ({"registry:M0001", "registry:H0001", "institution:H1"}, {"person:M0001", "person:H0001"}),
        ({"registry:M0001", "institution:H1"}, {"person:M0001"}),  # acct_used_flag 0: not the holder's
        ({"registry:X0001", "institution:H1"}, {"person:X0001"}),
        ({"registry:M0001", "registry:H0001"}, {"person:M0001", "person:H0001"}),  # gives back to that account
        ({"registry:M0001"}, {"person:M0001"}),
        (set(), {"institution:H1"})]


def test_a_binding_counts_from_its_person_line_on_and_ends_with_a_person_line_without_it():
    found = subjects(claim("C-1", "M1"), person("M1", mulaid_holder_psn_no="H1", mulaid_relation="child"),
                     claim("C-2", "M1"), person("M1"), claim("C-3", "M1"))
    assert [sorted(writes) for _, writes in found] == [
        ["person:M1"], ["registry:M1"], ["person:H1", "person:M1"], ["registry:M1"], ["person:M1"]]


def test_a_dual_channel_claim_reads_its_prescribers_registry_entry():
    """双通道: a claim naming the prescribing institution waits for that institution's line too."""
    dual = {**claim("C-1", "P1", acct_used_flag="0", fixmedins_code="RX1"), "med_type": "14",
            "dise_codg": "N18.5", "rx_fixmedins_code": "H1"}
    assert subjects(dual) == [({"registry:P1", "institution:RX1", "institution:H1"}, {"person:P1"})]


def line(topic: str, key: str) -> Line:
    return Line((topic, key.encode()), None)


def test_a_line_follows_the_last_writer_of_what_it_touches_the_readers_of_what_it_writes_and_its_key():
    graph = Dependencies()
    institution, holder, member = line("inst", "H1"), line("persons", "H"), line("persons", "M")
    assert graph.of(institution, set(), {"institution:H1"}) == []
    assert graph.of(holder, set(), {"registry:H"}) == []
    assert graph.of(member, set(), {"registry:M"}) == []
    credit = line("credits", "H")
    assert graph.of(credit, {"registry:H"}, {"person:H"}) == [holder]
    family_claim = line("claims", "M")  # the member's claim on the holder's account
    assert set(graph.of(family_claim, {"registry:M", "registry:H", "institution:H1"}, {"person:M", "person:H"})) == {
        member, holder, institution, credit}
    lone = line("claims", "X")  # another person's claim at the same institution: reads it, waits on no one else
    assert graph.of(lone, {"registry:X", "institution:H1"}, {"person:X"}) == [institution]
    holder_claim = line("claims", "H")
    assert set(graph.of(holder_claim, {"registry:H", "institution:H1"}, {"person:H"})) == {
        holder, institution, family_claim}
    again = line("claims", "M")  # the same topic and key: after the one before it there
    assert set(graph.of(again, {"registry:M", "institution:H1"}, {"person:M"})) == {member, institution, family_claim}
    # a new entry for the institution follows every claim that read the old one, the last per key
    renamed = line("inst", "H1")
    assert set(graph.of(renamed, set(), {"institution:H1"})) == {institution, lone, holder_claim, again}
