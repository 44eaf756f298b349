"""The agent's outgoing audio: a bounded queue of tagged segments that ``step()`` drains one frame a tick.

Each segment is a piece of speech (a sentence, a backchannel) with a tag saying what it is. The
playback reports which segments *started* in each frame, which is how an agent knows what the user
has actually heard. Ways to cut it short:
- ``drop_unstarted()``: forget segments not yet begun (an override at a piece boundary, no word cut);
- ``stop()``: the single interruption primitive: a short fade (no click) and everything else dropped;
  ``interrupt()`` is ``stop()`` that keeps the rest aside, so ``resume()`` can go on if the user
  only said "mm-hm".
"""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np

from ..audio.frames import SAMPLE_RATE, silence


class Playback:
    def __init__(self, max_seconds: float) -> None:
        self.max_samples = int(max_seconds * SAMPLE_RATE)
        self._segments: deque[list] = deque()  # [audio, tag, position]
        self._started: list[Any] = []
        self.played = 0       # samples played since the last reset()
        self.dropped = 0      # samples refused because the buffer was full

    @property
    def active(self) -> bool:
        return bool(self._segments)

    @property
    def buffered(self) -> int:
        return sum(len(a) - pos for a, _, pos in self._segments)

    def push(self, audio: np.ndarray, tag: Any = None) -> None:
        audio = np.asarray(audio, dtype=np.float32)
        room = self.max_samples - self.buffered
        if len(audio) > room:
            self.dropped += len(audio) - max(room, 0)
            audio = audio[:max(room, 0)]
        if len(audio):
            self._segments.append([audio, tag, 0])

    def next_frame(self, n: int) -> np.ndarray:
        out = silence(n)
        filled = 0
        while filled < n and self._segments:
            seg = self._segments[0]
            audio, tag, pos = seg
            if pos == 0 and tag is not None:
                self._started.append(tag)
            take = min(n - filled, len(audio) - pos)
            out[filled:filled + take] = audio[pos:pos + take]
            filled += take
            seg[2] += take
            if seg[2] >= len(audio):
                self._segments.popleft()
        self.played += filled
        return out

    def take_started(self) -> list[Any]:
        """Tags of the segments whose first sample was played since the last call."""
        started, self._started = self._started, []
        return started

    def drop_unstarted(self) -> list[Any]:
        kept = deque(s for s in self._segments if s[2] > 0)
        dropped = [s[1] for s in self._segments if s[2] == 0]
        self._segments = kept
        return dropped

    def stop(self, fade_ms: float = 10.0) -> int:
        """Fade out over ``fade_ms`` and drop the rest; returns the samples never played."""
        rest = np.concatenate([a[pos:] for a, _, pos in self._segments]) if self._segments else np.zeros(0, np.float32)
        fade = min(len(rest), int(fade_ms * SAMPLE_RATE / 1000))
        self._segments.clear()
        if fade:
            self._segments.append([rest[:fade] * np.linspace(1.0, 0.0, fade, dtype=np.float32), None, 0])
        return len(rest) - fade

    def interrupt(self, fade_ms: float = 15.0, restart_under_s: float = 2.0, back_s: float = 0.25) -> list[list]:
        """Yield the floor but keep what was left to say: fade out now, and return the segments that
        ``resume()`` plays again. A short interrupted piece restarts from its beginning (a person
        restarts the phrase); a long one goes on from a quarter second before where it stopped."""
        held = []
        for audio, tag, pos in self._segments:
            if tag is None:
                continue
            if pos and len(audio) > restart_under_s * SAMPLE_RATE:
                pos = max(0, pos - int(back_s * SAMPLE_RATE))
                ramp = np.minimum(1.0, np.arange(len(audio) - pos, dtype=np.float32) / (0.01 * SAMPLE_RATE))
                audio = np.concatenate([np.zeros(pos, np.float32), audio[pos:] * ramp])  # fade back in
            else:
                pos = 0
            held.append([audio, tag, pos])
        self.stop(fade_ms)
        return held

    def resume(self, held: list[list]) -> None:
        for audio, tag, pos in held:
            self._segments.append([audio, tag, pos])

    def reset(self) -> None:
        self._segments.clear()
        self._started = []
        self.played = 0
