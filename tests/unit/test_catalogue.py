"""The centre's catalogue (就医地目录, issue 13): fee lines that leave the classification out are
classified by the treatment region's catalogue in force on the claim's date; lines that carry it are
checked against it; an item the catalogue lacks is refused UNKNOWN_ITEM only when the line is not
classified. Settled through the Settler on the in-memory store, as `gongji replay` settles."""

from __future__ import annotations

import asyncio
from datetime import date
from decimal import Decimal
from importlib.resources import files

import pytest

from gongji.local.catalogue import items
from gongji.local.synthetic import CATALOGUE, Traffic
from gongji.settlement.catalogue import CatalogueItem
from gongji.settlement.codec import from_output, to_event, to_wire
from gongji.settlement.domain import Rejection
from gongji.settlement.events import FeeLine
from gongji.settlement.memory_store import MemoryStore
from gongji.settlement.settler import Settler
from tests.unit.builders import BOOK, ERENHOT, PROVINCE, claim, institution, person

CLASSIFICATION = ("chrgitm_lv", "selfpay_prop", "pric_uplmt_amt")


def sample_catalogue() -> list[CatalogueItem]:
    """The shipped sample catalogues of both seed regions, read as `gongji catalogue load` reads them."""
    found = []
    for region in (ERENHOT, PROVINCE):
        text = files("gongji.settlement").joinpath("catalogues", f"{region}.csv").read_text(encoding="utf-8")
        rows = list(items(text))
        assert all(isinstance(item, CatalogueItem) for _, item in rows), rows
        found += [item for _, item in rows]
    return found


def entry(code: str = "XD04", lv: str = "02", selfpay: str | None = "0.10", limit: str | None = None,
          begndate: str = "2023-01-01", enddate: str | None = None, region: str = ERENHOT, **more) -> CatalogueItem:
    return CatalogueItem(admdvs=region, med_list_codg=code, begndate=begndate, enddate=enddate, chrgitm_lv=lv,
                         selfpay_prop=selfpay, pric_uplmt_amt=limit, **more)


def fee(code: str = "XD04", amount: str = "100.00", lv: str | None = None, selfpay: str | None = None,
        limit: str | None = None, pric: str | None = None, cnt: str = "1", sn: str = "1",
        non_med: str | None = None) -> FeeLine:
    return FeeLine(feedetl_sn=sn, med_list_codg=code, list_type="101", chrgitm_lv=lv, det_item_fee_sumamt=amount,
                   cnt=cnt, pric=pric or amount, pric_uplmt_amt=limit, selfpay_prop=selfpay, non_med_flag=non_med)


async def _settle(events: list, sizes: list[int]) -> list[tuple[str, dict]]:
    settler = Settler(MemoryStore(), BOOK)
    outputs, position, turn = [], 0, 0
    while position < len(events):
        size = sizes[turn % len(sizes)]
        outputs += [from_output(output) for output in await settler.handle(events[position:position + size])]
        position, turn = position + size, turn + 1
    return outputs


def settle(events: list, sizes: tuple[int, ...] = (1,)) -> list[tuple[str, dict]]:
    return asyncio.run(_settle(events, list(sizes)))


REGISTRY = [institution("H-E", admdvs=ERENHOT), institution("H-P", admdvs=PROVINCE),
            person("P-E", region=ERENHOT), person("P-P", region=PROVINCE)]


def one(*lines: FeeLine, catalogue=(), at: str = "2023-06-01T10:00:00+08:00", where: str = "H-E",
        psn_no: str = "P-E") -> tuple[str, dict]:
    """The result of one claim with `lines`, at `where`, after the registry and `catalogue`."""
    (result,) = settle([*REGISTRY, *catalogue, claim(*lines, claim_id="C-1", psn_no=psn_no, fixmedins_code=where,
                                                     setl_time=at)])
    return result


# ---------------------------------------------------------------- the "done when"


def stripped(data: dict) -> dict:
    return {**data, "fee_details": [{**line, **dict.fromkeys(CLASSIFICATION)} for line in data["fee_details"]]}


