"""Silero VAD and the speech segmenter, on real speech with hand labels."""

from __future__ import annotations

import numpy as np
import pytest

from fullduplex.audio.io import read_user_audio
from fullduplex.config import VadConfig
from fullduplex.models.vad import CHUNK, SileroVad, SpeechSegmenter, frame_accuracy, read_scv

from .conftest import read_clip


def test_vad_frame_accuracy_on_hand_labels(shared_data):
    """ten-vad test set: 30 real clips, hand-annotated. Silero reaches ~0.9 frame accuracy here."""
    accs = []
    for scv in sorted((shared_data / "vad" / "ten-vad-testset").glob("*.scv")):
        clip, _ = read_user_audio(scv.with_suffix(".wav"))
        accs.append(frame_accuracy(clip, read_scv(scv)))
    assert len(accs) == 30
    assert np.mean(accs) >= 0.85, f"mean frame accuracy {np.mean(accs):.3f}"


def test_push_any_length_equals_whole():
    clip = read_clip("jfk.wav")
    whole = SileroVad().push(clip)
    vad = SileroVad()
    pieces = [p for i in range(0, len(clip), 320) for p in vad.push(clip[i:i + 320])]
    assert len(pieces) == len(whole) == len(clip) // CHUNK
    assert np.allclose(pieces, whole, atol=1e-5)


def test_segmenter_finds_jfk_phrases():
    """JFK's clip: four phrases split by ~1 s pauses (at ~2.2 s, ~4.4 s, ~7.6 s)."""
    clip = read_clip("jfk.wav")
    seg = SpeechSegmenter(VadConfig())
    edges = seg.push(SileroVad().push(clip))
    starts = [e.t for e in edges if e.kind == "speech_start"]
    ends = [e.t for e in edges if e.kind == "speech_end"]
    assert len(starts) == 4 and len(ends) == 4
    assert starts[0] < 0.5 and ends[-1] > 10.0
    for t in (2.3, 4.5, 7.7):
        assert any(e < t < s for e, s in zip(ends, starts[1:])), f"no pause found around {t} s"


@pytest.mark.parametrize("level", [0.0, 0.01])
def test_no_speech_in_silence_or_noise(level):
    noise = np.random.default_rng(0).normal(0, level, 16000 * 3).astype(np.float32)
    seg = SpeechSegmenter(VadConfig())
    assert seg.push(SileroVad().push(noise)) == []
