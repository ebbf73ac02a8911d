"""`gongji catalogue load` as the operator runs it (issue 13): `--check` on the shipped samples and
on a file with bad rows; then on `gongji stack up` (signed input required there), the load with a
bad row refused and named, and claims published without their classification settling as replay
settles them after the same catalogue."""

from __future__ import annotations

import json

from gongji.local.catalogue import items
from gongji.settlement.codec import json_ready, to_wire
from tests.e2e.test_commands import ROOT, run

SAMPLES = ROOT / "services" / "gongji" / "settlement" / "catalogues"
BAD_ROW = "152501,XZ99,2023-01-01,,01,0.10,,1,a 甲类 item with a self-pay share\n"


def test_check_reads_the_samples_and_names_every_bad_row(tmp_path):
    checked = run("catalogue", "load", "--check", str(SAMPLES / "152501.csv"), str(SAMPLES / "990100.csv"))
    assert checked.returncode == 0, checked.stderr
    assert checked.stderr.splitlines() == [
        "gongji catalogue load: 27 good (152501 14, 990100 13), 0 refused; --check: nothing sent"]
    bad = tmp_path / "bad.csv"
    bad.write_text((SAMPLES / "152501.csv").read_text(encoding="utf-8") + BAD_ROW + "152501,XA01,2023-01-01,,01\n",
                   encoding="utf-8")
    refused = run("catalogue", "load", "--check", str(bad))
    assert refused.returncode == 1
    assert refused.stderr.splitlines() == [
        "line 16: selfpay_prop is the 乙类 (02) self-pay share; a 甲类 (01) item has none; not sent",
        "line 17: 5 cells, the header has 9; not sent",
        "gongji catalogue load: 14 good (152501 14), 2 refused; --check: nothing sent"]
    unknown = tmp_path / "unknown.csv"
    unknown.write_text("admdvs,med_list_codg,begndate,class\n", encoding="utf-8")
    stopped = run("catalogue", "load", "--check", str(unknown))
    assert stopped.returncode == 1 and "line 1: unknown column(s) 'class'; missing column(s) chrgitm_lv" in stopped.stderr
    assert "Traceback" not in refused.stderr + stopped.stderr


def lines_of(*events: dict) -> str:
    return "".join(json.dumps(json_ready(event), ensure_ascii=False) + "\n" for event in events)


def claim(claim_id: str, psn_no: str, *lines: dict) -> dict:
    return {"event_type": "claim", "claim_id": claim_id, "mdtrt_id": "M-" + claim_id, "psn_no": psn_no,
            "fixmedins_code": "H15250100301", "med_type": "11", "insutype": "310",
            "setl_time": "2023-06-01 10:00:00", "acct_used_flag": "0", "fee_details": list(lines)}


def line(sn: str, code: str, amount: str, **classification) -> dict:
    return {"feedetl_sn": sn, "med_list_codg": code, "list_type": "101", "det_item_fee_sumamt": amount,
            "cnt": "1", "pric": amount, **classification}


def test_loaded_on_the_stack_the_catalogue_classifies_published_claims_as_replay_does(tmp_path):
    env = {"GONGJI_STATE_DIR": str(tmp_path / "state")}
    catalogue = tmp_path / "erenhot.csv"
    catalogue.write_text((SAMPLES / "152501.csv").read_text(encoding="utf-8") + BAD_ROW, encoding="utf-8")
    registry = [{"event_type": "institution", "fixmedins_code": "H15250100301", "fixmedins_name": "二连浩特市医院",
                 "fixmedins_type": "1", "medins_lv": "3", "grassroots": False, "admdvs": "152501"}] + [
        {"event_type": "person", "psn_no": psn_no, "insutype": "310", "psn_type": "1101", "insu_admdvs": "152501",
         "psn_insu_stas": "1"} for psn_no in ("P-1", "P-2", "P-3")]
    claims = [claim("C-1", "P-1", line("1", "XH08", "260.00"), line("2", "XD04", "26.00"), line("3", "XJ10", "68.00")),
              claim("C-2", "P-2", line("1", "XH08", "260.00", chrgitm_lv="02", selfpay_prop="0.05",
                                       pric_uplmt_amt="220.00")),
              claim("C-3", "P-3", line("1", "XD04", "26.00", chrgitm_lv="01")),  # 乙类 in the catalogue
              claim("C-4", "P-1", line("1", "XZ99", "10.00"))]  # refused from the catalogue: unknown
    published = tmp_path / "claims.jsonl"
    published.write_text(lines_of(*registry, *claims), encoding="utf-8")
    up = run("stack", "up", env=env)
    try:
        assert up.returncode == 0, up.stderr
        loaded = run("catalogue", "load", str(catalogue), env=env, timeout=300)
        assert loaded.returncode == 1, loaded.stderr[-3000:]  # the bad row refused: the rest went
        assert loaded.stderr.splitlines()[0] == (
            "line 16: selfpay_prop is the 乙类 (02) self-pay share; a 甲类 (01) item has none; not sent")
        assert loaded.stderr.splitlines()[-1] == "gongji catalogue load: 14 sent (152501 14), 1 refused"
        sent = run("publish", str(published), env=env, timeout=300)
        assert sent.returncode == 0, sent.stderr[-3000:]
        tailed = run("tail", "settlements", "--from-beginning", "--until-idle", "5", env=env)
        assert tailed.returncode == 0, tailed.stderr
        tail_registry = run("tail", "registry.catalogue", "--from-beginning", "--until-idle", "3", env=env)
    finally:
        run("stack", "down", env=env)
    good = [to_wire(item) for _, item in items((SAMPLES / "152501.csv").read_text(encoding="utf-8"))]
    offline = tmp_path / "offline.jsonl"
    offline.write_text(lines_of(*({"event_type": "catalogue", **row} for row in good), *registry, *claims),
                       encoding="utf-8")
    replayed = run("replay", str(offline))
    assert replayed.returncode == 0, replayed.stderr

    def same(text: str) -> list[str]:  # the fields in any order (tail lists them in the schema's)
        return sorted(json.dumps(json.loads(each), sort_keys=True, ensure_ascii=False) for each in text.splitlines())

    assert same(tailed.stdout) == same(replayed.stdout)
    results = {json.loads(each)["claim_id"]: json.loads(each) for each in replayed.stdout.splitlines()}
    assert (results["C-1"]["overlmt_selfpay"], results["C-1"]["preselfpay_amt"], results["C-1"]["fulamt_ownpay_amt"]) \
        == ("40.00", "13.60", "68.00")  # 5% of 220.00 and 10% of 26.00 first; the 丙类 drops in full
    assert results["C-2"]["preselfpay_amt"] == "11.00"
    assert results["C-3"]["err_code"] == "INVALID_CLAIM" and "chrgitm_lv 01 (甲类)" in results["C-3"]["err_msg"]
    assert results["C-4"]["err_code"] == "UNKNOWN_ITEM"
    assert len(tail_registry.stdout.splitlines()) == 14
    assert {json.loads(each)["event_type"] for each in tail_registry.stdout.splitlines()} == {"catalogue"}
