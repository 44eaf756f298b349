"""A scenario before it is written (``Draft``) and the audio helpers the real and synthetic builders share.

``suite.py`` writes drafts; ``suite_real.py`` and ``suite_synthetic.py`` make them with these helpers.
Everything here is at the conversation's rate (``SAMPLE_RATE``, 16 kHz).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..audio.frames import SAMPLE_RATE

FADE_S = 0.01  # ramps at every cut, so a cut never clicks (a click reads as speech to some VADs)


@dataclass
class Draft:
    """One scenario before it is written: what the real and synthetic builders produce."""
    kind: str
    name: str                 # folder name, unique within <source>/<kind>
    audio: np.ndarray         # the user's channel, float32 at SAMPLE_RATE
    annotation: list[dict]
    meta: dict                # must hold source, origin, licence

    @property
    def source(self) -> str:
        return self.meta["source"]


def n_samples(seconds: float) -> int:
    return int(round(seconds * SAMPLE_RATE))


def silence_s(seconds: float) -> np.ndarray:
    return np.zeros(n_samples(seconds), dtype=np.float32)


def faded(audio: np.ndarray) -> np.ndarray:
    """A copy with FADE_S ramps in and out."""
    out = np.array(audio, dtype=np.float32)
    n = min(n_samples(FADE_S), len(out) // 2)
    if n:
        ramp = np.linspace(0.0, 1.0, n, dtype=np.float32)
        out[:n] *= ramp
        out[-n:] *= ramp[::-1]
    return out


def cut(audio: np.ndarray, start: float, end: float) -> np.ndarray:
    return faded(audio[n_samples(start):n_samples(end)])


def ts(t: float) -> float:
    """Timestamps are written in ms precision: enough for 200 ms histogram bins, and stable text."""
    return round(float(t), 3)
