"""What the real-browser tests share: Debian chromium under Playwright with a fake microphone.

tests/test_web_browser.py (websocket page), tests/test_live_web.py (the Live agent) and
tests/test_webrtc_browser.py (the same page over WebRTC) each open the browser page of a
``voxpipe serve`` pipeline and drive a spoken conversation. This module holds their common
parts: why the test must skip (:func:`missing`), the fake microphone's WAV
(:func:`microphone_wav`), the browser itself (:func:`chromium_page`: launched, the page
open on the server, its errors collected, a screenshot kept, always closed) and the first
exchange all three check (:func:`check_weather_question`).
"""

from __future__ import annotations

import importlib.util
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"


def missing(*modules: tuple[str, str]) -> str | None:
    """Why a browser test cannot run here (chromium or a Python package absent), else None.

    ``modules`` adds ``(module, how to install it)`` pairs to the ones every browser test needs.
    """
    if not Path(CHROMIUM).exists() and not shutil.which("chromium"):
        return "chromium is not installed (apt-get install chromium)"
    needed = (("playwright", "pip install playwright"), ("pocketsphinx", "pip install pocketsphinx"),
              ("espeakng_loader", "pip install espeakng-loader"), *modules)
    for module, install in needed:
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed ({install})"
    return None


def microphone_wav(path: Path, spoken: tuple[tuple[str, float], ...]) -> Path:
    """``spoken`` utterances said by eSpeak NG, each followed by its pause (s), after 0.5 s of silence."""
    from processors.files.wavfile import write_wav
    from processors.speech.espeak import synthesize

    parts, rate = [], 22050
    for text, pause_s in spoken:
        speech, rate = synthesize(text)
        parts += [speech, np.zeros(int(pause_s * rate), np.int16)]
    write_wav(path, np.concatenate([np.zeros(rate // 2, np.int16), *parts]), rate)
    return path


def chromium_args(wav: Path, *extra: str) -> list[str]:
    """Headless chromium whose microphone plays ``wav`` once, with ``extra`` switches."""
    return ["--headless", "--no-sandbox", "--disable-gpu", "--use-fake-ui-for-media-stream",
            "--use-fake-device-for-media-stream", f"--use-file-for-fake-audio-capture={wav}%noloop",
            "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
            *extra]


@dataclass
class BrowserPage:
    """An open page and the errors it has shown so far (page exceptions, console errors)."""

    page: Any
    problems: list[str] = field(default_factory=list)


@asynccontextmanager
async def chromium_page(url: str, wav: Path, *extra_args: str, screenshot: str | None = None) -> AsyncIterator[BrowserPage]:
    """Launch chromium with ``wav`` as its microphone and open ``url``; close it whatever happens.

    ``screenshot``: a file name in test-artifacts/ for a full-page screenshot taken on the
    way out (also when the test failed, which is when it is most useful).
    """
    from playwright.async_api import async_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=chromium_args(wav, *extra_args))
        try:
            page = await browser.new_page()
            opened = BrowserPage(page)
            page.on("pageerror", lambda exc: opened.problems.append(f"page error: {exc}"))
            page.on("console", lambda m: opened.problems.append(m.text) if m.type == "error" else None)
            await page.goto(url)
            try:
                yield opened
            finally:
                if screenshot:
                    await page.screenshot(path=str(ARTIFACTS / screenshot), full_page=True)
        finally:
            await browser.close()


async def items(page) -> dict[str, dict]:
    """The page's assistant items: audio received and played (ms), done, interrupted."""
    return dict(await page.evaluate("() => Array.from(window.voxpipe.state.items.entries())"))


async def check_weather_question(page, city: str = "Paris") -> None:
    """The first exchange of every browser test: "what is the weather in <city>" recognised,
    the tool card shows get_weather(<city>) and its result (18 degrees for the demo rules)."""
    user = page.locator(".bubble.user:not(.partial) .text")
    await user.first.wait_for(timeout=30_000)
    said = (await user.first.inner_text()).lower()
    assert "weather" in said and city.lower() in said, said
    tool = page.locator(".tool.ok")
    await tool.first.wait_for(timeout=15_000)
    call = await tool.first.locator(".tool-head").inner_text()
    assert call.startswith("get_weather(") and city.lower() in call.lower(), call
    assert '"temp_c": 18' in await tool.first.locator(".tool-result").inner_text()


async def check_answer_played_whole(page) -> dict:
    """The weather answer ("18 degrees") shown, and played by the page to its end (within 25 ms)."""
    answer = page.locator(".bubble.assistant").nth(0)
    await page.wait_for_function("() => document.querySelector('.bubble.assistant:not(.partial)')")
    assert "18 degrees" in await answer.inner_text()
    item = await answer.get_attribute("data-item")
    await page.wait_for_function("id => (window.voxpipe.state.items.get(id) || {}).done", arg=item, timeout=15_000)
    played = (await items(page))[item]
    assert played["receivedMs"] > 1000 and not played["interrupted"], played
    assert abs(played["playedMs"] - played["receivedMs"]) <= 25, played
    return played


async def check_story_cut(page, caplog, timeout_ms: int = 20_000):
    """The story interrupted by the user: the page reports how much it played (over a second
    short of what it received), and the model truncated the item exactly there (its log line).

    Returns the story's bubble locator and the page's record of the item.
    """
    import anyio

    story = page.locator(".bubble.assistant.interrupted")
    await story.first.wait_for(timeout=timeout_ms)
    assert "Once upon a time" in await story.first.inner_text()
    item = await story.first.get_attribute("data-item")
    await page.wait_for_function("id => window.voxpipe.state.items.get(id).done", arg=item)
    cut = (await items(page))[item]
    assert 0 < cut["playedMs"] < cut["receivedMs"] - 1000, cut
    wanted = f"item {item} truncated at {cut['playedMs']} ms"
    with anyio.fail_after(5):
        while not any(wanted in r.getMessage() for r in caplog.records):
            await anyio.sleep(0.05)  # the truncation's round trip to the local server
    return story, cut
