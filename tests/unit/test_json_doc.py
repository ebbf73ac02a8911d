"""docs/JSON.md and the shipped sample it points to (issue 11): the examples in the page are lines of
the sample and valid events; the page names every input and output kind; the sample has what an
integrator needs to see (every input kind, a family drawing on the holder's account, both time forms,
money as text and as numbers, a reversal, exactly one line replay refuses)."""

from __future__ import annotations

import io
import json
import re
from datetime import datetime
from pathlib import Path

import pytest

from gongji.contract.wire import CLEARING_STATEMENT, DEAD_LETTER, FRAUD_SIGNAL, INPUT_RECORDS, OUTPUT_RECORDS
from gongji.settlement.codec import to_event
from gongji.settlement.domain import Rejection
from gongji.settlement.policy import load_policy_book
from gongji.settlement.replay import parse_line, replay_lines

pytestmark = pytest.mark.unit

DOCS = Path(__file__).parents[2] / "docs"
PAGE = (DOCS / "JSON.md").read_text(encoding="utf-8")
SAMPLE = DOCS / "samples" / "claims.jsonl"
NOW = datetime.fromisoformat("2026-01-01T00:00:00+08:00")


def sample() -> list[dict]:
    return [json.loads(line) for line in SAMPLE.read_text(encoding="utf-8").splitlines()]


def test_the_pages_examples_are_lines_of_the_sample_and_valid_events():
    examples = [line for block in re.findall(r"```json\n(.*?)```", PAGE, re.S) for line in block.splitlines()]
    assert len(examples) == 7  # one of each kind, and the claim the catalogue line classifies
    lines = SAMPLE.read_text(encoding="utf-8").splitlines()
    for example in examples:
        assert example in lines, example
        data = parse_line(1, example, io.StringIO())
        assert not isinstance(to_event(data["event_type"], data, now=NOW), Rejection), example


def test_the_page_names_every_kind_in_and_out():
    kinds = set(re.findall(r"^\| `([a-z-]+)` \|", PAGE, re.M))
    assert set(INPUT_RECORDS) <= kinds and set(OUTPUT_RECORDS) <= kinds
    for kind in (FRAUD_SIGNAL, CLEARING_STATEMENT, DEAD_LETTER):
        assert f"`{kind}`" in PAGE


def test_the_sample_shows_what_an_integrator_needs():
    lines = sample()
    assert {line["event_type"] for line in lines} == set(INPUT_RECORDS)
    members = {line["psn_no"]: line["mulaid_holder_psn_no"] for line in lines
               if line["event_type"] == "person" and line.get("mulaid_holder_psn_no")}
    family_claims = [line for line in lines if line["event_type"] == "claim" and line["psn_no"] in members
                     and line["acct_used_flag"] == "1"]
    holders_credits = [line for line in lines if line["event_type"] == "credit" and line["psn_no"] in members.values()]
    assert family_claims and holders_credits
    times = [line["setl_time"] for line in lines if "setl_time" in line]
    assert any("T" in time for time in times) and any(re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", time)
                                                      for time in times)
    text = SAMPLE.read_text(encoding="utf-8")
    assert re.search(r'"amount": \d', text) and re.search(r'"det_item_fee_sumamt": "\d', text)


async def test_replay_of_the_sample_refuses_exactly_one_line_and_draws_on_the_holders_account():
    with open(SAMPLE, "rb") as lines:
        results = [result async for result in replay_lines(lines, load_policy_book(), errors=io.StringIO())]
    assert [r["claim_id"] for r in results if r["event_type"] == "rejection"] == ["C-1006"]
    assert [r["err_code"] for r in results if r["event_type"] == "rejection"] == ["INVALID_CLAIM"]
    assert {r["event_type"] for r in results} == {"settlement", "reversal", "rejection", "credit"}
    assert any(r["event_type"] == "settlement" and r["acct_mulaid_pay"] != "0.00" for r in results)
