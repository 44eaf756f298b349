"""The web client in real headless Chromium: a real WAV as its microphone, real WebCodecs Opus, real
playback, against the real server and agent. Needs Debian's `chromium` and the `playwright` package
(`make install` puts both in); Playwright's own browser download is not used.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from fullduplex.audio.frames import SAMPLE_RATE
from fullduplex.server.testserver import BackgroundServer
from fullduplex.server.config import ServerConfig

from .conftest import read_clip

CHROMIUM = os.environ.get("FULLDUPLEX_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(os.environ.get("FULLDUPLEX_TEST_ARTIFACTS", Path(__file__).resolve().parents[1] / "out" / "test-artifacts"))

playwright = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed (make install)")
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not shutil.which(CHROMIUM), reason=f"no Chromium at {CHROMIUM} (apt-get install chromium)")]


def microphone_wav(path: Path) -> Path:
    """The clip with silence around it: after the file's end Chromium's fake device repeats its last 10 ms."""
    clip = read_clip("ljspeech-LJ002-0020.wav")
    audio = np.concatenate([np.zeros(SAMPLE_RATE // 2, np.float32), clip, np.zeros(12 * SAMPLE_RATE, np.float32)])
    sf.write(path, audio, SAMPLE_RATE, subtype="PCM_16")
    return path


def test_browser_talks_through_the_server(tmp_path, models):
    wav = microphone_wav(tmp_path / "mic.wav")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with BackgroundServer("sequential", models, scfg=ServerConfig(port=0, max_sessions=1)) as srv:
        with playwright.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=[
                "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                f"--use-file-for-fake-audio-capture={wav}%noloop", "--autoplay-policy=no-user-gesture-required",
                "--no-sandbox"])
            try:
                # bypass_csp: Playwright's wait_for_function evaluates strings, which our CSP forbids pages
                context = browser.new_context(bypass_csp=True, viewport={"width": 1100, "height": 760})
                page = context.new_page()
                problems: list[str] = []
                page.on("pageerror", lambda e: problems.append(str(e)))
                page.goto(srv.http + "/?autostart=1")
                page.wait_for_function("window.fd && window.fd.answered >= 1 && window.fd.agentText.length > 0",
                                       timeout=30_000, polling=100)
                page.wait_for_timeout(300)
                fd = page.evaluate("({...window.fd, stats: null})")
                page.screenshot(path=str(ARTIFACTS / "browser-client.png"), full_page=True)

                # the one slot is taken by this page: a second page is told the server is busy
                other = context.new_page()
                other.goto(srv.http + "/?autostart=1")
                other.wait_for_function("window.fd && window.fd.errors.length > 0", timeout=15_000)
                busy = other.evaluate("window.fd.errors")
                other.screenshot(path=str(ARTIFACTS / "browser-busy.png"))
                transcript = page.inner_text("#transcript")
            finally:
                browser.close()
    assert not problems, problems
    assert fd["echoCancellation"] is True, "the microphone was asked for with the browser's echo cancellation"
    assert fd["sentPackets"] > 100, "the page encoded its microphone to Opus and sent it"
    assert "eighteen" in fd["userText"].lower(), "the agent heard the WAV through Chromium's microphone"
    assert fd["agentText"].strip() and fd["agentText"].strip()[:20] in " ".join(transcript.split())
    assert fd["audibleS"] > 0.5, "the agent's voice was decoded and scheduled for playback"
    assert fd["latencies"] and fd["latencies"][0]["response_s"] > 0
    assert any("busy:" in e for e in busy)
    assert (ARTIFACTS / "browser-client.png").stat().st_size > 10_000
