"""`gongji run dashboard` in a real browser (Debian's chromium, driven by playwright): the page
answers with its login form, the access token signs in, its figures move while results flow, a
fraud signal appears with the person's pseudonym, and after the service is restarted under the
open page the page reconnects by itself (the session holds) and moves again. The screenshot is
kept in tests/artifacts/dashboard.png."""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import pytest
from tests.dashboard_records import dead_letter, fraud_signal, institution, rejection, send, settlement

from gongji.common.pseudonym import Pseudonym
from gongji.common.topic_admin import ensure_topics
from gongji.local.processes import free_port

playwright = pytest.importorskip("playwright.async_api")

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).parents[1] / "artifacts"
INSTITUTIONS = [("H3A", "3", "1"), ("H3B", "3", "1"), ("H2A", "2", "1"), ("H1A", "1", "1"), ("PH1", "1", "2")]
REJECTIONS = ["UNKNOWN_PERSON", "NOT_INSURED", "INVALID_CLAIM", "UNSUPPORTED_MED_TYPE", "DUPLICATE_CONFLICT"]
TOKEN = "browser-test-token-0123456789abcdef"
KEY = "browser-test-pseudonym-key"


def settings_for(stack, uniq: str, port: int):
    from gongji.settings import Settings

    timeouts = stack.group_timeouts
    return Settings(**stack.kafka_settings(), redis_url=stack.redis_url,
                    topic_prefix=f"{uniq}.", key_prefix=uniq, settlement_group=f"{uniq}-settlement",
                    clearing_group=f"{uniq}-clearing", partitions=3, dashboard_port=port, dashboard_token=TOKEN,
                    pseudonym_key=KEY,
                    kafka_session_timeout_ms=timeouts["session_timeout_ms"],
                    kafka_heartbeat_interval_ms=timeouts["heartbeat_interval_ms"],
                    kafka_rebalance_timeout_ms=timeouts["rebalance_timeout_ms"])


def start(settings, log_path: Path) -> subprocess.Popen:
    """`gongji run dashboard` as a child process, as `gongji stack up` and the demo run it."""
    env = {**os.environ, **settings.to_env(), "GONGJI_DASHBOARD_PORT": str(settings.dashboard_port)}
    with open(log_path, "ab") as log:
        return subprocess.Popen([sys.executable, "-m", "gongji.cli", "run", "dashboard"], env=env, stdout=log,
                                stderr=log, stdin=subprocess.DEVNULL)


def traffic(rng: random.Random, n: int) -> list[tuple[str, dict]]:
    """Results like the settlement service's: both regions, every institution level, some treated
    away from home, family mutual aid, medical assistance, persons at their cap, refusals."""
    out = []
    for _ in range(n):
        if rng.random() < 0.08:
            out.append(("Rejection", rejection(f"P{rng.randrange(500)}", rng.choice(REJECTIONS))))
            continue
        insured = rng.choice(["152501", "990100"])
        treated = insured if rng.random() < 0.8 else ({"152501": "990100", "990100": "152501"}[insured])
        hifp = Decimal(rng.randrange(500, 30000)) / 100
        at_cap = rng.random() < 0.1
        out.append(("Settlement", settlement(
            f"P{rng.randrange(500)}", insured=insured, treated=treated, inst=rng.choice(INSTITUTIONS)[0],
            hifp=str(hifp), maf=str(Decimal(rng.randrange(0, 4000)) / 100 if rng.random() < 0.15 else "0.00"),
            acct=str(Decimal(rng.randrange(0, 8000)) / 100),
            mulaid=str(Decimal(rng.randrange(100, 3000)) / 100 if rng.random() < 0.2 else "0.00"),
            cash=str(Decimal(rng.randrange(0, 5000)) / 100), limit_left=str(hifp if at_cap else hifp * 3))))
    return out


