"""The dev-suite builder: real scenarios cut from the shared recordings, checked on their audio."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from fullduplex.bench import suite as suite_mod
from fullduplex.bench.draft import Draft
from fullduplex.bench.scenarios import KINDS, load_suite
from fullduplex.bench.suite import build_suite, write_scenario
from fullduplex.errors import UserError

FRAME = 800  # 50 ms


def frame_db(audio: np.ndarray) -> np.ndarray:
    n = len(audio) // FRAME
    rms = np.sqrt(np.mean(audio[:n * FRAME].reshape(n, FRAME).astype(np.float64) ** 2, axis=1))
    return 20 * np.log10(np.maximum(rms, 1e-6))


def read(path: Path) -> np.ndarray:
    audio, rate = sf.read(path, dtype="float32")
    assert rate == 16000 and audio.ndim == 1
    return audio


def trailing_silence_s(audio: np.ndarray, below_db: float = -60.0) -> float:
    db = frame_db(audio)
    loud = np.flatnonzero(db > below_db)
    return (len(db) - (loud[-1] + 1 if len(loud) else 0)) * FRAME / 16000


def hashes(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def real_suite(shared_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("suite")
    return build_suite(root, data_dir=shared_data, synthetic=False), root


def test_real_part_has_every_kind_and_loads_cleanly(real_suite):
    summary, root = real_suite
    assert set(summary.counts) == {"real"}
    for kind in KINDS:
        assert summary.counts["real"][kind] >= 5, summary
    scenarios, errors = load_suite(root)
    assert errors == []
    assert len(scenarios) == summary.total() and {s.source for s in scenarios} == {"real"}
    assert sorted(s.id for s in scenarios) == summary.scenarios
    for s in scenarios:
        meta = json.loads((s.dir / "meta.json").read_text())
        assert meta["source"] == "real" and meta["origin"] and meta["licence"]
        assert "NC" not in meta["licence"]


def test_every_conversation_with_a_clean_span_is_used_once_and_capped(real_suite, shared_data):
    """Scenarios come from all the conversations (not a chosen few), each names its recording, a
    recording shipped twice is used once, and no recording gives more than the cap of a kind."""
    from collections import Counter

    from fullduplex.bench.suite_real import MAX_PER_RECORDING
    scenarios, _ = load_suite(real_suite[1])
    assert all(s.recordings for s in scenarios)
    used = {r for s in scenarios for r in s.recordings}
    folders = {d.name for d in (shared_data / "conversations").iterdir() if d.is_dir()}
    # dev00/dev01 are ES2003a/b again; the other five hold no usable span (suite_real's docstring says why).
    assert folders & used == folders - {"ami-pyannote-dev00", "ami-pyannote-dev01", "ami-pyannote-trn01",
                                        "ami-pyannote-trn02", "ami-pyannote-trn07", "ami-pyannote-trn09",
                                        "ami-pyannote-tst00"}
    per = Counter((s.kind, s.recordings) for s in scenarios if s.kind != "interrupt")  # interrupts: not capped
    assert max(per.values()) == MAX_PER_RECORDING, per
    assert sum(n for (kind, rec), n in per.items() if rec == ("phone-auto-repairs-49",)) >= 3 * MAX_PER_RECORDING
    twin = json.loads(next(s.dir for s in scenarios if s.recordings == ("ami-es2003a-first30s",)).joinpath(
        "meta.json").read_text())
    assert twin["same_recording_as"] == ["ami-pyannote-dev00"]


def test_timestamps_lie_inside_the_input(real_suite):
    scenarios, _ = load_suite(real_suite[1])
    for s in scenarios:
        info = sf.info(str(s.input_path))
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
        for item in s.annotation:
            start, end = item["timestamp"]
            assert 0 <= start <= end <= info.duration, (s.id, item)


def test_turn_taking_ends_in_at_least_3_s_of_silence_after_speech(real_suite):
    for s in load_suite(real_suite[1])[0]:
        if s.kind != "turn_taking":
            continue
        audio = read(s.input_path)
        turn_end = s.span[0]
        assert trailing_silence_s(audio) >= 3.0, s.id
        assert frame_db(audio[:int(turn_end * 16000)]).max() > -40, f"{s.id}: no speech before the turn end"
        # Nothing after the turn end but the kept room tone: the other speaker is gone.
        assert trailing_silence_s(audio) >= len(audio) / 16000 - turn_end - 0.35, s.id


def test_pause_falls_on_low_energy_audio_between_speech(real_suite):
    for s in load_suite(real_suite[1])[0]:
        if s.kind != "pause":
            continue
        audio = read(s.input_path)
        start, end = s.span
        a, b = int(start * 16000), int(end * 16000)
        outside = frame_db(np.concatenate([audio[:a], audio[b:]]))
        speech_db = np.percentile(outside, 90)
        pause = audio[a:b]
        pause_db = 20 * np.log10(max(np.sqrt(np.mean(pause.astype(np.float64) ** 2)), 1e-6))
        assert end - start >= 0.2, s.id
        assert pause_db < speech_db - 12, f"{s.id}: pause {pause_db:.0f} dB vs speech {speech_db:.0f} dB"
        # Speech on both sides, within a second: the user is mid-turn, and continues.
        assert frame_db(audio[max(a - 16000, 0):a]).max() > speech_db - 10, s.id
        assert frame_db(audio[b:b + 16000]).max() > speech_db - 10, s.id


def test_a_pause_scenario_holds_one_pause(real_suite):
    """FDB's TOR counts a turn anywhere in the output: an earlier, longer pause in the context would be
    scored in place of the labelled one."""
    from fullduplex.models.vad import speech_spans   # the segmenter the suite labels pauses with
    for s in load_suite(real_suite[1])[0]:
        if s.kind != "pause":
            continue
        spans = speech_spans(read(s.input_path))
        gaps = [b[0] - a[1] for a, b in zip(spans, spans[1:]) if b[0] <= s.span[0] + 0.05]
        assert all(g < 0.3 for g in gaps), f"{s.id}: pauses {gaps} before the labelled one at {s.span}"


def test_interrupt_and_backchannel_shapes(real_suite):
    for s in load_suite(real_suite[1])[0]:
        audio = read(s.input_path)
        if s.kind == "interrupt":
            start, end = s.span
            item = s.annotation[0]
            assert item["context"].strip() and item["interrupt"].strip()
            before = audio[int((start - 3.0) * 16000):int((start - 0.1) * 16000)]  # 50 ms pad kept
            assert frame_db(before).max() < -60, f"{s.id}: no room for the agent's answer"
            assert frame_db(audio[int(start * 16000):int(end * 16000)]).max() > -40, s.id
            assert trailing_silence_s(audio) >= 3.0, s.id
        if s.kind == "backchannel":
            for item in s.annotation:  # the listener's audio is removed, only its timing kept
                bs, be = item["timestamp"]
                assert item["text"] == "[BACKCHANNEL]" and be - bs < 1.5
                assert np.abs(audio[int(bs * 16000) + 160:int(be * 16000) - 160]).max() == 0, s.id


def test_build_is_deterministic_and_prunes_its_leftovers(real_suite, shared_data, tmp_path):
    summary, first = real_suite
    second = tmp_path / "suite"
    build_suite(second, data_dir=shared_data, synthetic=False)
    assert hashes(first) == hashes(second)
    # An interrupted build's temp folder and a scenario from an older build are removed on rebuild;
    # folders the builder did not write are kept.
    kind_dir = second / "real" / "pause"
    (kind_dir / ".jfk-002.24.abc.part").mkdir()
    (kind_dir / "old-scenario").mkdir()
    (kind_dir / "old-scenario" / "meta.json").write_text(json.dumps({"builder": suite_mod.BUILDER}))
    (kind_dir / "mine").mkdir()
    (kind_dir / "mine" / "meta.json").write_text("{}")
    again = build_suite(second, data_dir=shared_data, synthetic=False, kinds=["pause"], limit=2)
    assert again.counts == {"real": {"pause": 2}}
    left = sorted(p.name for p in kind_dir.iterdir())
    assert left == sorted(["mine", *[Path(i).name for i in again.scenarios]])


def test_a_failed_write_leaves_no_half_scenario(tmp_path, monkeypatch):
    draft = Draft("pause", "x", np.zeros(1600, np.float32), [{"text": "[PAUSE]", "timestamp": [0.0, 0.1]}],
                  {"source": "real", "origin": "test", "licence": "none"})
    assert write_scenario(tmp_path, draft) == "real/pause/x"

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(suite_mod.sf, "write", boom)
    with pytest.raises(OSError):
        write_scenario(tmp_path, Draft("pause", "y", draft.audio, draft.annotation, draft.meta))
    with pytest.raises(OSError):  # replacing an existing scenario: the old one stays whole
        write_scenario(tmp_path, draft)
    assert sorted(p.name for p in (tmp_path / "real" / "pause").iterdir()) == ["x"]
    assert sorted(p.name for p in (tmp_path / "real" / "pause" / "x").iterdir()) == ["input.wav", "meta.json",
                                                                                      "pause.json"]


def test_licences_are_copied_but_never_the_non_commercial_ones(real_suite):
    root = real_suite[1]
    names = sorted(p.name for p in (root / "licenses").iterdir())
    assert names == ["amazon-transcribe-live-call-analytics.Apache-2.0.txt", "lhotse.Apache-2.0.txt",
                     "openai-whisper.MIT.txt", "pyannote-audio.MIT.txt"]
    assert "CC BY 4.0" in (root / "LICENCES.md").read_text()
    assert not any("Full-Duplex-Bench" in p.name or "fdb" in p.name.lower() for p in root.rglob("*"))


def test_missing_data_dir_says_to_pass_data(tmp_path):
    with pytest.raises(UserError) as err:
        build_suite(tmp_path / "suite", data_dir=tmp_path / "nowhere")
    message = str(err.value)
    assert "--data" in message and "\n" not in message
    assert not (tmp_path / "suite").exists()


def test_synthetic_turn_taking_is_deterministic(tmp_path):
    """Two builds of one synthetic turn (one short Piper utterance each), byte for byte. (The synthetic
    part alone: the real part's determinism is the test above.)"""
    pytest.importorskip("piper")
    from fullduplex.bench.suite_synthetic import synthetic_drafts
    runs = []
    for name in ("a", "b"):
        written = [write_scenario(tmp_path / name, d) for d in synthetic_drafts(3, ["turn_taking"], limit=1)]
        assert len(written) == 1 and written[0].startswith("synthetic/turn_taking/")
        runs.append(hashes(tmp_path / name))
    assert runs[0] == runs[1]
    (scenario,) = load_suite(tmp_path / "a")[0]
    audio = read(scenario.input_path)
    turn_end = scenario.span[0]
    assert frame_db(audio[:int(turn_end * 16000)]).max() > -30
    assert trailing_silence_s(audio) >= len(audio) / 16000 - turn_end - 0.06


def test_overlap_scenarios_leave_room_for_the_answer_then_overlap_it(real_suite):
    """FDB v1.5's kinds (built with the rest, so no extra build): the user's turn, 2.5 s of silence after
    it, the overlap, then silence; background speech from another recording, below the user."""
    from fullduplex.bench.scenarios import OVERLAP_KINDS
    from fullduplex.bench.suite_overlap import OVERLAP_AFTER_S, speech_level_db
    summary, root = real_suite
    for kind in OVERLAP_KINDS:
        assert summary.counts["real"][kind] >= 4, summary
    for s in load_suite(root)[0]:
        if s.kind not in OVERLAP_KINDS:
            continue
        audio = read(s.input_path)
        (item,) = s.annotation
        t0, t1 = item["turn"]
        start, end = s.span
        assert start - t1 == pytest.approx(OVERLAP_AFTER_S, abs=0.01), s.id
        assert frame_db(audio[int(t0 * 16000):int(t1 * 16000)]).max() > -40, s.id
        assert np.abs(audio[int((t1 + 0.06) * 16000):int((start - 0.06) * 16000)]).max() == 0, s.id
        assert trailing_silence_s(audio) >= 5.9, s.id
        meta = json.loads((s.dir / "meta.json").read_text())
        if s.kind == "overlap_background":
            assert len(s.recordings) == 2 and "; background speech: " in meta["licence"]
            below = speech_level_db(audio[:int(t1 * 16000)]) - speech_level_db(audio[int(start * 16000):])
            assert below == pytest.approx(item["level_db"], abs=2.0), s.id
        else:
            assert s.recordings == (meta["user_recording"],) or s.kind == "overlap_interrupt"
        if s.kind == "overlap_side_talk":
            assert not item["text"].rstrip().endswith("?") and len(item["text"].split()) >= 3
        if s.kind == "overlap_backchannel":
            assert end - start <= 1.0 + 0.01, s.id
