"""`gongji call`'s pure parts: the envelope it completes and the caller it signs as."""

from datetime import datetime, timezone

import pytest

from gongji.gateway.callers import Callers
from gongji.gateway.client import caller_of, envelope
from gongji.settings import Settings

pytestmark = pytest.mark.unit

NOW = datetime(2023, 3, 1, 2, 15, 30, tzinfo=timezone.utc)  # 10:15:30 in Asia/Shanghai


def test_a_missing_msgid_and_inf_time_are_filled_and_nothing_else_changes():
    request = {"infno": "2207", "fixmedins_code": "H1", "input": {"data": {"psn_no": "P1"}}}
    filled = envelope(request, NOW)
    assert filled["inf_time"] == "2023-03-01 10:15:30"
    assert filled["msgid"].startswith("20230301101530") and len(filled["msgid"]) == 30
    assert {k: v for k, v in filled.items() if k not in ("msgid", "inf_time")} == request
    assert envelope(request, NOW)["msgid"] != filled["msgid"]  # a new request, a new msgid
    given = envelope({**request, "msgid": "M-1", "inf_time": "2023-01-01 00:00:00"}, NOW)
    assert (given["msgid"], given["inf_time"]) == ("M-1", "2023-01-01 00:00:00")  # a retry keeps its own


@pytest.mark.parametrize("request_", [[], "2207", {"input": {}}])
def test_what_is_no_envelope_is_refused(request_):
    with pytest.raises(ValueError, match="not a national envelope"):
        envelope(request_, NOW)


def test_the_caller_signs_what_the_gateway_verifies(tmp_path):
    secret = tmp_path / "his.key"
    secret.write_text("s" * 48 + "\n")
    caller = caller_of(Settings(gateway_caller="his", gateway_caller_secret_file=secret))
    body = b'{"infno": "2207"}'
    headers = caller.headers(1_700_000_000, body)
    gateway = Callers({"his": caller})
    assert gateway.authenticate(headers, body, now=1_700_000_100).key_id == "his"
    with pytest.raises(ValueError):
        gateway.authenticate(headers, body + b" ", now=1_700_000_100)


def test_a_missing_caller_or_secret_is_one_line_naming_the_settings(tmp_path):
    with pytest.raises(ValueError, match="GONGJI_GATEWAY_CALLER and GONGJI_GATEWAY_CALLER_SECRET_FILE"):
        caller_of(Settings())
    with pytest.raises(ValueError, match=f"GONGJI_GATEWAY_CALLER_SECRET_FILE {tmp_path}/none: No such file"):
        caller_of(Settings(gateway_caller="his", gateway_caller_secret_file=tmp_path / "none"))
