"""`gongji catalogue load`'s file (the operator's CSV): every bad row named by its line, the good rows
kept; a header it cannot use refuses the file. And the edges the catalogue crosses besides the
settler: the signing keys' regions, the gateway's 2207 lines, the 2206 pre-settlement."""

from __future__ import annotations

import io
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace

import pytest

from gongji.common.avro import SchemaCatalog
from gongji.gateway import national
from gongji.local.catalogue import CatalogueFileError, Tally, command, items, validated
from gongji.local.launch import encode
from gongji.settings import Settings
from gongji.settlement import regions
from gongji.settlement.catalogue import CatalogueItem
from gongji.settlement.codec import to_wire
from gongji.settlement.events import PreSettlement
from gongji.settlement.memory_store import MemoryStore
from gongji.settlement.settler import Settler
from tests.unit.builders import BOOK, institution, person

pytestmark = pytest.mark.unit

HEADER = "admdvs,med_list_codg,begndate,enddate,chrgitm_lv,selfpay_prop,pric_uplmt_amt,vali_flag,hilist_name\n"


def rows(text: str) -> list[tuple[int, CatalogueItem | str]]:
    return list(items(text))


def test_a_good_file_gives_its_items_in_any_column_order_with_class_names():
    found = rows("hilist_name,chrgitm_lv,med_list_codg,admdvs,begndate,selfpay_prop\n"
                 "阿托伐他汀,乙,XD04,152501,2023-01-01,0.10\n"
                 "\n"
                 "门诊诊查费,甲类,XF06,152501,2023-01-01,\n"
                 "进口人工泪液,03,XJ10,990100,2023-01-01,\n")
    assert [(number, item.med_list_codg, item.chrgitm_lv, item.selfpay_prop) for number, item in found] == [
        (2, "XD04", "02", Decimal("0.10")), (4, "XF06", "01", None), (5, "XJ10", "03", None)]
    assert found[0][1].hilist_name == "阿托伐他汀" and found[0][1].vali_flag == "1" and found[0][1].enddate is None


@pytest.mark.parametrize("row, says", [
    ("152501,XA01,2023-01-01,,1,,,,", "chrgitm_lv: must be 01, 02 or 03 (or 甲, 乙, 丙), not '1': did a spreadsheet"),
    ("152501,XA01,2023-01-01,,04,,,,", "chrgitm_lv: Input should be '01', '02' or '03'"),
    ("15250,XA01,2023-01-01,,01,,,,", "admdvs: String should match pattern"),
    ("152501,,2023-01-01,,01,,,,", "med_list_codg: Field required"),
    ("152501, XA01,2023-01-01,,01,,,,", "med_list_codg: has surrounding spaces"),
    ("152501,XA01,2023/01/01,,01,,,,", "begndate: must be a date as yyyy-MM-dd, not '2023/01/01'"),
    ("152501,XA01,2023-02-30,,01,,,,", "begndate: '2023-02-30' is no date"),
    ("152501,XA01,2023-03-01,2023-02-28,01,,,,", "enddate 2023-02-28 is before begndate 2023-03-01"),
    ("152501,XA01,2023-01-01,,01,0.10,,,", "selfpay_prop is the 乙类 (02) self-pay share; a 甲类 (01) item has none"),
    ("152501,XA01,2023-01-01,,02,1.5,,,", "selfpay_prop: ratio outside 0–1"),
    ("152501,XA01,2023-01-01,,02,0.12345,,,", "selfpay_prop: at most 4 decimals"),
    ("152501,XA01,2023-01-01,,03,,9.00,,", "a 丙类 (03) item is paid by the person in full: it has no limit price"),
    ("152501,XA01,2023-01-01,,01,,-1,,", "pric_uplmt_amt: Input should be greater than or equal to 0"),
    ("152501,XA01,2023-01-01,,01,,1.0000001,,", "pric_uplmt_amt"),
    ("152501,XA01,2023-01-01,,01,,,2,", "vali_flag: Input should be '0' or '1'"),
    ("152501,XA01,2023-01-01,,01,,", "7 cells, the header has 9"),
])
def test_a_bad_row_is_named_by_its_line_and_the_good_ones_stay(row, says):
    found = rows(HEADER + "152501,XF06,2023-01-01,,01,,,1,诊查费\n" + row + "\n152501,XG07,2023-01-01,,01,,,,\n")
    assert [number for number, item in found if isinstance(item, CatalogueItem)] == [2, 4]
    ((number, problem),) = [(number, item) for number, item in found if isinstance(item, str)]
    assert number == 3 and problem.startswith(says), problem


