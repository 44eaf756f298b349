"""The agent's outgoing audio: a bounded buffer that ``step()`` drains one frame at a time.

Audio is appended as it is synthesised (a whole reply, or sentence by sentence) and played out at
exactly one frame per tick. ``stop()`` is the single interruption primitive: it fades out over a
few milliseconds (no click) and drops the rest, returning how much audio was never heard.
"""

from __future__ import annotations

import numpy as np

from ..audio.frames import SAMPLE_RATE, silence


class Playback:
    def __init__(self, max_seconds: float) -> None:
        self.max_samples = int(max_seconds * SAMPLE_RATE)
        self._buf = np.zeros(0, dtype=np.float32)
        self.played = 0          # samples played of the current reply
        self.dropped = 0         # samples refused because the buffer was full

    @property
    def active(self) -> bool:
        return len(self._buf) > 0

    def push(self, audio: np.ndarray) -> None:
        room = self.max_samples - len(self._buf)
        audio = np.asarray(audio, dtype=np.float32)
        if len(audio) > room:
            self.dropped += len(audio) - room
            audio = audio[:max(room, 0)]
        self._buf = np.concatenate([self._buf, audio])

    def next_frame(self, n: int) -> np.ndarray:
        if not self.active:
            return silence(n)
        out, self._buf = self._buf[:n], self._buf[n:]
        self.played += len(out)
        return out if len(out) == n else np.concatenate([out, silence(n - len(out))])

    def stop(self, fade_ms: float = 10.0) -> int:
        """Fade out over ``fade_ms`` and drop the rest; returns the samples never played."""
        fade = min(len(self._buf), int(fade_ms * SAMPLE_RATE / 1000))
        unheard = len(self._buf) - fade
        self._buf = self._buf[:fade] * np.linspace(1.0, 0.0, fade, dtype=np.float32)
        return unheard

    def reset(self) -> None:
        self._buf = np.zeros(0, dtype=np.float32)
        self.played = 0
