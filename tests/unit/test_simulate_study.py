"""`gongji simulate`'s aggregation (gongji.settlement.study_tally, study_report) with numbers worked by hand,
the study's policies laid over the baseline's, and its totals against replay's own results."""

from __future__ import annotations

import asyncio
import io
import json
from datetime import datetime
from pathlib import Path

import pytest

from gongji.local.synthetic import Traffic, json_line
from gongji.settlement.policy import PolicyError, load_policy_book
from gongji.settlement.replay import replay_lines
from gongji.settlement.simulate import load_books, simulate
from gongji.settlement.study_tally import FUNDS, Tally, fen, mean, percentile
from gongji.settlement.study_report import build, csv_report, tables

pytestmark = pytest.mark.unit

NOW = datetime.fromisoformat("2024-12-31T12:00:00+08:00")
STUDY = Path(__file__).parents[2] / "docs" / "studies" / "erenhot-outpatient-cap"


def test_fen_reads_two_places_exactly():
    assert (fen("305.50"), fen("-100.00"), fen("0.07"), fen("-0.07")) == (30550, -10000, 7, -7)
    with pytest.raises(ValueError):
        fen("305.5")


def test_percentiles_are_nearest_rank_and_the_mean_rounds_half_up():
    tenths = [100 * n for n in range(10, 0, -1)]  # 1000 … 100, unsorted on purpose
    # n = 10: median rank ⌈5⌉ = 5 → 500; p90 rank ⌈9⌉ = 9 → 900; p99 rank ⌈9.9⌉ = 10 → 1000.
    assert [percentile(tenths, p) for p in (50, 90, 99)] == [500, 900, 1000]
    assert percentile([1, 2, 3, 4], 50) == 2  # an even count: the lower middle value
    assert percentile([7], 99) == 7 and percentile([], 50) == 0
    assert mean([2, 3]) == 3 and mean([1, 1, 2]) == 1 and mean([]) == 0  # 2.5 → 3 (half up); 1.33 → 1


def _result(kind: str, setl_id: str, psn_no: str, region: str = "152501", med_type: str = "11",
            day: str = "2023-03-01", **money: str) -> dict:
    amounts = {name: "0.00" for name in FUNDS} | money
    return {"event_type": kind, "setl_id": setl_id, "psn_no": psn_no, "insu_admdvs": region, "med_type": med_type,
            "fixmedins_code": "H1", "setl_time": f"{day}T10:00:00+08:00", **amounts}


def test_a_resent_answer_counts_once_and_a_reversal_subtracts():
    tally = Tally()
    first = _result("settlement", "S1", "A", hifp_pay="305.50", fund_pay_sumamt="305.50", psn_part_amt="94.50")
    tally.add(first)
    tally.add(dict(first))  # the resend's identical answer
    tally.add(_result("settlement", "S2", "B", region="990100", med_type="14", hifp_pay="10.01",
                      maf_pay="2.00", fund_pay_sumamt="12.01"))
    tally.add(_result("reversal", "R1", "A", day="2024-01-05", hifp_pay="-305.50", fund_pay_sumamt="-305.50",
                      psn_part_amt="-94.50"))
    tally.add({"event_type": "rejection", "psn_no": "C"})
    paid = FUNDS.index("fund_pay_sumamt")
    # 305.50 + 12.01 − 305.50 = 12.01; the resend is not a second 305.50.
    assert tally.totals[paid] == 1201 and tally.totals[FUNDS.index("maf_pay")] == 200
    assert tally.groups[("region", "152501")][paid] == 0 and tally.groups[("region", "990100")][paid] == 1201
    assert sum(tally.groups[("med_type", key)][paid] for key in ("11", "14")) == tally.totals[paid]
    assert tally.resent == 1 and tally.counts == {"settlement": 2, "reversal": 1, "rejection": 1}
    assert tally.months == {"2023-03"}  # the reversal's January is no month of care
    assert tally.institutions == {"H1": 1201}


def _lines(*events: dict) -> list[bytes]:
    return [json.dumps(event).encode() for event in events]


def _claim(claim_id: str, psn_no: str, amount: str) -> dict:
    return {"event_type": "claim", "claim_id": claim_id, "mdtrt_id": f"M{claim_id}", "psn_no": psn_no,
            "fixmedins_code": "H1", "med_type": "11", "insutype": "310", "setl_time": "2023-03-01T10:00:00+08:00",
            "acct_used_flag": "0",
            "fee_details": [{"feedetl_sn": "1", "med_list_codg": "XF06", "list_type": "201", "chrgitm_lv": "01",
                             "det_item_fee_sumamt": amount, "cnt": "1", "pric": amount}]}