def test_a_row_repeating_a_region_item_and_first_day_is_refused_across_files_too(tmp_path):
    one, two = tmp_path / "a.csv", tmp_path / "b.csv"
    one.write_text(HEADER + "152501,XA01,2023-01-01,,01,,,,\n152501,XA01,2023-01-01,,02,0.1,,,\n"
                   "152501,XA01,2023-07-01,,02,0.1,,,\n", encoding="utf-8")
    two.write_bytes(("\ufeff" + HEADER + "990100,XA01,2023-01-01,,01,,,,\n152501,XA01,2023-07-01,,01,,,,\n")
                    .encode("utf-8"))  # a spreadsheet's byte-order mark
    errors, tally = io.StringIO(), Tally()
    good = validated([one, two], errors, tally)
    assert [(item.admdvs, str(item.begndate)) for item in good] == [
        ("152501", "2023-01-01"), ("152501", "2023-07-01"), ("990100", "2023-01-01")]
    assert errors.getvalue().splitlines() == [
        f"{one}: line 3: repeats line 2: region 152501, item XA01, begndate 2023-01-01; not sent",
        f"{two}: line 3: repeats {one}: line 4; not sent"]
    assert tally.line(sent=True) == "gongji catalogue load: 3 sent (152501 2, 990100 1), 2 refused"


@pytest.mark.parametrize("text, says", [
    ("", "no header row"),
    ("admdvs,code,begndate,chrgitm_lv\n", "line 1: unknown column(s) 'code'; missing column(s) med_list_codg"),
    ("admdvs,med_list_codg,begndate\n", "line 1: missing column(s) chrgitm_lv"),
    ("admdvs,med_list_codg,begndate,chrgitm_lv,admdvs\n", "line 1: repeated column(s) admdvs"),
])
def test_a_header_it_cannot_use_refuses_the_file(text, says):
    with pytest.raises(CatalogueFileError, match=says.replace("(", r"\(").replace(")", r"\)")):
        rows(text)


def test_check_sends_nothing_and_exits_1_when_a_row_is_refused(tmp_path, capsys):
    path = tmp_path / "c.csv"
    path.write_text(HEADER + "152501,XA01,2023-01-01,,01,,,,\n152501,XB02,2023-01-01,,1,,,,\n", encoding="utf-8")
    args = SimpleNamespace(files=[str(path)], check=True, no_wait=False)
    status = command(args, resolve=lambda: pytest.fail("--check must reach no server"))
    err = capsys.readouterr().err.splitlines()
    assert status == 1
    assert err[0].startswith("line 3: chrgitm_lv: must be 01, 02 or 03") and err[0].endswith("; not sent")
    assert err[-1] == "gongji catalogue load: 1 good (152501 1), 1 refused; --check: nothing sent"
    undecodable = tmp_path / "latin1.csv"
    undecodable.write_bytes(HEADER.encode() + "152501,XA01,2023-01-01,,01,,,,\xe9\n".encode("latin-1"))
    assert command(SimpleNamespace(files=[str(undecodable)], check=True, no_wait=False), resolve=None) == 1
    assert "not UTF-8" in capsys.readouterr().err


