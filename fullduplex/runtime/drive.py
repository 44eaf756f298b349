"""The one frame loop: a conversation, a source of the user's audio, a sink for both streams, a clock.

Frame ``i`` is handed to the conversation when the clock reaches ``i * frame``. The frame it returns is
what the agent plays *next*: the loop hands it to the sink as ``out`` and, one frame later, as
``playing`` beside the user's next frame — the pair a device would record — so no agent can answer
audio it has not yet received. If a step
overruns, later frames are fed late (the clock does not wait) and counted (``late_frames``); with
``max_lag_s`` a loop that falls that far behind skips ahead instead of answering ever later (a server).

Every caller — ``simulate``, ``bench``, a server session, ``talk``, the test harness — runs this loop;
none steps a conversation itself. ``drive`` closes the conversation when the loop ends, also on errors.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from ..audio.clock import Clock
from ..audio.frames import as_frame, seconds
from ..engines.base import Conversation


class Source(Protocol):
    def read(self, n: int) -> np.ndarray | None:
        """The user's next ``n`` samples (silence if none came in time), or None when the stream ended."""

    def discard(self, n: int) -> None:
        """Drop ``n`` samples (the loop skipped ahead)."""


class Sink(Protocol):
    def frame(self, t: float, user: np.ndarray, playing: np.ndarray, out: np.ndarray) -> None:
        """After each step: the user's frame at ``t``, the agent's frame playing during it (returned one
        step ago; silence at first) and the agent's frame just returned, which plays from ``t + frame``."""

    def gap(self, n: int) -> None:
        """The loop skipped ``n`` samples of both streams."""


@dataclass
class DriveStats:
    frames: int = 0
    late_frames: int = 0           # frames handed over more than one frame after their time
    skipped_frames: int = 0        # frames skipped to catch up with the clock (max_lag_s)
    cpu_s: float = 0.0             # CPU time of this process while the loop ran
    frame_s: float = 0.0
    step_ms: deque = field(default_factory=deque, repr=False)   # the time each step() took (the latest ones)

    @property
    def duration_s(self) -> float:
        return self.frames * self.frame_s

    def step_percentile(self, q: float) -> float:
        return float(np.percentile(list(self.step_ms), q)) if self.step_ms else 0.0


def drive(conversation: Conversation, source: Source, sink: Sink, clock: Clock, *,
          stop: threading.Event | None = None, max_lag_s: float | None = None, late_s: float | None = None,
          stats: DriveStats | None = None, keep_steps: int | None = None) -> DriveStats:
    """Run ``conversation`` until the source ends or ``stop`` is set; returns (and fills) ``stats``.

    A frame is late when handed over more than ``late_s`` (default: one frame) after its time; a
    device-paced source (a microphone behind a resampler) runs a steady frame or so behind the clock."""
    stats = stats if stats is not None else DriveStats()
    stats.step_ms = deque(maxlen=keep_steps)
    n = conversation.frame_samples
    frame_s = seconds(n)
    stats.frame_s = frame_s
    cpu0 = time.process_time()
    clock.restart()
    i = 0
    playing = np.zeros(n, np.float32)
    try:
        while stop is None or not stop.is_set():
            t = i * frame_s
            if not clock.sleep_until(t, stop):
                break
            lag = clock.now() - t
            if max_lag_s is not None and lag > max_lag_s:   # overloaded: jump to now
                skip = int(lag / frame_s)
                source.discard(skip * n)
                sink.gap(skip * n)
                stats.skipped_frames += skip
                i += skip
                continue
            if lag > (frame_s if late_s is None else late_s):
                stats.late_frames += 1
            frame = source.read(n)
            if frame is None:   # the stream ended (and the last frame returned has played: it is t)
                break
            frame = as_frame(frame, n)
            w0 = time.perf_counter()
            with conversation.cpu.measure("step"):   # the VAD inside charges itself as "vad"
                out = as_frame(conversation.step(frame, t), n)
            stats.step_ms.append((time.perf_counter() - w0) * 1000)
            stats.frames += 1
            sink.frame(t, frame, playing, out)
            playing = out
            i += 1
    finally:
        conversation.close()
        stats.cpu_s = time.process_time() - cpu0
    return stats
