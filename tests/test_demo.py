"""The newcomer's demo: the demo set that ships in the package, and the page it writes, in real Chromium.

The page test runs the real demo path (``run_demo``: a real agent in real time, Whisper scoring, the
pictures, the stereo conversations) on one scenario of the demo set, then opens ``index.html`` in
headless Chromium and plays its audio.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import soundfile as sf

from fullduplex.bench.demo import DEMO_RECORDINGS, DEMO_SUITE, PER_KIND, pick_demo_set, plain_summary, run_demo
from fullduplex.bench.scenarios import KINDS, load_suite
from fullduplex.config import Config

from .test_browser import ARTIFACTS, CHROMIUM


def test_demo_set_ships_in_the_package_with_its_licences():
    scenarios, errors = load_suite(DEMO_SUITE)
    assert not errors
    for kind in KINDS:
        assert sum(s.kind == kind for s in scenarios) == PER_KIND
    size = sum(p.stat().st_size for p in DEMO_SUITE.rglob("*") if p.is_file())
    assert size < 15e6, "the demo set stays small enough to carry in the repository"
    licences = (DEMO_SUITE / "LICENCES.md").read_text()
    for s in scenarios:
        assert s.source == "real" and len(s.recordings) == 1 and s.recordings[0] in DEMO_RECORDINGS
        meta = json.loads((s.dir / "meta.json").read_text())
        assert meta["licence"].startswith(("MIT", "Apache-2.0")), meta["licence"]
        assert f"`{s.id}`" in licences
    for name in ("pyannote-audio.MIT.txt", "amazon-transcribe-live-call-analytics.Apache-2.0.txt"):
        assert (DEMO_SUITE / "licenses" / name).stat().st_size > 500
    text = " ".join(p.read_text(errors="ignore") for p in DEMO_SUITE.rglob("*.json"))
    assert "BY-NC" not in text and "Full-Duplex-Bench" not in text, "FDB's CC BY-NC data is never shipped"
    # the written rule, applied to the set it picked, picks the same set (it reads only the audio and labels)
    assert [s.id for s in pick_demo_set(scenarios)] == [s.id for s in scenarios]


def test_plain_summary_reads_each_number_in_words():
    summaries = {"duplex": {"n": 8, "answer_onset": 0.9, "pause_tor": 0.0, "during_user": 0.04, "stop_latency": 0.2},
                 "sequential": {"n": 8, "answer_onset": 2.3, "pause_tor": 0.5, "during_user": 0.12,
                                "stop_latency": None}}
    text = plain_summary(summaries)
    assert "On 8 real phone-call scenarios" in text
    assert "duplex      0.90 s" in text and "sequential  2.30 s" in text
    assert "50% of pauses" in text and "12% of the caller's speech" in text
    assert "sequential  –" in text   # a number that could not be measured is shown as missing, not as 0


playwright = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed (make install)")


@pytest.mark.slow
@pytest.mark.skipif(not shutil.which(CHROMIUM), reason=f"no Chromium at {CHROMIUM} (apt-get install chromium)")
def test_demo_page_plays_in_chromium(tmp_path):
    suite = tmp_path / "suite"
    one = next(s for s in load_suite(DEMO_SUITE)[0] if s.kind == "turn_taking")
    shutil.copytree(one.dir, suite / one.id)
    out = tmp_path / "demo"
    result = run_demo(out, ("sequential",), Config(), suite_dir=suite, log=lambda msg: None)
    assert result["summaries"]["all"]["sequential"]["n"] == 1

    wav = out / "listen" / "sequential" / (one.id.replace("/", "__") + ".wav")
    both, rate = sf.read(wav, dtype="float32")
    user, _ = sf.read(one.input_path, dtype="float32")
    agent, _ = sf.read(out / "sequential" / one.id / "output.wav", dtype="float32")
    assert rate == 16000 and both.shape == (len(user), 2)
    assert np.abs(both[:, 0] - user).max() < 1e-3 and np.abs(both[:, 1] - agent).max() < 1e-3
    assert np.abs(agent).max() > 0.05, "the agent answered: its channel is not silent"

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM,
                                    args=["--autoplay-policy=no-user-gesture-required", "--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            problems: list[str] = []
            page.on("pageerror", lambda e: problems.append(str(e)))
            # a media element aborts its metadata request once it has what it needs: not a failure
            page.on("requestfailed", lambda r: "ERR_ABORTED" in (r.failure or "") or problems.append(
                f"failed to load {r.url}: {r.failure}"))
            page.goto((out / "index.html").as_uri())
            page.wait_for_load_state("load")
            images = page.evaluate("[...document.images].map(i => [i.getAttribute('src'), i.complete, i.naturalWidth])")
            page.wait_for_function("[...document.querySelectorAll('audio')].every(a => a.readyState >= 1)",
                                   timeout=10_000)
            durations = page.evaluate("[...document.querySelectorAll('audio')].map(a => a.duration)")
            page.evaluate("document.querySelector('audio').play()")
            page.wait_for_function("document.querySelector('audio').currentTime > 0.3", timeout=10_000)
            table = page.inner_text("table")
            page.screenshot(path=str(ARTIFACTS / "demo-page.png"), full_page=True)
        finally:
            browser.close()
    assert not problems, problems
    assert len(images) == 2 and all(done and width > 300 for _, done, width in images), images
    assert any(src.startswith("plots/sequential/") for src, _, _ in images)
    assert durations == [pytest.approx(len(user) / 16000, abs=0.05)]
    assert "answered after the caller finished" in table and "sequential" in table
