"""The dashboard on a centre's wall: at 1366×768 (the commonest office screen) nothing on the page
overflows horizontally or is clipped, in Chinese (the default) and in English; every panel is
shown; the language toggle is remembered across a reload; the cross-region flows carry counts and
amounts. Signed in through the login form, against `gongji run dashboard` on the real broker. The
screenshots are kept in tests/artifacts/dashboard-1366-{zh,en}.png."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from tests.dashboard_records import fraud_signal, send
from tests.e2e.test_dashboard_browser import (ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, TOKEN, feed, settings_for, start,
                                              wait_for)

from gongji.common.topic_admin import ensure_topics
from gongji.local.processes import free_port

playwright = pytest.importorskip("playwright.async_api")

WIDTH, HEIGHT = 1366, 768
PANELS = ("rate", "period", "funds", "regions", "levels", "flows", "accounts", "rejections", "dead", "lag", "signals",
          "statements")

#: Every element shown that reaches past the page's width or its panel's edge, and every block
#: whose content is wider than its box (clipped, ellipsed, or spilling out).
OVERFLOWS = """() => {
  const width = document.documentElement.clientWidth, bad = [];
  const name = e => e.tagName.toLowerCase() + (e.id ? "#" + e.id : "") +
    (typeof e.className === "string" && e.className ? "." + e.className.trim().split(/\\s+/).join(".") : "");
  const shown = e => { const s = getComputedStyle(e), r = e.getBoundingClientRect();
    return s.display !== "none" && s.visibility !== "hidden" && (r.width > 0 || r.height > 0)
      && !e.closest("#js-plotly-tester"); };  // plotly measures text there, 10,000 px off the page
  if (document.documentElement.scrollWidth > width) bad.push("page is " + document.documentElement.scrollWidth + " wide");
  for (const e of document.querySelectorAll("body *")) {
    if (!shown(e)) continue;
    const r = e.getBoundingClientRect();
    if (r.left < -0.5 || r.right > width + 0.5) bad.push(name(e) + " spans " + r.left + ".." + r.right);
    const s = getComputedStyle(e);
    if (!(e instanceof SVGElement) && s.display !== "inline" && e.scrollWidth > e.clientWidth + 1)
      bad.push(name(e) + " holds " + e.scrollWidth + " in " + e.clientWidth + ": " + e.textContent.slice(0, 40));
  }
  for (const box of document.querySelectorAll(".card, .kpi, header")) {
    const c = box.getBoundingClientRect();
    for (const e of box.querySelectorAll("*")) {
      if (!shown(e)) continue;
      const r = e.getBoundingClientRect();
      if (r.left < c.left - 1 || r.right > c.right + 1) bad.push(name(e) + " leaves " + name(box));
    }
  }
  return bad.slice(0, 25);
}"""


async def check_fits(page, language: str) -> None:
    assert await page.evaluate("() => window.innerWidth") == WIDTH
    for panel in PANELS:
        box = await page.locator(f"#panel-{panel}").bounding_box()
        assert await page.locator(f"#panel-{panel}").is_visible(), panel
        assert box and box["width"] > 150 and box["height"] > 80 and box["x"] >= 0 and box["x"] + box["width"] <= WIDTH, \
            (panel, box)
    for kpi in await page.locator(".kpi").all():
        assert await kpi.is_visible()
    await page.wait_for_timeout(300)  # plotly's responsive redraw after a language change
    assert await page.evaluate(OVERFLOWS) == [], language
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / f"dashboard-1366-{language}.png"), full_page=True)


async def test_dashboard_fits_1366_in_chinese_and_english_and_remembers_the_language(stack, uniq, tmp_path):
    assert Path(CHROMIUM).exists(), "chromium is missing: `make test` installs it (apt-get install chromium)"
    settings = settings_for(stack, uniq, free_port())
    topics = settings.topics
    await ensure_topics(settings, [topics.settlements, topics.dead_letters, topics.fraud_signals, topics.institutions,
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
                page = await browser.new_page(viewport={"width": WIDTH, "height": HEIGHT})
                errors: list[str] = []
                page.on("pageerror", lambda error: errors.append(str(error)))

                async def loaded() -> bool:
                    try:
                        await page.goto(url, timeout=5000)
                        return True
                    except playwright.Error:
                        return False
                await wait_for(loaded, what=f"the dashboard at {url}; log:\n{log_path.read_text()}")
                assert await page.get_attribute("html", "lang") == "zh-CN"  # the login form too
                await page.fill("#login input[name=token]", TOKEN)
                await page.click("#login button")
                await page.wait_for_selector("#status[data-state=live]", timeout=30_000)
                await send(settings, [("FraudSignal", fraud_signal("P7", rule="IMPOSSIBLE_TRAVEL"))])
                await page.wait_for_selector(".signal", timeout=30_000)
                await page.wait_for_selector("#flows tr[data-flow]", timeout=30_000)  # someone treated away

                # Chinese by default: labels, the status, the period panel on the live figures.
                assert await page.get_attribute("html", "lang") == "zh-CN"
                assert "异地就医" in await page.text_content("#panel-flows h2")
                assert await page.text_content("#status-text") == "实时"
                assert await page.text_content("#lang") == "EN"
                assert await page.get_attribute("#period-figures", "data-period") == "live"
                flow = page.locator("#flows tr[data-flow]").first
                cells = [await c.text_content() for c in await flow.locator("td").all()]
                assert " → " in cells[0] and int(cells[1].replace(",", "")) > 0, cells
                assert cells[2].startswith("¥") and cells[3].startswith("¥"), cells
                await check_fits(page, "zh")
                # The period buttons: this dashboard has no ledger, and the panel says so (with the setting).
                await page.click(".period[data-period=today]")
                await page.wait_for_function(
                    "document.getElementById('period-note').textContent.includes('GONGJI_DATABASE_URL')")
                assert await page.get_attribute("#period-figures", "data-ready") == "false"
                await page.click(".period[data-period=live]")
                await page.wait_for_selector("#period-figures[data-ready=true] tr[data-figure=f_claims]")

                await page.click("#lang")
                assert await page.get_attribute("html", "lang") == "en"
                assert "Cross-region care" in await page.text_content("#panel-flows h2")
                assert await page.text_content("#lang") == "中文"
                await page.wait_for_function("document.getElementById('status-text').textContent === 'live'")
                await check_fits(page, "en")

                await page.reload()  # remembered: English again, without a click
                await page.wait_for_selector("#status[data-state=live]", timeout=30_000)
                assert await page.get_attribute("html", "lang") == "en"
                assert "Settlements per second" in await page.text_content("#panel-rate h2")
                await page.click("#lang")
                assert "每秒结算" in await page.text_content("#panel-rate h2")
                assert not errors, errors
            finally:
                await browser.close()
    finally:
        stop.set()
        await asyncio.gather(feeder, return_exceptions=True)
        service.terminate()
        service.wait(30)
    assert "Traceback" not in log_path.read_text(), log_path.read_text()
