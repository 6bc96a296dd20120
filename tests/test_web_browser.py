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

import importlib.util
import logging
import shutil
from pathlib import Path

import anyio
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
#: What the fake microphone says, each followed by the silence (s) before the next.
SPOKEN = (("what is the weather in paris", 5.0), ("tell me a story", 3.0), ("hello", 6.0))


def _missing() -> str | None:
    if not Path(CHROMIUM).exists() and not shutil.which("chromium"):
        return "chromium is not installed (apt-get install chromium)"
    for module, package in (("playwright", "playwright"), ("pocketsphinx", "pocketsphinx"),
                            ("espeakng_loader", "espeakng-loader")):
        if importlib.util.find_spec(module) is None:
            return f"{package} is not installed (pip install {package})"
    return None


pytestmark = [pytest.mark.skipif(_missing() is not None, reason=_missing() or ""), pytest.mark.slow]


def microphone_wav(path: Path, spoken=SPOKEN) -> Path:
    """The utterances (three by default) spoken by eSpeak NG between silences."""
    from processors.files.wavfile import write_wav
    from processors.speech.espeak import synthesize

    parts, rate = [], 22050
    for text, pause_s in spoken:
        speech, rate = synthesize(text)
        parts += [speech, np.zeros(int(pause_s * rate), np.int16)]
    write_wav(path, np.concatenate([np.zeros(rate // 2, np.int16), *parts]), rate)
    return path


def chromium_args(wav: Path) -> list[str]:
    return ["--headless", "--no-sandbox", "--disable-gpu", "--use-fake-ui-for-media-stream",
            "--use-fake-device-for-media-stream", f"--use-file-for-fake-audio-capture={wav}%noloop",
            "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"]


async def items(page) -> dict[str, dict]:
    """The page's assistant items: audio received and played (ms), done, interrupted."""
    return dict(await page.evaluate("() => Array.from(window.voxpipe.state.items.entries())"))


@pytest.mark.anyio
async def test_the_page_talks_with_the_agent(tmp_path, monkeypatch, caplog):
    """Speech in, transcript, tool call and spoken replies out; a barge-in flushes playback at the played position."""
    from playwright.async_api import async_playwright

    from processors.web.server import web_server

    monkeypatch.delenv("VOXPIPE_REALTIME_URL", raising=False)
    monkeypatch.delenv("VOXPIPE_TOKEN", raising=False)
    caplog.set_level(logging.DEBUG, logger="voxpipe.realtime")
    wav = microphone_wav(tmp_path / "microphone.wav")
    ARTIFACTS.mkdir(exist_ok=True)
    problems: list[str] = []
    with anyio.fail_after(150):  # a deadline for a loaded machine, not a timing check
        async with web_server(ROOT / "pipelines" / "web_agent.yaml") as srv, async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=chromium_args(wav))
            page = await browser.new_page()
            try:
                page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
                page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
                await page.goto(srv.url)
                await page.wait_for_function("() => window.voxpipe && window.voxpipe.stats.connected")
                await page.click("#talk")

                # 1. the question is recognised, the tool is called, the answer is shown and played whole
                user = page.locator(".bubble.user:not(.partial) .text")
                await user.first.wait_for(timeout=30_000)
                said = (await user.first.inner_text()).lower()
                assert "weather" in said and "paris" in said, said
                tool = page.locator(".tool.ok")
                await tool.first.wait_for(timeout=15_000)
                call = await tool.first.locator(".tool-head").inner_text()
                result = await tool.first.locator(".tool-result").inner_text()
                assert call.startswith("get_weather(") and "Paris" in call, call
                assert '"temp_c": 18' in result, result
                answer = page.locator(".bubble.assistant").nth(0)
                await page.wait_for_function("() => document.querySelector('.bubble.assistant:not(.partial)')")
                assert "18 degrees" in await answer.inner_text()
                weather_item = await answer.get_attribute("data-item")
                await page.wait_for_function("id => (window.voxpipe.state.items.get(id) || {}).done", arg=weather_item,
                                             timeout=15_000)
                weather = (await items(page))[weather_item]
                assert weather["receivedMs"] > 1000 and not weather["interrupted"]
                assert abs(weather["playedMs"] - weather["receivedMs"]) <= 25, weather

                # 2. the story is interrupted by "hello": playback flushes, the cut is reported, hello is answered
                story = page.locator(".bubble.assistant.interrupted")
                await story.first.wait_for(timeout=20_000)
                assert "Once upon a time" in await story.first.inner_text()
                story_item = await story.first.get_attribute("data-item")
                await page.wait_for_function("id => window.voxpipe.state.items.get(id).done", arg=story_item)
                cut = (await items(page))[story_item]
                assert 0 < cut["playedMs"] < cut["receivedMs"] - 1000, cut
                hello = page.locator(".bubble.assistant:not(.partial):not(.interrupted)").nth(1)
                await hello.wait_for(timeout=15_000)
                assert "voxpipe local model" in await hello.inner_text()

                # the model truncated the story to what the page reported as played
                wanted = f"item {story_item} truncated at {cut['playedMs']} ms"
                with anyio.fail_after(5):
                    while not any(wanted in r.getMessage() for r in caplog.records):
                        await anyio.sleep(0.05)  # the truncation's round trip to the local server
                assert "interrupted after" in await page.evaluate(
                    "el => getComputedStyle(el, '::after').content", await story.first.locator(".text").element_handle())

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
            finally:
                await page.screenshot(path=str(ARTIFACTS / "web_agent.png"), full_page=True)
                await browser.close()
