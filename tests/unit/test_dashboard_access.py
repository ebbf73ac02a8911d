"""The dashboard's access settings, refused or taken before anything listens, and the checks of a
token, a user's password and a session; /metrics and /healthz off loopback behind a token."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest
from argon2 import PasswordHasher

from gongji.common.observe import Metrics, MetricsExposed, serve
from gongji.dashboard.access import Access, AccessError
from gongji.local.processes import free_port
from gongji.settings import Settings

pytestmark = pytest.mark.unit

TOKEN = "t0ken-of-the-dashboard-0123456789"
# argon2id of "correct horse" with small parameters, so the tests stay quick.
HASHER = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
HASH = HASHER.hash("correct horse")


def test_no_credential_no_dashboard_unless_auth_is_off_on_loopback():
    with pytest.raises(AccessError, match="no credential.*GONGJI_DASHBOARD_TOKEN.*GONGJI_DASHBOARD_AUTH=off"):
        Access.from_settings(Settings())
    assert Access.from_settings(Settings(dashboard_auth="off")) is None  # a reverse proxy authenticates
    with pytest.raises(AccessError, match="loopback only"):
        Access.from_settings(Settings(dashboard_auth="off", dashboard_host="0.0.0.0"))


def test_weak_or_malformed_credentials_are_refused(tmp_path):
    with pytest.raises(AccessError, match="shorter than 16"):
        Access.from_settings(Settings(dashboard_token="short"))
    with pytest.raises(AccessError, match="not an argon2 hash"):
        Access.from_settings(Settings(dashboard_user="ops", dashboard_password_hash="plain-password"))
    with pytest.raises(AccessError, match="GONGJI_DASHBOARD_TOKEN_FILE: cannot read"):
        Access.from_settings(Settings(dashboard_token_file=tmp_path / "missing"))
    with pytest.raises(ValueError, match="go together"):
        Settings(dashboard_user="ops")
    with pytest.raises(ValueError, match="go together"):
        Settings(dashboard_tls_certfile=tmp_path / "cert.pem")


def test_the_token_from_a_file_and_only_that_token(tmp_path):
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")  # a mounted secret's trailing newline is not part of it
    access = Access.from_settings(Settings(dashboard_token_file=path))
    assert access.token_ok(TOKEN)
    assert not access.token_ok(TOKEN[:-1]) and not access.token_ok(TOKEN + "x") and not access.token_ok("")


async def test_the_user_and_the_argon2_password():
    access = Access.from_settings(Settings(dashboard_user="ops", dashboard_password_hash=HASH))
    access._hasher = HASHER
    assert await access.password_ok("ops", "correct horse")
    assert await access.password_ok("ops", "correct horse")  # remembered a while: no argon2 each request
    assert not await access.password_ok("ops", "correct horsf")
    assert not await access.password_ok("opz", "correct horse")
    assert not access.token_ok("correct horse")  # no token configured: none is right


def test_sessions_are_signed_survive_a_restart_and_die_with_the_credential_or_a_logout(monkeypatch):
    access = Access(TOKEN, None, None, secure=False)
    one, two = access.open_session(), access.open_session()
    assert one != two and TOKEN not in one
    assert access.session_ok(one) and access.session_ok(two)
    expires, nonce, mac = one.split(".")
    flipped = mac[:-1] + ("1" if mac[-1] == "0" else "0")  # one hex digit changed (the last was "0" once in 16)
    for forged in (f"{int(expires) + 9999}.{nonce}.{mac}", f"{expires}.{nonce}.{flipped}", f"{expires}.{nonce}",
                   "", "a.b.c", one + "."):
        assert not access.session_ok(forged), forged
    assert Access(TOKEN, None, None, secure=False).session_ok(one)  # restarted, or another replica
    assert not Access(TOKEN + "-rotated", None, None, secure=False).session_ok(one)
    access.close_session(one)
    assert not access.session_ok(one) and access.session_ok(two)
    # A user alone: the hash is no signing key (whoever read it could forge sessions); this process's own.
    by_user = Access(None, "ops", HASH, secure=False)
    assert by_user.session_ok(by_user.open_session())
    assert not Access(None, "ops", HASH, secure=False).session_ok(by_user.open_session())
    monkeypatch.setattr("time.time", lambda: int(expires) + 1)  # 12 hours on
    assert not access.session_ok(two)


def fetch(port: int, path: str, token: str | None = None) -> tuple[int, dict, bytes]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}",
                                     headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def test_metrics_on_loopback_answer_without_credentials():
    metrics, port = Metrics("settlement"), free_port()
    server = serve(metrics, "127.0.0.1", port)
    try:
        assert fetch(port, "/metrics")[0] == 200
        status, _, body = fetch(port, "/healthz")
        assert status == 200 and "seconds_since_poll" in json.loads(body)
    finally:
        server.shutdown()


def test_metrics_off_loopback_need_the_token_and_health_says_only_its_status():
    metrics = Metrics("settlement")
    with pytest.raises(MetricsExposed, match="GONGJI_METRICS_TOKEN"):
        serve(metrics, "0.0.0.0", free_port())
    port = free_port()
    server = serve(metrics, "0.0.0.0", port, token=TOKEN)  # every address, loopback included
    try:
        status, headers, _ = fetch(port, "/metrics")
        assert status == 401 and headers["WWW-Authenticate"].startswith("Bearer")
        assert fetch(port, "/metrics", "wrong-token-0123456789")[0] == 401
        status, _, body = fetch(port, "/metrics", TOKEN)
        assert status == 200 and b"gongji_consumed_total" in body
        status, _, body = fetch(port, "/healthz")  # an orchestrator's probe: the status alone
        assert status == 200 and json.loads(body) == {"healthy": True}
        assert "seconds_since_poll" in json.loads(fetch(port, "/healthz", TOKEN)[2])
    finally:
        server.shutdown()
