"""`gongji replay` over hostile lines: every line is one answer, a rejection on the output or one line
on standard error, and never an exception (issue 8, item 2)."""

from __future__ import annotations

import asyncio
import io
import json
from datetime import datetime

import pytest
from tests.unit.builders import BOOK

from gongji.settlement import rules
from gongji.settlement.replay import replay_lines

pytestmark = pytest.mark.unit

NOW = datetime.fromisoformat("2024-12-31T12:00:00+08:00")
CLAIM = {"event_type": "claim", "claim_id": "C-1", "mdtrt_id": "M-1", "psn_no": "P1", "fixmedins_code": "H1",
         "med_type": "11", "insutype": "310", "setl_time": "2023-06-01T10:00:00+08:00", "acct_used_flag": "0",
         "fee_details": [{"feedetl_sn": "1", "med_list_codg": "XF06", "list_type": "201", "chrgitm_lv": "01",
                          "det_item_fee_sumamt": "30.00", "cnt": "3", "pric": "10.00"}]}
VALID = [
    {"event_type": "institution", "fixmedins_code": "H1", "fixmedins_name": "h", "fixmedins_type": "1",
     "medins_lv": "3", "grassroots": False, "admdvs": "152501"},
    {"event_type": "person", "psn_no": "P1", "insutype": "310", "psn_type": "1101", "insu_admdvs": "152501",
     "psn_insu_stas": "1"},
    CLAIM,
]


def claim_text(**fields) -> str:
    return json.dumps({**CLAIM, **fields}, ensure_ascii=True)


def line_text(**fields) -> str:
    return claim_text(fee_details=[{**CLAIM["fee_details"][0], **fields}])


