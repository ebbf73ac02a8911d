"""Keyed pseudonyms of persons on screens: stable under one key, different under another, never
the psn_no, and what the dashboard's Board and the demo's summary show instead of it."""

from __future__ import annotations

import re

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gongji.common.pseudonym import Pseudonym
from gongji.dashboard.domain import Board

pytestmark = pytest.mark.unit

PSN = st.text(alphabet="0123456789", min_size=6, max_size=30)


def signal(ident: str, subject_type: str, subject_id: str) -> dict:
    return {"signal_id": ident, "rule_id": "SHOPPING", "category": "fraud", "severity": "high",
            "subject_type": subject_type, "subject_id": subject_id, "admdvs": "152501", "window_start": "w",
            "window_end": "w", "claim_ids": ["c1"], "count": 4, "threshold": "> 3", "amount": None,
            "reason": "Settled at 4 institutions in one day.", "detected_at": "t"}


def test_a_pseudonym_is_hmac_sha256_under_the_key_truncated():
    # HMAC-SHA256(key "k", "152501000001"), its first 16 hex digits (openssl dgst -sha256 -hmac k).
    assert Pseudonym(b"k")("152501000001") == "P-67b7b7a71e192c0d"


@settings(derandomize=True, max_examples=200)
@given(PSN, st.binary(min_size=1, max_size=64))
def test_stable_under_one_key_and_never_the_number(psn_no, key):
    first, again = Pseudonym(key)(psn_no), Pseudonym(key)(psn_no)
    assert first == again  # another process, or after a restart, with the same key
    assert re.fullmatch(r"P-[0-9a-f]{16}", first) and psn_no not in first


@settings(derandomize=True, max_examples=200)
@given(PSN, PSN)
def test_keyed_and_distinct(one, other):
    assert Pseudonym(b"key-a")(one) != Pseudonym(b"key-b")(one)  # another key: another pseudonym
    if one != other:
        assert Pseudonym(b"key-a")(one) != Pseudonym(b"key-a")(other)


def test_without_a_key_it_is_random_per_process_and_an_empty_key_is_refused():
    assert Pseudonym(None)("152501000001") != Pseudonym(None)("152501000001")
    assert not Pseudonym(None).stable and Pseudonym(b"k").stable
    assert "k" not in repr(Pseudonym(b"k"))
    with pytest.raises(ValueError):
        Pseudonym(b"")


def test_the_board_shows_persons_by_pseudonym_and_institutions_by_code():
    pseudonym = Pseudonym(b"dashboard-key")
    board = Board(since=0.0, pseudonym=pseudonym)
    board.fraud_signal(signal("s1", "person", "152501000042"))
    board.fraud_signal(signal("s2", "institution", "H15250100001"))
    board.fraud_signal(signal("s3", "cardholder", "152501000043"))  # a kind to come: pseudonymous too
    board.fraud_signal({**signal("s4", "person", "152501000044"), "reason": "152501000044 seen twice."})
    shown = {s["signal_id"]: s["subject_id"] for s in board.snapshot(1.0)["signals"]}
    # A person's signal_id (an unkeyed hash of rule, psn_no and window, all but the psn_no on the
    # page) is shown as its keyed reference too; an institution's as it is.
    assert shown == {pseudonym.signal("s1"): pseudonym("152501000042"), "s2": "H15250100001",
                     pseudonym.signal("s3"): pseudonym("152501000043"),
                     pseudonym.signal("s4"): pseudonym("152501000044")}
    assert re.fullmatch(r"S-[0-9a-f]{16}", pseudonym.signal("s1")) and pseudonym.signal("s1") != pseudonym("s1")
    assert Pseudonym(b"another-key").signal("s1") != pseudonym.signal("s1")
    text = orjson.dumps(board.snapshot(1.0)).decode() + repr(list(board.signals.values()))
    assert not {"152501000042", "152501000043", "152501000044"} & set(re.findall(r"\d{12}", text))
    assert f"{pseudonym('152501000044')} seen twice." in text  # a reason naming the person names the pseudonym


def test_the_demos_fraud_lines_name_the_pseudonym(tmp_path, monkeypatch):
    import asyncio

    from gongji.local.demo import summaries
    from gongji.local.demo.figures import Run
    from gongji.settings import Settings

    key = tmp_path / "key"
    key.write_text("demo-key\n")
    run = Run(Settings(pseudonym_key_file=key), 10, tmp_path / "log", {})
    run.fold("FraudSignal", signal("s1", "person", "152501000042"), 0.0)

    async def no_wait(*_args, **_kwargs):
        return True

    monkeypatch.setattr(summaries, "caught_up", no_wait)  # nothing to wait for here
    monkeypatch.setattr(summaries, "until_steady", no_wait)
    text = asyncio.run(summaries.fraud_summary(run))
    assert Pseudonym(b"demo-key")("152501000042") in text and "152501000042" not in text


def test_a_dead_letters_reason_naming_its_key_shows_the_pseudonym():
    pseudonym = Pseudonym(b"dashboard-key")
    board = Board(since=0.0, pseudonym=pseudonym)
    board.dead_letter({"key": b"152501000042", "reason": "KeyError: 152501000042", "service": "ledger"})
    board.dead_letter({"key": None, "reason": "undecodable: not Avro", "service": "settlement"})
    reasons = {row["reason"] for row in board.snapshot(1.0)["dead_letters"]}
    assert reasons == {f"KeyError: {pseudonym('152501000042')}", "undecodable: not Avro"}