HAND = _lines(
    {"event_type": "institution", "fixmedins_code": "H1", "fixmedins_name": "h", "fixmedins_type": "1",
     "medins_lv": "1", "grassroots": False, "admdvs": "152501"},
    {"event_type": "person", "psn_no": "A", "insutype": "310", "psn_type": "1101", "insu_admdvs": "152501",
     "psn_insu_stas": "1"},
    {"event_type": "person", "psn_no": "B", "insutype": "310", "psn_type": "1201", "insu_admdvs": "152501",
     "psn_insu_stas": "1", "psn_idet_type": "dibao"},
    _claim("C1", "A", "7000.00"), _claim("C1", "A", "7000.00"), _claim("C2", "A", "1000.00"),
    _claim("C3", "B", "2000.00"),
)


def _report(lines: list[bytes]):
    base, study = load_books(STUDY)
    runs = asyncio.run(simulate(lambda: lines, base, study, NOW))
    return runs, {(row["section"], row["key"], row["measure"]): row for row in build(*runs, str).rows}


def test_the_erenhot_study_worked_by_hand():
    """Erenhot, level-1 institution (ratio 0.70 in service, 0.75 retired), annual deductible 1000.00.
    A (in service): C1 7000.00 in scope: (7000 − 1000) × 0.70 = 4200.00, capped at 4000.00 today, all
    of it under the study's 5000.00; C1 resent; C2 1000.00: 0.00 today (cap reached), 700.00 under the
    study. B (retired, 低保): C3 2000.00: (2000 − 1000) × 0.75 = 750.00 in both (general outpatient
    draws no assistance)."""
    (baseline, study), rows = _report(HAND)
    funds = {key[2]: (row["baseline"], row["study"], row["change"]) for key, row in rows.items()
             if key[0] == "funds"}
    assert funds["hifp_pay"] == (475000, 565000, 90000)  # 4000 + 0 + 750; 4200 + 700 + 750
    assert funds["fund_pay_sumamt"] == funds["hifp_pay"]
    assert funds["psn_part_amt"] == (525000, 435000, -90000)  # 3000 + 1000 + 1250; 2800 + 300 + 1250
    assert funds["medfee_sumamt"] == (1000000, 1000000, 0)
    # Burdens: A 4000.00 → 3100.00, B 1250.00. n = 2: median rank 1, p90 and p99 rank 2.
    burden = {(key[1], key[2]): (row["baseline"], row["study"]) for key, row in rows.items() if key[0] == "burden"}
    assert burden[("all", "mean")] == (262500, 217500)
    assert burden[("all", "median")] == (125000, 125000)
    assert burden[("all", "p90")] == burden[("all", "p99")] == (400000, 310000)
    assert burden[("in-service", "median")] == (400000, 310000)
    assert burden[("低保", "persons")] == (1, 1) and burden[("retired", "mean")] == (125000, 125000)
    cap = rows[("caps", "152501 普通门诊统筹 annual cap", "persons reaching it")]
    assert (cap["baseline"], cap["study"]) == (1, 0)
    # 2 insured, 1 month: 4750.00 × 1000 / 2 / 1 = 2,375,000.00 a month per 1,000 insured.
    cost = rows[("cost", "152501", "funds per 1,000 insured per month")]
    assert (str(cost["baseline"]), str(cost["study"])) == ("2375000.00", "2825000.00")
    assert rows[("persons", "A", "funds paid")]["change"] == 90000
    assert baseline.tally.resent == study.tally.resent == 1
    by_status = {key[1]: row for key, row in rows.items() if key[0] == "breakdown" and key[2] == "fund_pay_sumamt"
                 and row["dimension"] == "status"}
    assert by_status["in-service"]["change"] == 90000 and by_status["retired"]["change"] == 0


def test_persons_are_shown_by_the_name_given_never_by_psn_no():
    runs, _ = _report(HAND)
    report = build(*runs, lambda psn_no: f"P-{len(psn_no)}")
    text = csv_report(report) + json.dumps([cell for _title, _header, rows in tables(report) for cell in rows])
    assert "P-1" in text and ",A," not in text and '"A"' not in text