def test_synthetic_claims_without_classification_settle_as_those_with_it():
    """Done when (issue 13): 3,000 synthetic events (claims of every class, limit prices, 乙类
    shares, non-medical goods, cross-region care, reversals, resends), settled as sent and again with
    every line's classification stripped after the sample catalogue is loaded: the same results."""
    traffic = Traffic(persons=150, seed=13, family=0.3)
    sent = traffic.registry() + traffic.openings() + list(traffic.stream(3000, reversals=0.03, resends=0.03))
    classified = [to_event(kind, data) for kind, data in sent]
    unclassified = [to_event(kind, stripped(data) if kind == "claim" else data) for kind, data in sent]
    assert all(line.chrgitm_lv is None for event in unclassified[len(traffic.registry()):]
               if hasattr(event, "fee_details") for line in event.fee_details)
    expected = settle(classified)
    kinds = {kind for kind, _ in expected}
    assert {"settlement", "reversal", "rejection", "credit"} <= kinds
    settled = [wire for kind, wire in expected if kind == "settlement"]
    assert sum(wire["overlmt_selfpay"] > 0 for wire in settled) > 20  # limit prices in play
    assert sum(wire["preselfpay_amt"] > 0 for wire in settled) > 100  # 乙类 shares in play
    assert sum(wire["fulamt_ownpay_amt"] > 0 for wire in settled) > 100  # 丙类 and non-medical
    assert sum(wire["insu_admdvs"] != wire["mdtrtarea_admvs"] for wire in settled) > 20  # 异地就医
    assert settle([*sample_catalogue(), *unclassified]) == expected
    # In batches as the service polls them: the same again.
    assert settle([*sample_catalogue(), *unclassified], (500,)) == expected


def test_the_comparison_can_fail_a_catalogue_that_differs_changes_the_results():
    """The control: with one share changed in the catalogue (XD04's 0.10 → 0.20), the stripped claims
    settle otherwise, so the equality above is not true of any catalogue."""
    traffic = Traffic(persons=40, seed=14, family=0.0)
    sent = traffic.registry() + traffic.openings() + list(traffic.stream(400, reversals=0.0, resends=0.0))
    changed = [item.model_copy(update={"selfpay_prop": Decimal("0.20")})
               if item.med_list_codg == "XD04" else item for item in sample_catalogue()]
    expected = settle([to_event(kind, data) for kind, data in sent])
    other = settle([*changed, *(to_event(kind, stripped(data) if kind == "claim" else data) for kind, data in sent)])
    assert other != expected


def test_the_sample_catalogues_classify_every_synthetic_medical_item_as_the_traffic_does():
    shipped = {(item.admdvs, item.med_list_codg): item for item in sample_catalogue() if item.in_force(date(2023, 6, 1))}
    for code, _name, level, _price, limit, prop, non_med in CATALOGUE:
        for region in (ERENHOT, PROVINCE):
            if non_med:  # outside the catalogue
                assert (region, code) not in shipped
                continue
            item = shipped[(region, code)]
            assert (item.chrgitm_lv, item.pric_uplmt_amt, item.selfpay_prop) == (
                level, Decimal(limit) if limit else None, Decimal(prop) if prop else None), (region, code)


# ---------------------------------------------------------------- classifying and checking


def test_an_unclassified_line_takes_the_catalogues_class_share_and_limit():
    # 乙类 CT at 260.00 against a limit of 220.00: 40.00 over the limit, 5% of 220.00 = 11.00 first.
    kind, wire = one(fee("XH08", "260.00"), catalogue=[entry("XH08", "02", "0.05", "220.00")])
    assert kind == "settlement"
    assert (wire["overlmt_selfpay"], wire["preselfpay_amt"], wire["inscp_scp_amt"]) == (
        Decimal("40.00"), Decimal("11.00"), Decimal("209.00"))
    assert one(fee("XH08", "260.00", "02", "0.05", "220.00"), catalogue=[entry("XH08", "02", "0.05", "220.00")]) \
        == (kind, wire)


@pytest.mark.parametrize("carried, says", [
    (dict(lv="01"), "chrgitm_lv 01 (甲类), but the catalogue classifies it 02 (乙类)"),
    (dict(lv="03"), "chrgitm_lv 03 (丙类), but the catalogue classifies it 02 (乙类)"),
    (dict(lv="02"), "selfpay_prop none, but the catalogue's 乙类 self-pay share is 0.10"),
    (dict(lv="02", selfpay="0.15"), "selfpay_prop 0.15, but the catalogue's 乙类 self-pay share is 0.10"),
    (dict(lv="02", selfpay="0.10", limit="90.00"), "pric_uplmt_amt 90.00, but the catalogue's limit price is none"),
    (dict(selfpay="0.20"), "selfpay_prop 0.20, but the catalogue's 乙类 self-pay share is 0.10"),
    (dict(limit="50.00"), "pric_uplmt_amt 50.00, but the catalogue's limit price is none"),
])
def test_a_line_that_disagrees_with_the_catalogue_is_an_invalid_claim_naming_it(carried, says):
    good = fee("XA01", "10.00", sn="A-1")
    kind, wire = one(good, fee("XD04", "100.00", sn="B-2", **carried),
                     catalogue=[entry("XD04", "02", "0.10"), entry("XA01", "01", None)])
    assert (kind, wire["err_code"]) == ("rejection", "INVALID_CLAIM")
    assert wire["err_msg"].startswith("fee_details.1 (feedetl_sn B-2, item XD04): " + says), wire["err_msg"]
    assert "region 152501 on 2023-06-01 (version from 2023-01-01)" in wire["err_msg"]


