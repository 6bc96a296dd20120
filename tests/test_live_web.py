"""The browser agent on the Live API in a real browser: Debian chromium driven by Playwright.

Chromium's fake microphone plays eSpeak NG saying a weather question, "tell me a story" and,
over the story, a second weather question. The page streams it to ``voxpipe serve
pipelines/live_web_agent.yaml`` (live.openai against the offline local server's Live side).
The test waits for what the person would see: their words, the delegated tool call and its
result, the spoken answer, and the story cut short when the model yielded, with the page
reporting how much of it was played.
"""

from __future__ import annotations

import logging
from pathlib import Path

import anyio
import pytest
from browser import check_weather_question, chromium_page, items, microphone_wav, missing

ROOT = Path(__file__).resolve().parent.parent
SPOKEN = (("what is the weather in paris", 4.5), ("tell me a story", 3.0), ("what is the weather in tokyo", 3.0))

pytestmark = [pytest.mark.skipif(missing() is not None, reason=missing() or ""), pytest.mark.slow]


@pytest.mark.anyio
async def test_the_page_talks_with_the_live_agent(tmp_path, monkeypatch, caplog):
    """Speech in, a client delegation through the router, spoken answers; talking over the story stops it."""
    from processors.web.server import web_server

    monkeypatch.delenv("VOXPIPE_LIVE_URL", raising=False)
    monkeypatch.delenv("VOXPIPE_TOKEN", raising=False)
    caplog.set_level(logging.INFO, logger="voxpipe")
    wav = microphone_wav(tmp_path / "microphone.wav", SPOKEN)
    with anyio.fail_after(150):  # a deadline for a loaded machine, not a timing check
        async with web_server(ROOT / "pipelines" / "live_web_agent.yaml") as srv, \
                chromium_page(srv.url, wav, screenshot="live_web_agent.png") as opened:
            page, problems = opened.page, opened.problems
            await page.wait_for_function("() => window.voxpipe && window.voxpipe.stats.connected")
            await page.click("#talk")

            await check_weather_question(page)
            await page.wait_for_function(
                "() => [...document.querySelectorAll('.bubble.assistant')].some(b => b.innerText.includes('18 degrees'))",
                timeout=20_000)

            story = page.locator(".bubble.assistant.interrupted")
            await story.first.wait_for(timeout=30_000)
            assert "Once upon a time" in await story.first.inner_text()
            story_item = await story.first.get_attribute("data-item")
            await page.wait_for_function("id => window.voxpipe.state.items.get(id).done", arg=story_item)
            cut = (await items(page))[story_item]
            assert 0 < cut["playedMs"] < cut["receivedMs"], cut

            await page.wait_for_function(
                "() => [...document.querySelectorAll('.bubble.assistant')].some(b => b.innerText.includes('25 degrees'))",
                timeout=30_000)
            calls = await page.locator(".tool.ok .tool-head").all_inner_texts()
            assert any("tokyo" in c.lower() for c in calls), calls
            told = [r.getMessage() for r in caplog.records if "yields" in r.getMessage() or "kept talking" in r.getMessage()]
            assert told, "the local model did not yield to the user"
            stats = await page.evaluate("() => window.voxpipe.stats")
            assert stats["flushes"] >= 1 and stats["errors"] == [] and problems == [], (stats, problems)
