"""Run an agent over a recording of the user, frame by frame, in real time (or on a virtual clock).

One call of the agent, driven by ``drive`` from the recording and into a ``Recorder``. ``RunResult``
says what happened and whether the agent kept real time: ``late_frames``, the p99 step time, the CPU
per second of audio and every worker queue's bound, deepest fill and refused jobs; ``cpu`` the
conversation's own CPU seconds by model (``cputime.CpuAccount``).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

import numpy as np

from ..audio.clock import Clock, RealClock
from ..audio.frames import seconds
from ..audio.recorder import Recorder
from ..engines.base import Agent
from ..events import Event
from .drive import DriveStats, drive


@dataclass
class RunResult:
    events: list[Event]
    recorder: Recorder
    duration_s: float
    step_ms: list[float] = field(default_factory=list)
    late_frames: int = 0
    cpu_s: float = 0.0
    queues: dict[str, dict] = field(default_factory=dict)   # worker name -> depth, max_depth, refused
    cpu: dict = field(default_factory=dict)   # cpu_accounted_s, cpu_accounted_per_s, cpu_by_model (local agents)

    @property
    def queue_fill(self) -> float:
        """The fullest any worker queue got, as a share of its bound (1.0: it was full at some point)."""
        return max((q["max_depth"] / q["depth"] for q in self.queues.values()), default=0.0)

    @property
    def jobs_refused(self) -> int:
        return sum(q["refused"] for q in self.queues.values())

    def step_percentile(self, q: float) -> float:
        return float(np.percentile(self.step_ms, q)) if self.step_ms else 0.0

    @property
    def cpu_per_audio_s(self) -> float:
        return self.cpu_s / self.duration_s if self.duration_s else 0.0


class ArraySource:
    """The user's stream from a recording in memory; ``progress`` shows the position on a terminal."""

    def __init__(self, audio: np.ndarray, progress: bool = False) -> None:
        self.audio = audio
        self.pos = 0
        self.show = progress and sys.stderr.isatty()

    def read(self, n: int) -> np.ndarray | None:
        if self.pos >= len(self.audio):
            if self.show:
                print("\r" + " " * 30 + "\r", end="", file=sys.stderr, flush=True)
            return None
        frame = self.audio[self.pos:self.pos + n]
        if self.show and (self.pos // n) % 50 == 0:
            print(f"\r  {seconds(self.pos):6.1f} / {seconds(len(self.audio)):.1f} s", end="", file=sys.stderr, flush=True)
        self.pos += n
        return frame

    def discard(self, n: int) -> None:
        self.pos += n


def run_agent(agent: Agent, user_audio: np.ndarray, clock: Clock | None = None, progress: bool = False) -> RunResult:
    """One conversation of ``agent`` over ``user_audio`` (prepared first, before the clock starts)."""
    conversation = agent.conversation(clock=clock or RealClock())
    recorder = Recorder()
    stats: DriveStats = drive(conversation, ArraySource(user_audio, progress), recorder, conversation.clock)
    return RunResult(events=conversation.events.snapshot(), recorder=recorder, duration_s=stats.duration_s,
                     step_ms=list(stats.step_ms), late_frames=stats.late_frames, cpu_s=stats.cpu_s,
                     queues={w.name: w.stats() for w in conversation.workers()},
                     cpu=conversation.cpu_summary(stats.duration_s))
