"""Pre-synthesised acknowledgements ("yeah", "right", "uh-huh", ...), ready to play with no latency.

The clips are made once per model stack by the TTS (``BackchannelBank``, shared by every conversation),
trimmed of silence, and played quieter than the agent's turns (a backchannel is not a bid for the
floor). Each conversation picks with its own ``BackchannelPicker``: the same clip never twice in a row.
"""

from __future__ import annotations

import random

import numpy as np

from ..audio.frames import SAMPLE_RATE

TEXTS = ("Yeah.", "Right.", "Okay.", "Uh-huh.", "I see.", "Mm.")
GAIN_DB = -8.0


def _trim(audio: np.ndarray, floor_db: float = -40.0) -> np.ndarray:
    hop = SAMPLE_RATE // 100
    frames = audio[: len(audio) // hop * hop].reshape(-1, hop)
    loud = np.flatnonzero(20 * np.log10(np.sqrt(np.mean(frames ** 2, axis=1)) + 1e-9) > floor_db)
    if len(loud) == 0:
        return audio
    return audio[max(0, loud[0] - 2) * hop: (loud[-1] + 3) * hop]


class BackchannelBank:
    def __init__(self, tts, texts: tuple[str, ...] = TEXTS, gain_db: float = GAIN_DB) -> None:
        gain = 10 ** (gain_db / 20)
        self.clips: list[tuple[str, np.ndarray]] = []
        for text in texts:
            audio = np.concatenate(list(tts.synthesize(text)))
            fade = np.minimum(1.0, np.arange(len(audio)) / 80)            # 5 ms fade-in: no click
            self.clips.append((text, (_trim(audio) * gain * fade[: len(_trim(audio))]).astype(np.float32)))


class BackchannelPicker:
    """One conversation's choice of the next clip (its own random state)."""

    def __init__(self, clips: list[tuple[str, np.ndarray]], seed: int = 0) -> None:
        self.clips = clips
        self._rng = random.Random(seed)
        self._last: int | None = None

    def next(self) -> tuple[str, np.ndarray]:
        choices = [i for i in range(len(self.clips)) if i != self._last] or [0]
        self._last = self._rng.choice(choices)
        return self.clips[self._last]