def raw(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


# Each: (line, "rejection" or "stderr": how it must be answered)
HOSTILE = [
    pytest.param(raw(line_text(pric="1" * 40)), "rejection", id="40-digit price"),
    pytest.param(raw(line_text().replace('"30.00"', "1" + "0" * 39)), "rejection", id="40-digit JSON number"),
    pytest.param(raw(line_text().replace('"30.00"', "1" * 5000)), "stderr", id="5000-digit JSON integer"),
    pytest.param(raw(line_text().replace('"30.00"', "1e999999999999999999999")), "stderr", id="exponent 10^21"),
    pytest.param(raw(line_text().replace('"30.00"', "1e999999999")), "rejection", id="1e999999999"),
    pytest.param(raw(line_text().replace('"30.00"', "NaN")), "rejection", id="NaN"),
    pytest.param(raw(line_text().replace('"30.00"', "Infinity")), "rejection", id="Infinity"),
    pytest.param(raw(line_text().replace('"30.00"', "-Infinity")), "rejection", id="-Infinity"),
    pytest.param(raw(line_text().replace('"3"', "[[[[{}]]]]")), "rejection", id="nested junk for a count"),
    pytest.param(raw(claim_text(fee_details="[" * 500 + "]" * 500)), "rejection", id="brackets in a string"),
    pytest.param(raw(claim_text().replace('"fee_details": [', '"fee_details": ' + "[" * 900 + "[")
                     .replace("]}", "]" * 900 + "]}")), "rejection", id="900 levels inside a claim"),
    pytest.param(b"[" * 100_000, "stderr", id="100,000 open brackets (RecursionError)"),
    pytest.param(b'{"a":' * 100_000, "stderr", id="100,000 nested objects"),
    pytest.param(raw(claim_text(psn_no=12, claim_id=None)), "rejection", id="wrong types"),
    pytest.param(raw(claim_text(setl_time=True)), "rejection", id="bool setl_time"),
    pytest.param(raw(claim_text(psn_no="P1\ud800")), "rejection", id="lone surrogate escape"),
    pytest.param(raw(claim_text(psn_no="P1\u0000")), "rejection", id="NUL escape"),
    pytest.param(raw(claim_text(psn_no="P1 ")), "rejection", id="trailing space"),
    pytest.param(raw(claim_text(claim_id="C" * 1_000_000)), "rejection", id="a million-character id"),
    pytest.param(raw(claim_text(setl_time="2999-01-01T10:00:00+08:00")), "rejection", id="dated 2999"),
    pytest.param(raw(claim_text(setl_time="0001-01-01T00:00:00+14:00")), "rejection", id="year 1 at +14:00"),
    pytest.param(raw(claim_text(event_type={"x": [1]})), "rejection", id="event_type an object"),
    pytest.param(raw(claim_text(event_type="\u0000" * 100)), "rejection", id="event_type of NULs"),
    pytest.param(raw(json.dumps({"event_type": "credit", "credit_id": "K", "psn_no": "P1", "ym": "0000-01",
                                 "crdt_type": "monthly", "crdt_base": "1.00"})), "rejection", id="month 0000-01"),
    pytest.param(raw(json.dumps({"event_type": "credit", "credit_id": "K", "psn_no": "P1", "ym": "2023-01",
                                 "crdt_type": "opening", "amount": "1000000000000.00"})), "rejection",
                 id="opening credit of 10^12"),
    pytest.param(b"\xff\xfe" + raw(claim_text()), "stderr", id="not UTF-8"),
    pytest.param(raw(claim_text()).replace(b"P1", b"P\xc31"), "stderr", id="a broken UTF-8 sequence inside"),
    pytest.param(b"\xef\xbb\xbf" + raw(claim_text()), "stderr", id="a byte-order mark"),
    pytest.param(b"\x00" * 100, "stderr", id="NUL bytes"),
    pytest.param(b'"claim"', "stderr", id="a JSON string"),
    pytest.param(b"null", "stderr", id="JSON null"),
    pytest.param(b"[1, 2]", "stderr", id="a JSON array"),
    pytest.param(b"{", "stderr", id="truncated"),
]


def replay(lines: list[bytes | str], rules=rules) -> tuple[list[dict], list[str]]:
    errors = io.StringIO()

    async def collect():
        return [out async for out in replay_lines(lines, BOOK, errors, now=NOW, rules=rules)]

    outputs = asyncio.run(collect())
    # What the command writes: UTF-8 JSON, one line each.
    for output in outputs:
        json.dumps(output, ensure_ascii=False).encode("utf-8")
    return outputs, errors.getvalue().splitlines()


@pytest.mark.parametrize(("line", "answer"), HOSTILE)
def test_each_hostile_line_gets_exactly_one_answer(line, answer):
    outputs, errors = replay([line])
    if answer == "rejection":
        assert errors == []
        assert [(out["event_type"], out["err_code"]) for out in outputs] == [("rejection", "INVALID_CLAIM")]
        assert len(outputs[0]["err_msg"]) < 1500
    else:
        assert outputs == []
        assert len(errors) == 1 and errors[0].startswith("line 1: ") and errors[0].endswith("skipped"), errors
        assert len(errors[0]) < 300


def test_valid_events_after_every_hostile_line_settle_as_without_them():
    clean = [json.dumps(event) for event in VALID]
    alone, _ = replay(clean)
    assert [out["event_type"] for out in alone] == ["settlement"]
    hostile = [param.values[0] for param in HOSTILE]
    outputs, errors = replay([*hostile, *(text.encode() for text in clean)])
    assert outputs[-1] == alone[-1]
    answered = len(errors) + sum(out["event_type"] == "rejection" for out in outputs)
    assert answered == len(hostile)


def test_text_lines_still_replay():
    """Lines as str (a caller with text in hand) and blank lines are fine."""
    outputs, errors = replay([json.dumps(event) for event in VALID] + ["", "  \r\n"])
    assert [out["event_type"] for out in outputs] == ["settlement"] and errors == []


class Planted:
    """The real rules, but settling the claims named fails as a bug of ours would (a KeyError)."""

    def __init__(self, *claim_ids: str):
        self.claim_ids = claim_ids

    def __getattr__(self, name):
        return getattr(rules, name)

    def settle_claim(self, claim, *args, **kwargs):
        if claim.claim_id in self.claim_ids:
            raise KeyError("surprise")
        return rules.settle_claim(claim, *args, **kwargs)


def test_an_error_inside_settlement_is_one_line_on_stderr():
    """A bug of ours (here a KeyError from the rules) skips the event, as the service dead-letters it."""
    outputs, errors = replay([json.dumps(event) for event in VALID], rules=Planted("C-1"))
    assert outputs == []
    assert errors == ["line 3: internal error while settling: KeyError: \"'surprise'\"; skipped"]


@pytest.mark.parametrize("batch", [1, 2, 500])
def test_in_a_batch_the_event_that_fails_inside_settlement_is_isolated(batch):
    """With --batch N a failing batch is settled again one event at a time (as the service isolates
    a message for dead-letters): the other claims settle, the failing one is one line on stderr."""
    claims = [claim_text(claim_id=f"C-{n}", mdtrt_id=f"M-{n}") for n in (1, 2, 3)]
    errors = io.StringIO()

    async def collect():
        lines = [json.dumps(event) for event in VALID[:2]] + claims
        return [out async for out in replay_lines(lines, BOOK, errors, batch=batch, now=NOW, rules=Planted("C-2"))]

    outputs = asyncio.run(collect())
    assert [(out["event_type"], out["claim_id"]) for out in outputs] == [("settlement", "C-1"), ("settlement", "C-3")]
    assert errors.getvalue().splitlines() == ["line 4: internal error while settling: KeyError: \"'surprise'\"; skipped"]
