"""Run an agent over a user stream, frame by frame, in real time.

Frame ``i`` is handed to the agent when the clock reaches ``i * frame``. The frame the agent returns
is what it plays *next*: it is recorded one frame later on the timeline, as a real device would play
it (the agent cannot answer audio it has not yet received). If a step overruns, later frames are fed late (the
clock does not wait), and the run reports it: ``late_frames`` and the p99 step time say whether
the agent kept real time.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field

import numpy as np

from ..audio.clock import Clock, RealClock
from ..audio.frames import as_frame, frame_samples, seconds
from ..audio.recorder import Recorder
from ..engines.base import Agent, Session
from ..events import Event, EventLog


@dataclass
class RunResult:
    events: list[Event]
    recorder: Recorder
    duration_s: float
    step_ms: list[float] = field(default_factory=list)
    late_frames: int = 0
    cpu_s: float = 0.0
    queues: dict[str, dict] = field(default_factory=dict)   # worker name -> depth, max_depth, refused

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


def run_agent(agent: Agent, user_audio: np.ndarray, frame_ms: int, clock: Clock | None = None,
              progress: bool = False) -> RunResult:
    clock = clock or RealClock()
    n = frame_samples(frame_ms)
    frame_s = seconds(n)
    n_frames = -(-len(user_audio) // n)
    events = EventLog()
    recorder = Recorder()
    step_ms: list[float] = []
    late = 0
    show = progress and sys.stderr.isatty()
    agent.start(Session(clock=clock, events=events, frame_samples=n))
    clock.restart()
    playing = np.zeros(n, np.float32)   # the agent's frame for the current span: returned one step ago
    cpu0 = time.process_time()
    try:
        for i in range(n_frames):
            t = i * frame_s
            clock.sleep_until(t)
            if clock.now() > t + frame_s:
                late += 1
            frame = as_frame(user_audio[i * n:(i + 1) * n], n)
            w0 = time.perf_counter()
            out = as_frame(agent.step(frame, t), n)
            step_ms.append((time.perf_counter() - w0) * 1000)
            recorder.add(frame, playing)
            playing = out
            if show and i % max(1, int(1 / frame_s)) == 0:
                print(f"\r  {t:6.1f} / {n_frames * frame_s:.1f} s", end="", file=sys.stderr, flush=True)
        clock.sleep_until(n_frames * frame_s)
    finally:
        agent.close()
        if show:
            print("\r" + " " * 30 + "\r", end="", file=sys.stderr, flush=True)
    return RunResult(events=events.snapshot(), recorder=recorder, duration_s=n_frames * frame_s,
                     step_ms=step_ms, late_frames=late, cpu_s=time.process_time() - cpu0,
                     queues={w.name: w.stats() for w in agent.workers()})