def test_a_line_that_agrees_settles_and_equal_numbers_in_other_forms_agree():
    catalogue = [entry("XD04", "02", "0.1", "120")]
    for carried in (dict(lv="02", selfpay="0.10", limit="120.00"), dict(lv="02", selfpay="0.1000", limit="120"),
                    dict(selfpay="0.10"), dict(limit="120.000000")):
        assert one(fee("XD04", "100.00", **carried), catalogue=catalogue)[0] == "settlement", carried
    # A 甲类 item's line may carry any self-pay share (it settles without one); a 丙类 line any limit.
    assert one(fee("XA01", "10.00", "01", selfpay="0.30"), catalogue=[entry("XA01", "01", None)])[0] == "settlement"
    assert one(fee("XJ10", "68.00", "03", limit="1.00"), catalogue=[entry("XJ10", "03", None)])[0] == "settlement"


def test_an_item_not_in_the_catalogue_needs_its_classification():
    kind, wire = one(fee("XA01", "10.00", sn="A-1"), fee("ZZ99", "20.00", sn="Z-9"),
                     catalogue=[entry("XA01", "01", None)])
    assert (kind, wire["err_code"]) == ("rejection", "UNKNOWN_ITEM")
    assert wire["err_msg"].startswith("fee_details.1 (feedetl_sn Z-9, item ZZ99): not in region 152501's "
                                      "catalogue on 2023-06-01 (yet)"), wire["err_msg"]
    # Classified by the HIS, it settles as sent (a region without a catalogue works as before) ...
    assert one(fee("XA01", "10.00"), fee("ZZ99", "20.00", "03", sn="2"), catalogue=[entry("XA01", "01", None)]) \
        [1]["fulamt_ownpay_amt"] == Decimal("20.00")
    # ... and with no catalogue at all, a claim classified throughout settles as it always did.
    assert one(fee("ZZ99", "20.00", "01"))[0] == "settlement"
    # Non-medical goods are outside the catalogue: never refused for it, always paid by the person.
    kind, wire = one(fee("XK11", "150.00", non_med="1"), catalogue=[entry("XA01", "01", None)])
    assert (kind, wire["fulamt_ownpay_amt"], wire["fund_pay_sumamt"]) == ("settlement", Decimal("150.00"), 0)


def test_cross_region_care_is_classified_by_the_treatment_regions_catalogue():
    """异地就医: a 990100 insured treated in Erenhot by Erenhot's catalogue, and the other way round."""
    catalogue = [entry("XD04", "02", "0.10", region=ERENHOT), entry("XD04", "02", "0.30", region=PROVINCE),
                 entry("XM14", "02", "0.10", region=ERENHOT)]
    at_erenhot = one(fee("XD04", "100.00"), catalogue=catalogue, where="H-E", psn_no="P-P")[1]
    at_province = one(fee("XD04", "100.00"), catalogue=catalogue, where="H-P", psn_no="P-E")[1]
    assert (at_erenhot["insu_admdvs"], at_erenhot["mdtrtarea_admvs"], at_erenhot["preselfpay_amt"]) == (
        PROVINCE, ERENHOT, Decimal("10.00"))
    assert (at_province["insu_admdvs"], at_province["mdtrtarea_admvs"], at_province["preselfpay_amt"]) == (
        ERENHOT, PROVINCE, Decimal("30.00"))
    # A 蒙药 item of Erenhot's catalogue only: known in Erenhot, unknown where 990100 treats.
    assert one(fee("XM14", "10.00"), catalogue=catalogue, where="H-E", psn_no="P-P")[0] == "settlement"
    assert one(fee("XM14", "10.00"), catalogue=catalogue, where="H-P", psn_no="P-E")[1]["err_code"] == "UNKNOWN_ITEM"


# ---------------------------------------------------------------- effective dates


