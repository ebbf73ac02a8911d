"""The dashboard on the real broker, authenticated: every route refuses a request without a
credential, with a wrong token, a wrong user or a wrong password (401, WWW-Authenticate), and
answers the token, the user's password (Basic) and the login form's session cookie; the service
refuses to start with no credential; TLS when given a certificate; and no raw psn_no in anything
it answers for a stream with fraud signals about persons."""

from __future__ import annotations

import asyncio
import base64
import os
import shutil
import ssl
import subprocess
import sys
import time

import aiohttp
import pytest
import yarl
from argon2 import PasswordHasher
from tests.dashboard_records import fraud_signal, send, settlement
from tests.integration.support import settings_for

from gongji.common.pseudonym import Pseudonym
from gongji.common.topic_admin import ensure_topics
from gongji.dashboard.service import start_dashboard

TOKEN = "access-test-token-0123456789abcdef"
PASSWORD = "correct horse battery"
HASH = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1).hash(PASSWORD)
KEY = "access-test-key"
GET_ROUTES = ["", "events", "snapshot.json", "static/app.js", "static/app.css", "static/plotly.min.js"]


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


async def status_of(session: aiohttp.ClientSession, url: str, headers: dict[str, str] | None = None,
                    method: str = "GET") -> tuple[int, aiohttp.typedefs.LooseHeaders]:
    """Status and headers; a stream (/events) is left once its headers have come."""
    async with session.request(method, url, headers=headers or {}, allow_redirects=False) as response:
        return response.status, response.headers


@pytest.fixture
async def dashboard(stack, uniq):
    settings = settings_for(stack, uniq, dashboard_port=0, dashboard_token=TOKEN, dashboard_user="ops",
                            dashboard_password_hash=HASH, pseudonym_key=KEY)
    topics = settings.topics
    await ensure_topics(settings, [topics.settlements, topics.dead_letters, topics.fraud_signals, topics.institutions],
                        1, compacted={topics.institutions})
    running = await start_dashboard(settings)
    try:
        yield settings, running.url
    finally:
        await running.stop()


async def test_every_route_refuses_without_or_with_a_wrong_credential(dashboard):
    _settings, url = dashboard
    wrong = {"no credential": {}, "wrong token": {"Authorization": f"Bearer {TOKEN[:-1]}x"},
             "empty bearer": {"Authorization": "Bearer "}, "wrong password": basic("ops", PASSWORD + "!"),
             "wrong user": basic("root", PASSWORD), "token as password": basic("ops", TOKEN),
             "garbled basic": {"Authorization": "Basic %%%"}, "wrong cookie": {"Cookie": "gongji_session=forged"}}
    async with aiohttp.ClientSession() as session:
        for route in [*GET_ROUTES, "static/nothing.js"]:
            for what, headers in wrong.items():
                status, answered = await status_of(session, url + route, headers)
                assert status == 401, (route, what, status)
                schemes = answered.getall("WWW-Authenticate")
                assert any(s.startswith("Bearer") for s in schemes) and any(s.startswith("Basic") for s in schemes)
        assert (await status_of(session, url + "logout", method="POST"))[0] == 401
        for removed in ("healthz", "metrics"):  # not on this port, and not open on it either
            assert (await status_of(session, url + removed))[0] == 401


async def test_every_route_answers_the_token_and_the_users_password(dashboard):
    _settings, url = dashboard
    async with aiohttp.ClientSession() as session:
        for route in GET_ROUTES:
            for headers in ({"Authorization": f"Bearer {TOKEN}"}, basic("ops", PASSWORD)):
                status, answered = await status_of(session, url + route, headers)
                assert status == 200, (route, headers, status)
                assert answered["X-Frame-Options"] == "DENY"
        status, _ = await status_of(session, url + "static/nothing.js", {"Authorization": f"Bearer {TOKEN}"})
        assert status == 404


