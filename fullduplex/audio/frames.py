"""The conversation's audio format and frame arithmetic.

Everything inside the engine is mono float32 in [-1, 1] at ``SAMPLE_RATE``: the rate every speech
model we ship expects (Silero, Moonshine, Whisper, Smart Turn). Engines whose models want another rate
(Piper at 22.05 kHz, Moshi at 24 kHz) resample at their edge.
"""

from __future__ import annotations

import numpy as np

from ..timebase import SAMPLE_RATE  # defined below every layer: events.py stamps samples with it too


def frame_samples(frame_ms: int) -> int:
    return SAMPLE_RATE * frame_ms // 1000


def silence(n: int) -> np.ndarray:
    return np.zeros(n, dtype=np.float32)


def seconds(n_samples: int) -> float:
    return n_samples / SAMPLE_RATE


def as_frame(audio: np.ndarray, n: int) -> np.ndarray:
    """Pad or cut ``audio`` to exactly ``n`` float32 samples."""
    audio = np.asarray(audio, dtype=np.float32).reshape(-1)
    if len(audio) >= n:
        return audio[:n]
    return np.concatenate([audio, silence(n - len(audio))])


def pop_samples(chunks, out: np.ndarray) -> int:
    """Fill ``out`` from the front of a deque of audio chunks (splitting the last one used);
    returns how many samples it filled (less than ``len(out)`` when the chunks run out)."""
    filled = 0
    while filled < len(out) and chunks:
        chunk = chunks[0]
        take = min(len(out) - filled, len(chunk))
        out[filled:filled + take] = chunk[:take]
        filled += take
        if take == len(chunk):
            chunks.popleft()
        else:
            chunks[0] = chunk[take:]
    return filled


def rms_dbfs(audio: np.ndarray) -> float:
    if len(audio) == 0:
        return -120.0
    rms = float(np.sqrt(np.mean(np.square(audio, dtype=np.float64))))
    return 20.0 * np.log10(max(rms, 1e-6))
