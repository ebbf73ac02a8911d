"""`gongji publish` of the shipped sample and `gongji tail settlements`, against the real broker and
Redis with the settlement service running (topics of 3 partitions) and signed input required: the
results are replay's for the same file, but for the lines publish refused at the door, which it
names (issue 11). Without waiting (`wait=False`, what publish did before) the shipped sample's
family (a member's claims on the holder's account, between the holder's credits and claims, on
other topics and keys) settles in another order and the results differ."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from gongji.contract.topics import Topics
from gongji.local.publish import publish
from gongji.local.tail import tail
from gongji.settlement.policy import load_policy_book
from gongji.settlement.replay import replay_lines
from tests.integration.support import running_service, settings_for
from tests.integration.test_signed_input import keys_file

ROOT = Path(__file__).parents[2]
SAMPLE = ROOT / "docs" / "samples" / "claims.jsonl"  # the README's example
ERENHOT = ROOT / "tests" / "e2e" / "data" / "erenhot.jsonl"


async def replayed(path: Path) -> list[dict]:
    with open(path, "rb") as lines:
        return [output async for output in replay_lines(lines, load_policy_book(), errors=io.StringIO())]


def ordered(results: list[dict]) -> list[str]:
    return sorted(json.dumps(result, sort_keys=True, ensure_ascii=False) for result in results)


async def published_then_tailed(settings, path: Path):
    errors = io.StringIO()
    async with running_service(settings):
        with open(path, "rb") as lines:
            tally = await publish(lines, settings, errors=errors)
    out = io.StringIO()
    printed = await tail(settings, settings.topics.settlements, out, from_beginning=True)
    tailed = [json.loads(line) for line in out.getvalue().splitlines()]
    assert printed == len(tailed) > 0
    return tally, errors.getvalue().splitlines(), tailed


def signed(stack, uniq, tmp_path):
    return settings_for(stack, uniq, input_keys_file=keys_file(tmp_path), require_signed_input=True,
                        input_signing_key="erenhot")


async def test_publishing_the_shipped_sample_then_tailing_settlements_gives_what_replay_gives(stack, uniq, tmp_path):
    settings = signed(stack, uniq, tmp_path)
    tally, said, tailed = await published_then_tailed(settings, SAMPLE)
    assert said == ["line 14: invalid claim: fee_details.0.det_item_fee_sumamt: Input should be greater than or "
                    "equal to 0; not sent"]
    assert (tally.sent, tally.refused) == (19, 1)
    # only lines that depend on an earlier one on another topic or key waited, not every line
    assert 0 < tally.waits < tally.sent - 6
    expected = [result for result in await replayed(SAMPLE)
                if not (result["event_type"] == "rejection" and result["err_code"] == "INVALID_CLAIM")]
    assert len(expected) == 12
    assert ordered(tailed) == ordered(expected)
    # the family's account moved as in the file: the member's first claim drew on the holder's opening
    # credit before the holder spent the rest, and the reversal gave it back before the April credit
    family = {result.get("claim_id") or result.get("credit_id"): result for result in tailed}
    assert family["C-1001"]["acct_mulaid_pay"] == "120.00" and family["C-1003"]["acct_pay"] == "80.00"
    assert family["K-1001-202504"]["balc"] == "280.00"


async def test_publishing_erenhot_then_tailing_settlements_gives_what_replay_gives(stack, uniq, tmp_path):
    settings = signed(stack, uniq, tmp_path)
    tally, said, tailed = await published_then_tailed(settings, ERENHOT)
    # publish refused what replay answers with INVALID_CLAIM, naming the line and the field, and the
    # line that is not JSON, which replay skips too; everything else went, signed (required here)
    assert said == [
        "line 12: invalid claim: fee_details.0.det_item_fee_sumamt: Input should be greater than or equal to 0; "
        "not sent",
        "line 19: not JSON (Expecting value at column 1); skipped"]
    assert (tally.sent, tally.refused) == (17, 2)
    expected = [result for result in await replayed(ERENHOT)
                if not (result["event_type"] == "rejection" and result["err_code"] == "INVALID_CLAIM")]
    assert len(expected) == len(await replayed(ERENHOT)) - 1
    assert ordered(tailed) == ordered(expected)

    # --id: the records about one claim (its settlement, the resend's, the reversal naming it)
    one = io.StringIO()
    await tail(settings, settings.topics.settlements, one, from_beginning=True, ident="C-0001")
    about = [json.loads(line) for line in one.getvalue().splitlines()]
    assert sorted((r["event_type"], r["claim_id"]) for r in about) == [
        ("reversal", "R-0001"), ("settlement", "C-0001"), ("settlement", "C-0001")]  # the resend answered again


async def test_without_settlement_running_publish_stops_with_a_message_unless_told_not_to_wait(
        stack, uniq, tmp_path, monkeypatch):
    from gongji.local import publish as module

    settings = signed(stack, uniq, tmp_path)
    monkeypatch.setattr(module, "WAIT_TIMEOUT", 1.0)
    with open(SAMPLE, "rb") as lines:
        with pytest.raises(module.PublishError, match=f"settlement group '{settings.settlement_group}' did not take"):
            await publish(lines, settings, errors=io.StringIO())
    with open(SAMPLE, "rb") as lines:
        tally = await publish(lines, as_other_run(settings), wait=False, errors=io.StringIO())
    assert (tally.sent, tally.refused, tally.waits) == (19, 1, 0)


def as_other_run(settings):
    return settings.updated(topic_prefix=settings.topic_prefix + "nowait.", topics=Topics())
