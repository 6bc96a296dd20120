"""The browser voice agent over WebRTC, in a real browser: Debian chromium driven by Playwright.

The same page as tests/test_web_browser.py, opened on ``voxpipe serve
pipelines/webrtc_agent.yaml`` (the offline local realtime server): the page picks WebRTC
by itself, posts its SDP offer, and talks over a peer connection on this machine (Opus both
ways, events on the data channel). Chromium's fake microphone says "what is the weather in
paris", then "tell me a story" and, while the story plays, "hello". The test waits for what
the person would see and hear: the question recognised, the tool card, the answer played by
the page (its receiver's played-out RTP position), the story cut by the barge-in and
truncated at the position the page reported. Then the tab closes and the session ends with
a reason. A screenshot is kept in ``test-artifacts/``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import anyio
import pytest
from browser import ARTIFACTS, check_answer_played_whole, check_story_cut, check_weather_question, chromium_page, microphone_wav, missing

ROOT = Path(__file__).resolve().parent.parent
SPOKEN = (("what is the weather in paris", 8.0), ("tell me a story", 3.0), ("hello", 12.0))


WHY_NOT = missing(("aiortc", "pip install 'voxpipe[webrtc]'"))
pytestmark = [pytest.mark.skipif(WHY_NOT is not None, reason=WHY_NOT or ""), pytest.mark.slow]
#: The websocket test's Chromium, allowed to play the remote track without a gesture.
AUTOPLAY = "--autoplay-policy=no-user-gesture-required"


@pytest.mark.anyio
async def test_the_page_talks_over_webrtc(tmp_path, monkeypatch, caplog):
    """Speech in over Opus, tool card, spoken answer played; a barge-in truncates at the page's played position."""
    from processors.web.server import web_server

    monkeypatch.delenv("VOXPIPE_REALTIME_URL", raising=False)
    monkeypatch.delenv("VOXPIPE_TOKEN", raising=False)
    monkeypatch.delenv("VOXPIPE_ICE_SERVERS", raising=False)
    caplog.set_level(logging.INFO, logger="voxpipe.webrtc")
    caplog.set_level(logging.DEBUG, logger="voxpipe.realtime")  # last: it also sets the capture's level
    wav = microphone_wav(tmp_path / "microphone.wav", SPOKEN)
    with anyio.fail_after(120):  # a deadline for a loaded machine, not a timing check
        async with web_server(ROOT / "pipelines" / "webrtc_agent.yaml") as srv, \
                chromium_page(srv.url, wav, AUTOPLAY) as opened:
            page, problems = opened.page, opened.problems
            await page.wait_for_function("() => window.voxpipe && window.voxpipe.transport === 'webrtc'")
            await page.click("#talk")
            await page.wait_for_function("() => window.voxpipe.stats.connected", timeout=15_000)

            # 1. the question is recognised, the tool is called, the answer is played whole
            await check_weather_question(page)
            await check_answer_played_whole(page)

            # 2. the story is cut by "hello": the page reports where, the model truncates there
            await check_story_cut(page, caplog, timeout_ms=25_000)
            hello = page.locator(".bubble.assistant:not(.partial):not(.interrupted)").nth(1)
            await hello.wait_for(timeout=15_000)
            assert "voxpipe local model" in await hello.inner_text()

            stats = await page.evaluate("() => window.voxpipe.stats")
            assert stats["flushes"] >= 1 and stats["playedMs"] > 3000 and stats["sentFrames"] > 100, stats
            heard = await page.locator("#latency tr td:nth-child(3)").all_inner_texts()
            assert any(cell.endswith(" ms") for cell in heard), heard
            assert stats["errors"] == [] and problems == [], (stats["errors"], problems)
            await page.screenshot(path=str(ARTIFACTS / "webrtc_agent.png"), full_page=True)
            shot = await page.screenshot()
            assert len(shot) > 10_000  # a rendered page, not a blank one
            assert "WebRTC" in await page.locator("#status").inner_text()
            texts = await page.locator("#transcript").inner_text()
            assert "18 degrees" in texts and "Once upon a time" in texts
            # 3. leaving the page (its beforeunload: "bye", then close) ends the session with a reason
            await page.evaluate("() => window.vpRTC.close()")
            with anyio.fail_after(10):
                await srv.webrtc.wait_idle()
            assert list(srv.webrtc.reasons.values()) == ["page_closed"], srv.webrtc.reasons
            assert any("w1: ending (page_closed" in r.getMessage() for r in caplog.records)
