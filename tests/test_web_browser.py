"""The browser voice agent in a real browser: Debian chromium driven by Playwright.

Chromium's fake microphone plays an eSpeak NG recording of three things a person says:
a question about the weather in Paris, "tell me a story", and, while the story is being
played, "hello". The page captures them with its AudioWorklet and streams them to
``voxpipe serve pipelines/web_agent.yaml`` (the offline local realtime server). The test
waits for what the person would see and hear: their words recognised, the tool call and
its result, the spoken replies played by the page, and the story cut short by the
barge-in, with the page reporting exactly how much of it was played. A screenshot is
kept in ``test-artifacts/``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import anyio
import pytest
from browser import check_answer_played_whole, check_story_cut, check_weather_question, chromium_page, microphone_wav, missing

ROOT = Path(__file__).resolve().parent.parent
#: What the fake microphone says, each followed by the silence (s) before the next.
SPOKEN = (("what is the weather in paris", 5.0), ("tell me a story", 3.0), ("hello", 6.0))

pytestmark = [pytest.mark.skipif(missing() is not None, reason=missing() or ""), pytest.mark.slow]


@pytest.mark.anyio
async def test_the_page_talks_with_the_agent(tmp_path, monkeypatch, caplog):
    """Speech in, transcript, tool call and spoken replies out; a barge-in flushes playback at the played position."""
    from processors.web.server import web_server

    monkeypatch.delenv("VOXPIPE_REALTIME_URL", raising=False)
    monkeypatch.delenv("VOXPIPE_TOKEN", raising=False)
    caplog.set_level(logging.DEBUG, logger="voxpipe.realtime")
    wav = microphone_wav(tmp_path / "microphone.wav", SPOKEN)
    with anyio.fail_after(150):  # a deadline for a loaded machine, not a timing check
        async with web_server(ROOT / "pipelines" / "web_agent.yaml") as srv, \
                chromium_page(srv.url, wav, screenshot="web_agent.png") as opened:
            page, problems = opened.page, opened.problems
            await page.wait_for_function("() => window.voxpipe && window.voxpipe.stats.connected")
            await page.click("#talk")

            # 1. the question is recognised, the tool is called, the answer is shown and played whole
            await check_weather_question(page)
            await check_answer_played_whole(page)

            # 2. the story is interrupted by "hello": playback flushes, the cut is reported, hello is answered
            story, cut = await check_story_cut(page, caplog)
            hello = page.locator(".bubble.assistant:not(.partial):not(.interrupted)").nth(1)
            await hello.wait_for(timeout=15_000)
            assert "voxpipe local model" in await hello.inner_text()

            mark = await page.evaluate(
                "el => getComputedStyle(el, '::after').content", await story.first.locator(".text").element_handle())
            assert "interrupted after" in mark
            # the bubble shows what was heard, and the rest struck through, counted (as the console does)
            heard = (await story.first.locator(".text").inner_text()).split()
            unheard = (await story.first.locator(".not-heard").inner_text()).split()
            full = "".join(text for _, text in cut["segments"]).split() if cut.get("segments") else None
            assert " ".join(heard + unheard).startswith("Once upon a time"), (heard, unheard)
            assert unheard and f"{len(unheard)} words not heard" in mark, (unheard, mark)
            if full is not None:
                assert heard + unheard == full
            assert len(heard) <= 4 * cut["playedMs"] / 1000 + 8, (heard, cut["playedMs"])  # eSpeak: ~2.7 words/s
            assert await story.first.locator(".not-heard").evaluate(
                "el => getComputedStyle(el).textDecorationLine") == "line-through"

            # 3. a typed message is answered; its latency row is labelled and settles (no "…" left)
            answers = await page.locator(".bubble.assistant").count()
            await page.fill("#typed", "hello")
            await page.click("#say button")
            await page.wait_for_function(f"() => document.querySelectorAll('.bubble.assistant:not(.partial)').length > {answers}",
                                         timeout=15_000)
            await page.wait_for_function(
                "() => [...document.querySelectorAll('#latency td')].every(td => td.textContent !== '…')", timeout=15_000)
            labels = await page.locator("#latency tr td:nth-child(1)").all_inner_texts()
            assert any("weather" in x and "paris" in x.lower() for x in labels), labels
            assert labels[-1] == "“hello”", labels

            # the conversation panel fills the window and no bubble is squashed to fit it
            layout = await page.evaluate("""() => ({
                panel: document.getElementById('transcript').clientHeight, window: window.innerHeight,
                squashed: [...document.querySelectorAll('.bubble')].filter(b => b.scrollHeight > b.clientHeight + 1).length})""")
            assert layout["squashed"] == 0 and layout["panel"] >= 0.6 * layout["window"], layout

            stats = await page.evaluate("() => window.voxpipe.stats")
            assert stats["flushes"] >= 1 and stats["playedMs"] > 3000 and stats["sentFrames"] > 100
            heard = await page.locator("#latency tr td:nth-child(3)").all_inner_texts()
            assert any(cell.endswith(" ms") for cell in heard), heard
            assert stats["errors"] == [] and problems == [], (stats["errors"], problems)
