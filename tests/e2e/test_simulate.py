"""`gongji simulate` as a user runs it: the shipped study on a year of synthetic traffic, its totals
against two `gongji replay` runs of the same file (one under a whole policy directory that holds the
study's change), and its CSV and offline HTML."""

from __future__ import annotations

import csv
import json
import re
import shutil
from decimal import Decimal
from pathlib import Path

from tests.e2e.test_commands import ROOT, run

STUDY = ROOT / "docs" / "studies" / "erenhot-outpatient-cap"
SHIPPED = ROOT / "services" / "gongji" / "settlement" / "policies"
FUNDS = ("hifp_pay", "hifob_pay", "cvlserv_pay", "maf_pay", "oth_pay", "fund_pay_sumamt", "acct_pay",
         "acct_mulaid_pay", "psn_cash_pay", "psn_part_amt", "medfee_sumamt")
CAP_LINE = 'annual_cap = { in_service = "4000.00", retired = "5000.00" }'


def _fen(text: str) -> int:
    return int(Decimal(text) * 100)


def _replayed(path: Path, *options: str) -> dict[str, int]:
    """Each fund's sum over replay's results, a resent answer once (by setl_id)."""
    result = run(*options, "replay", str(path), timeout=300)
    assert result.returncode == 0, result.stderr
    sums, seen = dict.fromkeys(FUNDS, 0), set()
    for line in result.stdout.splitlines():
        event = json.loads(line)
        if event["event_type"] in ("settlement", "reversal") and event["setl_id"] not in seen:
            seen.add(event["setl_id"])
            for name in FUNDS:
                sums[name] += _fen(event[name])
    return sums


def test_the_shipped_study_equals_the_two_replays_it_compares(tmp_path):
    events = tmp_path / "year.jsonl"
    made = run("synthetic", "--persons", "300", "--claims", "3000", "--seed", "7", "--out", str(events))
    assert made.returncode == 0, made.stderr
    again = run("synthetic", "--persons", "300", "--claims", "3000", "--seed", "7")
    assert again.stdout == events.read_text(encoding="utf-8")  # deterministic by seed
    out_csv, out_html = tmp_path / "study.csv", tmp_path / "study.html"
    result = run("simulate", "--policies", str(STUDY), str(events), "--json", "--csv", str(out_csv),
                 "--html", str(out_html), timeout=300)
    assert result.returncode == 0, result.stderr
    assert "lines settled twice" in result.stderr and "Traceback" not in result.stderr
    report = json.loads(result.stdout)
    funds = {row["measure"]: row for row in report["rows"] if row["section"] == "funds"}

    # The study as a whole policy directory: the shipped files, Erenhot's in-service cap 5000.00.
    whole = tmp_path / "whole"
    shutil.copytree(SHIPPED, whole)
    text = (whole / "152501.toml").read_text(encoding="utf-8")
    assert text.count(CAP_LINE) == 1
    (whole / "152501.toml").write_text(text.replace(CAP_LINE, CAP_LINE.replace('"4000.00"', '"5000.00"')),
                                       encoding="utf-8")
    baseline, study = _replayed(events), _replayed(events, "--policies", str(whole))
    assert {name: _fen(row["baseline"]) for name, row in funds.items()} == baseline
    assert {name: _fen(row["study"]) for name, row in funds.items()} == study
    assert study["hifp_pay"] > baseline["hifp_pay"]  # the cap binds somewhere in a year
    regions = {row["key"]: row for row in report["rows"] if row["section"] == "breakdown"
               and row["dimension"] == "region" and row["measure"] == "fund_pay_sumamt"}
    assert regions["990100"]["change"] == "0.00" and regions["152501"]["change"] == funds["fund_pay_sumamt"]["change"]

    with out_csv.open(encoding="utf-8", newline="") as source:
        rows = list(csv.DictReader(source))
    assert [row for row in rows if row["section"] == "funds"] == [
        {**row, "dimension": "all", "key": "all"} for row in report["rows"] if row["section"] == "funds"]
    page = out_html.read_text(encoding="utf-8")
    # Nothing fetched: no element of the page loads anything (plotly.js names its CDN only as the
    # default place of the maps geo charts draw, which this page has none of).
    assert re.findall(r"<(?:script|link|img|iframe)\b[^>]*\b(?:src|href)=", page) == []
    assert "Plotly.newPlot" in page and len(page) > 3_000_000  # plotly.js itself is in the page
    psn_nos = [json.loads(line)["psn_no"] for line in events.read_text().splitlines()
               if '"event_type": "person"' in line]
    shown = result.stdout + out_csv.read_text() + page
    assert not [psn_no for psn_no in psn_nos if psn_no in shown]  # pseudonyms only
    named = run("simulate", "--policies", str(STUDY), str(events), "--json", "--show-psn-no", "--top", "3",
                timeout=300)
    movers = [row["key"] for row in json.loads(named.stdout)["rows"] if row["section"] == "persons"]
    assert len(movers) == 3 and set(movers) <= set(psn_nos)


def test_the_terminal_tables_and_a_bad_change_file(tmp_path):
    events = tmp_path / "year.jsonl"
    assert run("synthetic", "--persons", "40", "--claims", "200", "--out", str(events)).returncode == 0
    tables = run("simulate", "--policies", str(STUDY), str(events))
    assert tables.returncode == 0, tables.stderr
    for title in ("Paid by fund", "By region", "Personal burden", "Persons reaching each cap",
                  "Cost per 1,000 insured per month"):
        assert title in tables.stdout
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "152501.toml").write_text('admdvs = "152501"\n[change.general_outpatient]\nannual_cap = "x"\n')
    refused = run("simulate", "--policies", str(bad), str(events))
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert refused.stderr.startswith("gongji: policy not loaded: ") and "152501.toml" in refused.stderr
    assert run("simulate", "--policies", str(STUDY), str(tmp_path / "none.jsonl")).returncode == 1
    keyed = {"GONGJI_PSEUDONYM_KEY": "a study's pseudonym key"}  # the same pseudonyms in both runs
    piped = run("simulate", "--policies", str(STUDY), "-", "--json", stdin=events.read_text(), env=keyed)
    assert json.loads(piped.stdout)["rows"] == json.loads(
        run("simulate", "--policies", str(STUDY), str(events), "--json", env=keyed).stdout)["rows"]


def test_the_html_report_draws_its_charts_with_the_network_cut_off(tmp_path):
    """The page in Debian's chromium with every request that is not the file itself refused."""
    from playwright.sync_api import sync_playwright

    from tests.e2e.test_dashboard_browser import CHROMIUM, CHROMIUM_ARGS

    events, page_file = tmp_path / "year.jsonl", tmp_path / "study.html"
    assert run("synthetic", "--persons", "60", "--claims", "600", "--out", str(events)).returncode == 0
    assert run("simulate", "--policies", str(STUDY), str(events), "--html", str(page_file)).returncode == 0
    refused: list[str] = []
    errors: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.route("**/*", lambda route: route.continue_() if route.request.url.startswith("file:")
                       else (refused.append(route.request.url), route.abort()))
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(page_file.as_uri())
            page.wait_for_selector(".plot-container .main-svg")
            charts = page.locator(".plot-container").count()
        finally:
            browser.close()
    assert (charts, refused, errors) == (9, [], [])
