"""The server's Opus (libopus through ctypes, our own Ogg pages) against sphn's, on a real recording."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import sphn

from fullduplex.audio import opus
from fullduplex.audio.frames import SAMPLE_RATE
from fullduplex.audio.opus import OpusError, OpusSettings
from fullduplex.audio.resample import resample
from fullduplex.errors import UserError
from fullduplex.server.ogg import HEADER, OggOpusChecker, OggOpusReader, OggOpusWriter, ogg_crc
from fullduplex.testing.clips import read_clip

from .test_server import ogg_page

RATE = 24_000
DATA = Path(__file__).parent / "data"


def speech() -> np.ndarray:
    return resample(read_clip(DATA, "ljspeech-LJ002-0020.wav"), SAMPLE_RATE, RATE)


def messages(writer, audio: np.ndarray, chunk: int = RATE // 50) -> list[bytes]:
    """What a sender writes, 20 ms at a time (sphn's writer takes exactly that)."""
    return [m for m in (writer.append_pcm(audio[i:i + chunk]) for i in range(0, len(audio) - chunk + 1, chunk)) if m]


def closeness(ref: np.ndarray, out: np.ndarray) -> float:
    """The best normalised correlation of ``out`` with ``ref`` over the codec's possible delays."""
    n = min(len(ref), len(out)) - 4000
    return max(float(np.dot(ref[:n], out[k:k + n]) / (np.linalg.norm(ref[:n]) * np.linalg.norm(out[k:k + n]) + 1e-9))
               for k in range(0, 4000, 4))


def test_our_stream_and_sphns_read_each_other_and_keep_the_speech():
    audio = speech()
    ours = messages(OggOpusWriter(RATE), audio)
    theirs = messages(sphn.OpusStreamWriter(RATE), audio)
    checker = OggOpusChecker()            # our pages are valid Ogg/Opus, checksums included
    for m in ours:
        checker.feed(m)
    assert checker.pages == len(ours) + 1      # the first message carries both header pages
    page = theirs[1]                            # sphn's page checksum, recomputed by ours
    crc = int.from_bytes(page[22:26], "little")
    assert ogg_crc(page[:22] + b"\0\0\0\0" + page[26:]) == crc
    sphn_reader, our_reader = sphn.OpusStreamReader(RATE), OggOpusReader(RATE)
    decoded = {
        "ours by sphn": np.concatenate([np.asarray(sphn_reader.append_bytes(m), np.float32).reshape(-1) for m in ours]),
        "sphn's by ours": np.concatenate([our_reader.append_bytes(m) for m in theirs]),
    }
    for name, out in decoded.items():
        assert abs(len(out) - len(audio)) < RATE * 0.1, name
        assert closeness(audio, out) > 0.85, name


def test_pages_carry_their_packets_across_any_message_boundary():
    audio = speech()[:RATE]
    stream = b"".join(messages(OggOpusWriter(RATE, OpusSettings(frame_ms=20)), audio))
    whole = OggOpusReader(RATE).append_bytes(stream)
    reader = OggOpusReader(RATE)
    pieces = np.concatenate([reader.append_bytes(stream[i:i + 13]) for i in range(0, len(stream), 13)])
    assert len(whole) == len(audio) // (RATE // 50) * (RATE // 50)
    np.testing.assert_array_equal(pieces, whole)


def test_an_undecodable_packet_and_a_missing_library_say_what_happened(monkeypatch):
    stream = OggOpusWriter(RATE).append_pcm(np.zeros(0, np.float32))   # the two header pages
    _, _, _, _, serial, _, _, _ = HEADER.unpack_from(stream)
    bad = bytes([0x03, 0x00])                   # Opus code 3 with no frames: not a packet
    with pytest.raises(OpusError, match="Opus decode"):
        OggOpusReader(RATE).append_bytes(stream + ogg_page([bad], serial=serial, seq=2))
    opus.libopus.cache_clear()
    monkeypatch.setattr(opus, "_candidates", lambda: ["/nonexistent/libopus.so"])
    try:
        with pytest.raises(UserError, match="no libopus found.*pip install av"):
            OggOpusWriter(RATE)
    finally:
        monkeypatch.undo()
        opus.libopus.cache_clear()