def test_a_row_goes_to_registry_catalogue_keyed_by_region_item_and_first_day():
    item = CatalogueItem(admdvs="152501", med_list_codg="XH08", begndate="2023-07-01", chrgitm_lv="02",
                         selfpay_prop="0.05", pric_uplmt_amt="220")
    settings = Settings(topic_prefix="t.")
    ((topic, key, value, _ident, headers),) = encode(SchemaCatalog(), settings, [("catalogue", to_wire(item))])
    assert (topic, key, headers) == ("t.registry.catalogue", b"152501:XH08:2023-07-01", [("gongji-type", b"catalogue")])
    assert SchemaCatalog().decode(value) == ("CatalogueItem", {
        "admdvs": "152501", "med_list_codg": "XH08", "begndate": "2023-07-01", "enddate": None, "chrgitm_lv": "02",
        "selfpay_prop": Decimal("0.0500"), "pric_uplmt_amt": Decimal("220.000000"), "vali_flag": "1",
        "hilist_name": None})


def test_a_key_limited_to_a_region_may_load_only_that_regions_catalogue():
    item = CatalogueItem(admdvs="990100", med_list_codg="XA01", begndate="2023-01-01", chrgitm_lv="01")
    assert regions.check([(item, "erenhot", frozenset({"152501"}))], {}, {}) == [
        "key 'erenhot' may speak only for 152501, not 990100 (the catalogue's region)"]
    assert regions.check([(item, "hub", None), (item, "province", frozenset({"990100"}))], {}, {}) == [None, None]
    assert regions.needed([item]) == (set(), set())


def test_the_gateway_passes_a_2207_line_without_its_class_on_to_the_catalogue():
    line = {"feedetl_sn": "1", "med_list_codg": "XD04", "list_type": "101", "det_item_fee_sumamt": "7.00",
            "cnt": 20, "pric": 0.35}
    data = {"psn_no": "P1", "mdtrt_id": "M1", "med_type": "11", "setl_time": "2026-03-01 10:15:00", "feedetail": [line]}
    claim = national.claim_2207("MSG1", "H1", data)
    assert claim["fee_details"][0]["chrgitm_lv"] is None
    assert SchemaCatalog().decode(SchemaCatalog().encode("Claim", claim))[1]["fee_details"][0]["chrgitm_lv"] is None


async def test_a_pre_settlement_is_classified_by_the_catalogue_as_a_claim_is():
    """2206: priced as the 2207 would be, by the same catalogue; unknown items named the same way."""
    settler = Settler(MemoryStore(), BOOK)
    await settler.handle([institution("H3"), person("P1"),
                          CatalogueItem(admdvs="152501", med_list_codg="XD04", begndate="2023-01-01",
                                        chrgitm_lv="02", selfpay_prop="0.10")])
    asked = {"claim_id": "Q-1", "mdtrt_id": "M", "psn_no": "P1", "fixmedins_code": "H3", "med_type": "11",
             "insutype": "310", "setl_time": "2023-06-01T10:00:00+08:00", "acct_used_flag": "0",
             "fee_details": [{"feedetl_sn": "1", "med_list_codg": "XD04", "list_type": "101",
                              "det_item_fee_sumamt": "100.00", "cnt": "1", "pric": "100.00"}]}
    (answer,) = await settler.handle([PreSettlement.model_validate(asked)])
    assert answer.value.preselfpay_amt == 1000
    unknown = {**asked, "fee_details": [{**asked["fee_details"][0], "med_list_codg": "ZZ01"}]}
    (answer,) = await settler.handle([PreSettlement.model_validate(unknown)])
    assert answer.value.err_code == "UNKNOWN_ITEM" and "item ZZ01" in answer.value.err_msg


def test_the_shipped_samples_are_good_files():
    folder = Path(__file__).parents[2] / "services" / "gongji" / "settlement" / "catalogues"
    errors, tally = io.StringIO(), Tally()
    good = validated(sorted(folder.glob("*.csv")), errors, tally)
    assert errors.getvalue() == "" and tally.by_region == {"152501": 14, "990100": 13} and len(good) == 27
