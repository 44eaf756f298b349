"""The server's Opus: CPU per second of speech and how far the decoded speech moves, by encoder setting.

    .venv/bin/python benchmarks/opus_codec.py [CLIP.wav ...]

Each clip (default: the agent's own voice, Piper saying two replies, and two real recordings of the
tests' clips) is upsampled to the protocol's 24 kHz and encoded as the server sends it: sphn's
OpusStreamWriter (the first wave's) and libopus through ``audio/opus.py`` at several settings. For each:
encoder and decoder CPU in ms per second of audio (process time, best of 3), kbit/s on the wire (Ogg
pages included), and the decoded audio against the input: log-spectral distance in dB over 20 ms frames
with speech (lower is closer; ~1 dB is transparent for speech, codecs at 16-24 kbit/s give 2-4) and the
SNR after aligning the codec's delay. sphn's own encoder is decoded by sphn. ~20 s.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import sphn  # noqa: E402

from fullduplex.audio.frames import SAMPLE_RATE  # noqa: E402
from fullduplex.audio.io import read_user_audio  # noqa: E402
from fullduplex.audio.opus import OpusSettings  # noqa: E402
from fullduplex.audio.resample import resample  # noqa: E402
from fullduplex.config import TtsConfig  # noqa: E402
from fullduplex.models.tts import load_tts  # noqa: E402
from fullduplex.server.ogg import OggOpusReader, OggOpusWriter  # noqa: E402
from fullduplex.testing.clips import read_clip  # noqa: E402

RATE = 24_000
CHUNK = RATE * 20 // 1000        # the server hands the encoder 20 ms at a time (a message each, as it sends them)
REPLIES = ["Sure, I can help with that. What time works best for you?",
           "The museum opens at nine and closes at five, except on Mondays."]
SETTINGS = [OpusSettings(complexity=10), OpusSettings(complexity=5), OpusSettings(complexity=2),
            OpusSettings(application="voip", complexity=5), OpusSettings(bitrate=16_000)]


def best_cpu(fn, repeat: int = 3):
    best, result = float("inf"), None
    for _ in range(repeat):
        t0 = time.process_time()
        result = fn()
        best = min(best, time.process_time() - t0)
    return best, result


BAND = (RATE // 50) * 8000 // RATE + 1   # rfft bins of a 20 ms frame up to 8 kHz: where speech is understood


def spectral_distance(ref: np.ndarray, out: np.ndarray) -> tuple[float, float]:
    """(log-spectral distance in dB, 0-8 kHz, over frames with speech, SNR in dB), ``out`` aligned to ``ref`` first."""
    n = min(len(ref), len(out)) - 2000
    lags = range(0, 1000)
    lag = max(lags, key=lambda k: float(np.dot(ref[:n], out[k:k + n])))
    ref, out = ref[:n], out[lag:lag + n]
    snr = 10 * np.log10(np.sum(ref ** 2) / max(np.sum((ref - out) ** 2), 1e-12))
    frame = RATE // 50
    win = np.hanning(frame)
    dists = []
    for i in range(0, n - frame, frame):
        a, b = ref[i:i + frame], out[i:i + frame]
        if np.sqrt(np.mean(a ** 2)) < 10 ** (-40 / 20):
            continue
        sa, sb = (10 * np.log10(np.abs(np.fft.rfft(x * win))[:BAND] ** 2 + 1e-12) for x in (a, b))
        floor = sa.max() - 50           # bins 50 dB under the frame's peak are inaudible beside it
        dists.append(np.sqrt(np.mean((np.maximum(sa, floor) - np.maximum(sb, floor)) ** 2)))
    return float(np.mean(dists)), float(snr)


def row(name: str, encode, decode, audio: np.ndarray) -> str:
    seconds = len(audio) / RATE
    enc_s, stream = best_cpu(encode)
    dec_s, out = best_cpu(lambda: decode(stream))
    lsd, snr = spectral_distance(audio, out)
    return (f"  {name:34s} encode {enc_s / seconds * 1e3:5.1f} ms/s  decode {dec_s / seconds * 1e3:4.1f} ms/s  "
            f"{sum(map(len, stream)) * 8 / seconds / 1000:5.1f} kbit/s  LSD {lsd:4.2f} dB  SNR {snr:5.1f} dB")


def ours(settings: OpusSettings):
    def encode(audio):
        w = OggOpusWriter(RATE, settings)
        return [w.append_pcm(audio[i:i + CHUNK]) for i in range(0, len(audio), CHUNK)]

    def decode(messages):
        reader = OggOpusReader(RATE)
        return np.concatenate([reader.append_bytes(m) for m in messages])
    return encode, decode


def sphn_codec():
    def encode(audio):
        w = sphn.OpusStreamWriter(RATE)
        return [w.append_pcm(audio[i:i + CHUNK]) for i in range(0, len(audio) - CHUNK + 1, CHUNK)]

    def decode(messages):
        reader = sphn.OpusStreamReader(RATE)
        return np.concatenate([np.asarray(reader.append_bytes(m), np.float32).reshape(-1) for m in messages if m])
    return encode, decode


def default_clips() -> list[tuple[str, np.ndarray]]:
    """The agent's voice (what the server encodes) and two real recordings of the tests' clips."""
    tts = load_tts(TtsConfig())
    said = np.concatenate([np.concatenate(list(tts.synthesize(t))) for t in REPLIES])
    data = ROOT / "tests" / "data"
    return [("Piper (the agent's voice)", said)] + [
        (name, read_clip(data, name)) for name in ("ljspeech-LJ002-0020.wav", "ami-es2011a-headset-40s-46s.wav")]


def main() -> None:
    sources = [(p, read_user_audio(p)[0]) for p in sys.argv[1:]] or default_clips()
    for name, audio16 in sources:
        audio = resample(np.asarray(audio16, np.float32), SAMPLE_RATE, RATE)
        print(f"{name}: {len(audio) / RATE:.1f} s")
        enc, dec = sphn_codec()
        print(row("sphn OpusStreamWriter (first wave)", lambda: enc(audio), dec, audio))
        for s in SETTINGS:
            enc, dec = ours(s)
            label = f"libopus {s.application} c{s.complexity} {s.bitrate // 1000}k {s.frame_ms} ms"
            print(row(label, lambda: enc(audio), dec, audio))


if __name__ == "__main__":
    main()