def test_a_change_file_lays_its_change_over_every_version_and_leaves_the_rest(tmp_path):
    base, study = load_books(STUDY)
    shipped = load_policy_book()
    assert base.regions == study.regions == shipped.regions
    assert study.region("990100") == shipped.region("990100")
    for version, before in zip(study.region("152501").versions, shipped.region("152501").versions):
        assert version.general_outpatient.annual_cap.in_service == 500000
        assert version.general_outpatient.annual_cap.retired == before.general_outpatient.annual_cap.retired
        assert version.model_copy(update={"general_outpatient": before.general_outpatient}) == before
    (tmp_path / "152501.toml").write_text('admdvs = "152501"\n[change.general_outpatient.annual_cap]\n'
                                          'in_servce = "5000.00"\n')
    with pytest.raises(PolicyError, match=r"152501.toml over policies/152501.toml: field .*in_servce"):
        load_books(tmp_path)
    (tmp_path / "152501.toml").write_text('admdvs = "999999"\n[change]\nx = 1\n')
    with pytest.raises(PolicyError, match="field 'admdvs'"):
        load_books(tmp_path)


def test_the_totals_are_the_sum_of_what_replay_gives_under_each_book():
    traffic = Traffic(persons=160, seed=5, year=2023)
    lines = [json_line(kind, data).encode() for kind, data in traffic.whole_year(1500)]
    base, study = load_books(STUDY)
    runs = asyncio.run(simulate(lambda: lines, base, study, NOW, errors=io.StringIO()))

    async def replayed(book) -> list[int]:
        sums, seen = [0] * len(FUNDS), set()
        async for result in replay_lines(lines, book, errors=io.StringIO(), now=NOW):
            if result["event_type"] in ("settlement", "reversal") and result["setl_id"] not in seen:
                seen.add(result["setl_id"])
                sums = [total + fen(result[name]) for total, name in zip(sums, FUNDS)]
        return sums

    for run, book in zip(runs, (base, study)):
        assert run.tally.totals == asyncio.run(replayed(book))
    assert runs[1].tally.totals[0] > runs[0].tally.totals[0]  # the study pays more: the test can tell
    for dimension in ("region", "med_type"):
        groups = [values for (dim, _), values in runs[0].tally.groups.items() if dim == dimension]
        assert [sum(column) for column in zip(*groups)] == runs[0].tally.totals
    by_class = runs[1].tally.by_class()
    assert [sum(column) for column in zip(*(v for (dim, _), v in by_class.items() if dim == "status"))] == \
        runs[1].tally.totals


def test_a_starting_state_is_settled_under_the_baseline_in_both_runs_and_not_counted():
    """HAND's registry and C1 as the state before the period: A's 4000.00 of outpatient pooling is
    paid under the baseline in both runs. Then C2 1000.00: 0.00 today; under the study the cap has
    1000.00 left and 1000.00 × 0.70 = 700.00 is paid. C3 750.00 in both. C1 is not counted."""
    start, period = HAND[:4], HAND[5:]
    base, study = load_books(STUDY)
    runs = asyncio.run(simulate(lambda: period, base, study, NOW, open_start=lambda: start))
    paid = FUNDS.index("hifp_pay")
    assert [run.tally.totals[paid] for run in runs] == [75000, 145000]
    assert [run.tally.counts.get("settlement") for run in runs] == [2, 2]
    assert [len(run.tally.caps.get("152501 普通门诊统筹 annual cap", ())) for run in runs] == [1, 0]
    assert [run.tally.insured for run in runs] == [{"152501": 2}, {"152501": 2}]


def test_a_baseline_directory_and_a_whole_policy_file_in_the_study(tmp_path):
    shipped = Path(__file__).parents[2] / "services" / "gongji" / "settlement" / "policies"
    baseline, whole = tmp_path / "baseline", tmp_path / "whole"
    baseline.mkdir()
    whole.mkdir()
    for path in shipped.glob("*.toml"):
        (baseline / path.name).write_text(path.read_text(encoding="utf-8").replace(
            'retired = "5000.00" }', 'retired = "4500.00" }'), encoding="utf-8")
    base, study = load_books(STUDY, baseline)
    caps = [version.general_outpatient.annual_cap for version in study.region("152501").versions]
    assert {(cap.in_service, cap.retired) for cap in caps} == {(500000, 450000)}  # the change over this baseline
    (whole / "152501.toml").write_text((shipped / "152501.toml").read_text(encoding="utf-8"), encoding="utf-8")
    base, study = load_books(whole, baseline)  # a whole file replaces the baseline's for its region
    assert study.region("152501") == load_policy_book(shipped).region("152501") != base.region("152501")
    assert study.region("990100") == base.region("990100")
