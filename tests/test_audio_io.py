"""Reading user audio: conversions it must do, and bad input it must refuse with a clear message."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from fullduplex.audio.io import read_user_audio, write_wav
from fullduplex.errors import UserError

from .conftest import DATA


def test_reads_real_clip_unchanged():
    audio, info = read_user_audio(DATA / "jfk.wav")
    assert info.sample_rate == 16000 and info.channels == 1 and info.conversion_note() is None
    assert abs(len(audio) / 16000 - 11.0) < 0.01 and audio.dtype == np.float32


def test_converts_rate_and_picks_channel(tmp_path):
    speech, _ = sf.read(DATA / "ljspeech-LJ002-0020.wav", dtype="float32")
    import soxr
    up = soxr.resample(speech, 16000, 44100)
    stereo = np.stack([np.zeros_like(up), up], axis=1)
    path = tmp_path / "stereo44k.wav"
    sf.write(path, stereo, 44100)
    right, info = read_user_audio(path, channel=1)
    assert info.channels == 2 and info.channel_used == 1
    assert "channel 1 of 2" in info.conversion_note() and "44100" in info.conversion_note()
    assert abs(len(right) - len(speech)) <= 2
    assert np.corrcoef(right[:len(speech) - 2], speech[:len(speech) - 2])[0, 1] > 0.99
    left, _ = read_user_audio(path, channel=0)
    assert np.abs(left).max() < 1e-3
    mixed, info = read_user_audio(path)
    assert info.channel_used is None and "mixed 2 channels" in info.conversion_note()


@pytest.mark.parametrize("case, expected", [
    ("missing", "no such file"),
    ("empty", "is empty"),
    ("text", "not a readable audio file"),
    ("truncated", "truncated"),
    ("folder", "is a folder"),
    ("no_samples", "no audio samples"),
    ("low_rate", "too low for speech"),
])
def test_bad_input_is_refused_clearly(tmp_path, case, expected):
    path = tmp_path / "input.wav"
    if case == "empty":
        path.write_bytes(b"")
    elif case == "text":
        path.write_text("this is not audio\n" * 10)
    elif case == "truncated":
        raw = (DATA / "jfk.wav").read_bytes()
        path.write_bytes(raw[: len(raw) // 3])
    elif case == "folder":
        path.mkdir()
    elif case == "no_samples":
        sf.write(path, np.zeros(0, np.float32), 16000)
    elif case == "low_rate":
        sf.write(path, np.zeros(4000, np.float32), 4000)
    with pytest.raises(UserError, match=expected) as err:
        read_user_audio(path)
    assert "\n" not in str(err.value) and str(path.name) in str(err.value)


def test_channel_out_of_range(tmp_path):
    with pytest.raises(UserError, match=r"--channel must be 0..0"):
        read_user_audio(DATA / "jfk.wav", channel=1)


def test_failed_write_keeps_previous_file(tmp_path):
    path = tmp_path / "out.wav"
    write_wav(path, np.zeros(160, np.float32))
    before = path.read_bytes()
    with pytest.raises(Exception):
        write_wav(path, np.zeros((10, 2, 3), np.float32))  # not audio: soundfile refuses
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["out.wav"], "no temporary file left behind"