async def feed(settings, stop: asyncio.Event) -> None:
    rng = random.Random(7)
    await send(settings, [("Institution", institution(code, level, kind)) for code, level, kind in INSTITUTIONS])
    sent = 0
    while not stop.is_set():
        batch = traffic(rng, rng.randrange(8, 20))
        if sent % 25 == 0:
            batch.append(("DeadLetter", dead_letter(rng.choice([
                "undecodable: not Avro single-object encoding: expected marker c3 01",
                "undecodable: unknown writer schema fingerprint 0011223344556677",
                "invalid: INVALID_CLAIM: fee line amounts do not add up"]))))
        await send(settings, batch)
        sent += 1
        await asyncio.sleep(0.25)


async def settlements_shown(page) -> int:
    return int((await page.text_content("#kpi-settlements")).replace(",", "").replace("–", "0") or 0)


async def wait_for(check, timeout: float = 30.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.2)


async def test_dashboard_in_chromium_live_fraud_signal_and_reconnect(stack, uniq, tmp_path):
    assert Path(CHROMIUM).exists(), "chromium is missing: `make test` installs it (apt-get install chromium)"
    settings = settings_for(stack, uniq, free_port())
    topics = settings.topics
    await ensure_topics(settings,
                        [topics.settlements, topics.dead_letters, topics.fraud_signals, topics.institutions,
                         topics.clearing_statements, topics.claims], settings.partitions,
                        compacted={topics.institutions})
    log_path = tmp_path / "dashboard.log"
    service = start(settings, log_path)
    stop = asyncio.Event()
    feeder = asyncio.create_task(feed(settings, stop))
    url = f"http://127.0.0.1:{settings.dashboard_port}/"
    try:
        async with playwright.async_playwright() as p:
            browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = await browser.new_page(viewport={"width": 1600, "height": 1250})
                errors: list[str] = []
                page.on("pageerror", lambda error: errors.append(str(error)))

                async def loaded() -> bool:
                    try:
                        await page.goto(url, timeout=5000)
                        return True
                    except playwright.Error:
                        return False
                await wait_for(loaded, what=f"the dashboard at {url}; log:\n{log_path.read_text()}")
                # Not signed in: the login form, in place of the page. The token signs in.
                await page.fill("#login input[name=token]", TOKEN[:-1] + "x")
                await page.click("#login button")
                await page.wait_for_selector("#login-error")
                await page.fill("#login input[name=token]", TOKEN)
                await page.click("#login button")
                await page.wait_for_selector("#status[data-state=live]", timeout=30_000)
                await wait_for(lambda: _above(page, 0), what="a first settlement on the page")
                first = await settlements_shown(page)
                await wait_for(lambda: _above(page, first), what="the settlement count to move")
                assert await page.locator("#chart-rate .main-svg").count() > 0  # plotly drew

                signal = fraud_signal("P42", rule="SHOPPING")
                shown_id = Pseudonym(KEY.encode()).signal(signal["signal_id"])
                await send(settings, [("FraudSignal", signal)])
                await page.wait_for_selector(f".signal[data-id='{shown_id}']", timeout=30_000)
                shown = await page.text_content("#signals")
                assert Pseudonym(KEY.encode())("P42") in shown and "P42" not in shown
                await page.wait_for_timeout(1500)  # a tick more of traffic on the charts
                ARTIFACTS.mkdir(exist_ok=True)
                shot = ARTIFACTS / "dashboard.png"
                await page.screenshot(path=str(shot), full_page=True)
                print(f"screenshot: {shot}")

                # Restart the service under the open page: it reconnects and moves again.
                before = await page.get_attribute("body", "data-instance")
                service.terminate()
                service.wait(30)
                await page.wait_for_selector("#status[data-state=reconnecting]", timeout=30_000)
                service = start(settings, log_path)
                await page.wait_for_function(f"document.body.dataset.instance !== {before!r}", timeout=60_000)
                await page.wait_for_selector("#status[data-state=live]", timeout=30_000)
                again = await settlements_shown(page)
                await wait_for(lambda: _above(page, again), what="the count to move after the restart")
                assert await page.locator(f".signal[data-id='{shown_id}']").count() == 1
                assert not errors, errors
            finally:
                await browser.close()
    finally:
        stop.set()
        await asyncio.gather(feeder, return_exceptions=True)
        service.terminate()
        service.wait(30)
    assert "Traceback" not in log_path.read_text(), log_path.read_text()


async def _above(page, value: int) -> bool:
    return await settlements_shown(page) > value