@pytest.mark.parametrize("at, known", [
    ("2023-02-28T23:59:59+08:00", False),  # the day before begndate
    ("2023-02-28T16:00:00+00:00", True),  # 1 March 00:00 in Asia/Shanghai
    ("2023-03-01T00:00:00+08:00", True),  # begndate
    ("2023-03-31T23:59:59+08:00", True),  # enddate, included
    ("2023-03-31T16:00:00+00:00", False),  # 1 April 00:00 in Asia/Shanghai
    ("2023-04-01T00:00:00+08:00", False),  # the day after enddate
])
def test_an_entry_is_in_force_from_begndate_to_enddate_in_shanghai(at, known):
    catalogue = [entry("XD04", "02", "0.10", begndate="2023-03-01", enddate="2023-03-31")]
    kind, wire = one(fee("XD04", "100.00"), catalogue=catalogue, at=at)
    assert (kind == "settlement") is known, wire
    if not known:
        assert wire["err_code"] == "UNKNOWN_ITEM"


def test_the_version_in_force_is_the_latest_begun_and_a_withdrawn_one_counts_for_nothing():
    versions = [entry("XD04", "02", "0.10", begndate="2023-01-01"),
                entry("XD04", "02", "0.20", begndate="2023-07-01", enddate="2023-09-30"),
                entry("XD04", "01", None, begndate="2023-09-01", vali_flag="0")]
    share = {at: one(fee("XD04", "100.00"), catalogue=versions, at=f"{at}T10:00:00+08:00")[1]["preselfpay_amt"]
             for at in ("2023-06-30", "2023-07-01", "2023-09-15", "2023-09-30", "2023-10-01")}
    assert share == {"2023-06-30": Decimal("10.00"), "2023-07-01": Decimal("20.00"), "2023-09-15": Decimal("20.00"),
                     "2023-09-30": Decimal("20.00"), "2023-10-01": Decimal("10.00")}
    # The same key loaded again replaces its version: withdrawing the 0.20 brings back 0.10.
    withdrawn = [*versions, entry("XD04", "02", "0.20", begndate="2023-07-01", enddate="2023-09-30", vali_flag="0")]
    assert one(fee("XD04", "100.00"), catalogue=withdrawn, at="2023-07-01T10:00:00+08:00")[1]["preselfpay_amt"] \
        == Decimal("10.00")


# ---------------------------------------------------------------- batches and the wire


def test_a_catalogue_entry_mid_stream_applies_between_the_events_before_and_after_it():
    """Batch invariance: the claim before the entry is refused UNKNOWN_ITEM, the one after settles by
    it, in every batching (a registry change applies between its neighbours, steps.steps)."""
    events = [*REGISTRY,
              claim(fee("XD04", "100.00"), claim_id="C-before", psn_no="P-E", fixmedins_code="H-E"),
              claim(fee("XD04", "100.00"), claim_id="C-classified", psn_no="P-P", fixmedins_code="H-E"),
              entry("XD04", "02", "0.10"),
              claim(fee("XD04", "100.00"), claim_id="C-after", psn_no="P-E", fixmedins_code="H-E"),
              entry("XD04", "02", "0.30"),  # the same key again: replaces the version
              claim(fee("XD04", "100.00"), claim_id="C-replaced", psn_no="P-P", fixmedins_code="H-E")]
    one_by_one = settle(events)
    assert [(wire["claim_id"], wire.get("err_code") or wire["preselfpay_amt"]) for _, wire in one_by_one] == [
        ("C-before", "UNKNOWN_ITEM"), ("C-classified", "UNKNOWN_ITEM"), ("C-after", Decimal("10.00")),
        ("C-replaced", Decimal("30.00"))]
    for sizes in ((2,), (3,), (5,), (len(events),), (4, 1, 3)):
        assert settle(events, sizes) == one_by_one, sizes


def test_a_catalogue_item_goes_through_the_one_mapper_both_ways():
    item = entry("XH08", "02", "0.05", "220.5", enddate="2023-12-31", hilist_name="CT 平扫")
    assert to_event("catalogue", to_wire(item)) == item
    assert to_wire(item)["begndate"] == "2023-01-01" and item.key == "152501:XH08:2023-01-01"
    bad = to_event("catalogue", {**to_wire(item), "enddate": "2022-12-31"})
    assert bad.err_code == "INVALID_CLAIM" and "enddate 2022-12-31 is before begndate 2023-01-01" in bad.err_msg
    assert "yyyy-MM-dd" in to_event("catalogue", {**to_wire(item), "begndate": "20230101"}).err_msg


