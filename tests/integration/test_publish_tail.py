"""`gongji publish` of the shipped sample and `gongji tail settlements`, against the real broker and
Redis with the settlement service running and signed input required: the results are replay's for
the same file, but for the lines publish refused at the door, which it names (issue 11)."""

from __future__ import annotations

import io
import json
from pathlib import Path

from gongji.local.publish import publish
from gongji.local.tail import tail
from gongji.settlement.policy import load_policy_book
from gongji.settlement.replay import replay_lines
from tests.integration.support import running_service, settings_for
from tests.integration.test_signed_input import keys_file

SAMPLE = Path(__file__).parents[1] / "e2e" / "data" / "erenhot.jsonl"


async def replayed() -> list[dict]:
    with open(SAMPLE, "rb") as lines:
        return [output async for output in replay_lines(lines, load_policy_book(), errors=io.StringIO())]


def ordered(results: list[dict]) -> list[str]:
    return sorted(json.dumps(result, sort_keys=True, ensure_ascii=False) for result in results)


async def test_publishing_the_sample_then_tailing_settlements_gives_what_replay_gives(stack, uniq, tmp_path):
    settings = settings_for(stack, uniq, input_keys_file=keys_file(tmp_path), require_signed_input=True,
                            input_signing_key="erenhot")
    errors = io.StringIO()
    async with running_service(settings):
        with open(SAMPLE, "rb") as lines:
            tally = await publish(lines, settings, ordered=True, errors=errors)
    out = io.StringIO()
    printed = await tail(settings, settings.topics.settlements, out, from_beginning=True)
    tailed = [json.loads(line) for line in out.getvalue().splitlines()]
    assert printed == len(tailed) > 0

    # publish refused what replay answers with INVALID_CLAIM, naming the line and the field, and the
    # line that is not JSON, which replay skips too; everything else went, signed (required here)
    assert errors.getvalue().splitlines() == [
        "line 12: invalid claim: fee_details.0.det_item_fee_sumamt: Input should be greater than or equal to 0; "
        "not sent",
        "line 19: not JSON (Expecting value at column 1); skipped"]
    assert (tally.sent, tally.refused) == (17, 2)
    expected = [result for result in await replayed()
                if not (result["event_type"] == "rejection" and result["err_code"] == "INVALID_CLAIM")]
    assert len(expected) == len(await replayed()) - 1
    assert ordered(tailed) == ordered(expected)

    # --id: the records about one claim (its settlement, the resend's, the reversal naming it)
    one = io.StringIO()
    await tail(settings, settings.topics.settlements, one, from_beginning=True, ident="C-0001")
    about = [json.loads(line) for line in one.getvalue().splitlines()]
    assert sorted((r["event_type"], r["claim_id"]) for r in about) == [
        ("reversal", "R-0001"), ("settlement", "C-0001"), ("settlement", "C-0001")]  # the resend answered again