async def test_a_browser_gets_the_login_form_and_a_strict_httponly_session(dashboard):
    _settings, url = dashboard
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
        async with browser.get(url, headers={"Accept": "text/html"}) as refused:
            assert refused.status == 401 and 'action="/login"' in await refused.text()
        async with browser.post(url + "login", data={"token": "not-it-0123456789"}, allow_redirects=False) as wrong:
            assert wrong.status == 401 and "Wrong credentials" in await wrong.text()
        async with browser.post(url + "login", data={"token": TOKEN},
                                headers={"Origin": "http://elsewhere.example"}, allow_redirects=False) as forged:
            assert forged.status == 403  # a login posted from another site
        async with browser.post(url + "login", data={"token": TOKEN}, allow_redirects=False) as login:
            assert login.status == 303 and login.headers["Location"] == "/"
            cookie = login.headers["Set-Cookie"]
            assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
        for route in GET_ROUTES:
            assert (await status_of(browser, url + route))[0] == 200, route
        async with browser.post(url + "login", data={"user": "ops", "password": PASSWORD},
                                allow_redirects=False) as by_password:
            assert by_password.status == 303
        session_cookie = browser.cookie_jar.filter_cookies(yarl.URL(url))["gongji_session"].value
        assert (await status_of(browser, url + "logout", method="POST"))[0] == 303
    async with aiohttp.ClientSession() as stranger:  # the session ended with the logout
        assert (await status_of(stranger, url, {"Cookie": f"gongji_session={session_cookie}"}))[0] == 401


async def test_no_raw_psn_no_in_anything_the_dashboard_answers(dashboard):
    settings, url = dashboard
    persons = [f"152501{n:08d}" for n in (4201, 4202, 4203)]
    await send(settings, [("Settlement", settlement(psn)) for psn in persons])
    rules = ("SHOPPING", "VISITS_PER_DAY", "IMPOSSIBLE_TRAVEL")
    signals = [fraud_signal(psn, rule) for psn, rule in zip(persons, rules)]
    await send(settings, [("FraudSignal", signal) for signal in signals])
    auth = {"Authorization": f"Bearer {TOKEN}"}
    async with aiohttp.ClientSession(headers=auth) as session:
        deadline = time.monotonic() + 30
        while True:
            async with session.get(url + "snapshot.json") as response:
                snapshot = await response.json()
            if snapshot["counts"]["fraud_signals"] == 3 and snapshot["counts"]["settlements"] == 3:
                break
            assert time.monotonic() < deadline, snapshot["counts"]
            await asyncio.sleep(0.2)
        bodies = [await (await session.get(url + route)).text() for route in ("", "snapshot.json", "static/app.js")]
        async with session.get(url + "events") as stream:
            bodies.append((await stream.content.readuntil(b"\n\n")).decode()
                          + (await stream.content.readuntil(b"\n\n")).decode())
    assert {s["subject_id"] for s in snapshot["signals"]} == {Pseudonym(KEY.encode())(psn) for psn in persons}
    for body in bodies:  # nor the signal ids, which an unkeyed hash of the psn_no gives away
        assert not any(psn in body for psn in persons) and not any(s["signal_id"] in body for s in signals)
    assert Pseudonym(KEY.encode())(persons[0]) in bodies[-1]  # the live stream shows the pseudonym


def run_dashboard(settings, **env: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "gongji", "run", "dashboard"],
                            env={**os.environ, **settings.to_env(), **env}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)


def test_the_service_refuses_to_start_with_no_credential(stack, uniq):
    settings = settings_for(stack, uniq, dashboard_port=0)
    process = run_dashboard(settings)
    _out, err = process.communicate(timeout=60)
    assert process.returncode == 1
    assert err.strip().splitlines()[-1].startswith("gongji: dashboard: no credential: set GONGJI_DASHBOARD_TOKEN")
    assert "Traceback" not in err


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl makes the test certificate")
async def test_tls_when_given_a_certificate_and_key(stack, uniq, tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    settings = settings_for(stack, uniq, dashboard_port=0, dashboard_token=TOKEN, dashboard_tls_certfile=cert,
                            dashboard_tls_keyfile=key)
    running = await start_dashboard(settings)
    try:
        assert running.url.startswith("https://127.0.0.1:")
        trust = ssl.create_default_context(cafile=str(cert))
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=trust)) as session:
            assert (await status_of(session, running.url))[0] == 401
            assert (await status_of(session, running.url, {"Authorization": f"Bearer {TOKEN}"}))[0] == 200
            async with session.post(running.url + "login", data={"token": TOKEN}, allow_redirects=False) as login:
                assert "Secure" in login.headers["Set-Cookie"]
        async with aiohttp.ClientSession() as plain:  # plain HTTP on the TLS port: no page
            with pytest.raises(aiohttp.ClientError):
                await status_of(plain, running.url.replace("https://", "http://"),
                                {"Authorization": f"Bearer {TOKEN}"})
    finally:
        await running.stop()