def test_synthetic_traffic_leaves_a_share_of_lines_to_the_catalogue_and_settles_as_if_it_had_sent_them():
    """`gongji demo`'s traffic (unclassified=0.25): the registry carries the sample catalogues, a
    quarter of the medical lines come without their class, and the results are those of the same
    lines with the classes the traffic's own CATALOGUE gives them."""
    traffic = Traffic(persons=80, seed=21, family=0.2, unclassified=0.25)
    sent = traffic.registry() + traffic.openings() + list(traffic.stream(800, reversals=0.03, resends=0.03))
    assert sum(kind == "catalogue" for kind, _ in traffic.registry()) == len(sample_catalogue())
    lines = [line for kind, data in sent if kind == "claim" for line in data["fee_details"] if not line["non_med_flag"]]
    share = sum(line["chrgitm_lv"] is None for line in lines) / len(lines)
    assert 0.2 < share < 0.3, share
    known = {code: (level, Decimal(prop) if prop else None, Decimal(limit) if limit else None)  # CLASSIFICATION
             for code, _name, level, _price, limit, prop, _non_med in CATALOGUE}
    known["XT13"] = ("01", None, None)

    def restored(data: dict) -> dict:
        return {**data, "fee_details": [line if line["chrgitm_lv"] else {
            **line, **dict(zip(CLASSIFICATION, known[line["med_list_codg"]]))} for line in data["fee_details"]]}
    events = [to_event(kind, data) for kind, data in sent]
    assert not [event for event in events if isinstance(event, Rejection)]
    results = settle(events, (200,))
    assert not [wire for kind, wire in results if kind == "rejection" and wire["err_code"] == "UNKNOWN_ITEM"]
    assert results == settle([to_event(kind, restored(data) if kind == "claim" else data) for kind, data in sent
                              if kind != "catalogue"], (200,))


class Counting(MemoryStore):
    def __init__(self):
        super().__init__()
        self.asked: list[set] = []

    async def read_catalogue(self, wants):
        self.asked.append(set(wants))
        return await super().read_catalogue(wants)


def test_a_step_reads_each_catalogue_entry_once_whatever_its_passes():
    """The entries a step's claims need are read once, after its first snapshot, and kept for its
    later passes (a family claim waits for the second pass): one extra round trip a step."""
    store = Counting()
    holder, member = person("H-1"), person("M-1", mulaid_holder_psn_no="H-1", mulaid_relation="spouse")
    events = [*REGISTRY, holder, member, entry("XD04", "02", "0.10"), entry("XA01", "01", None),
              claim(fee("XD04", "100.00"), claim_id="C-family", psn_no="M-1", fixmedins_code="H-E", acct_used_flag="1"),
              claim(fee("XD04", "100.00"), fee("XA01", "10.00", sn="2"), claim_id="C-own", psn_no="P-E",
                    fixmedins_code="H-E")]
    outputs = asyncio.run(Settler(store, BOOK).handle(events))
    assert [output.value.claim_id for output in outputs] == ["C-family", "C-own"]
    assert store.asked == [{(ERENHOT, "XD04"), (ERENHOT, "XA01")}]


def test_a_batch_at_a_known_institution_reads_its_catalogue_entries_with_its_snapshot():
    """Once an institution's region has been read, the entries its claims want come with the pass's
    first read (no round trip of their own); an institution moved to another region is caught by
    what that read returns (one more read, of the new region's entries). Results as one at a time."""
    store = Counting()
    settler = Settler(store, BOOK)
    batches = [[*REGISTRY, entry("XD04", "02", "0.10"), entry("XD04", "01", None, region=PROVINCE),
                claim(fee("XD04", "100.00"), claim_id="C-1", psn_no="P-E", fixmedins_code="H-E")],
               [claim(fee("XD04", "100.00"), claim_id="C-2", psn_no="P-E", fixmedins_code="H-E")],
               [institution("H-E", admdvs=PROVINCE),
                claim(fee("XD04", "100.00"), claim_id="C-3", psn_no="P-E", fixmedins_code="H-E")]]
    asked, outputs = [], []
    for batch in batches:
        outputs += [from_output(output) for output in asyncio.run(settler.handle(batch))]
        asked.append(list(store.asked))
    assert asked == [[{(ERENHOT, "XD04")}], [{(ERENHOT, "XD04")}], [{(ERENHOT, "XD04")}, {(PROVINCE, "XD04")}]]
    assert outputs == settle([event for batch in batches for event in batch])
    assert [wire["claim_id"] for kind, wire in outputs] == ["C-1", "C-2", "C-3"]
