"""Run a conversation on a virtual clock, deterministically: the test harness the suite uses.

``SettledClock`` is a virtual clock that, before each frame, waits until the conversation's workers
are idle (all of them, or all but some: a test that holds a worker back on purpose names it). With
instant fakes every answer is then in by the next frame, so conversation time measures the agent's
own decisions and nothing else. The loop is ``runtime.drive``'s, as everywhere.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..audio.clock import VirtualClock
from ..audio.frames import SAMPLE_RATE
from ..audio.recorder import Recorder
from ..config import Config
from ..engines import Agent, Conversation, make_agent
from ..events import Event
from ..runtime.drive import DriveStats, drive

SETTLE_LIMIT_S = 5.0   # a worker still busy after this is a bug in the test (or a deadlock): go on


def wait_idle(*workers, limit_s: float = SETTLE_LIMIT_S) -> None:
    deadline = time.monotonic() + limit_s
    while not all(w.idle for w in workers) and time.monotonic() < deadline:
        time.sleep(0.0005)


class SettledClock(VirtualClock):
    def __init__(self, skip: tuple[str, ...] = ()) -> None:
        super().__init__()
        self.skip = skip                 # worker names not waited for
        self.conversation: Conversation | None = None

    def watch(self, conversation: Conversation) -> None:
        self.conversation = conversation

    def sleep_until(self, t: float, stop=None) -> bool:
        if self.conversation is not None:
            wait_idle(*(w for w in self.conversation.workers() if w.name not in self.skip))
        return super().sleep_until(t, stop)


class ScriptedSource:
    """Silence (the scripted VAD decides what is speech) or ``audio``, for ``seconds``; ``actions``
    {t: fn(conversation)} run just before the frame at ``t`` is handed over (change what a fake will
    say, open a gate)."""

    def __init__(self, seconds: float, actions: dict[float, Callable[[Conversation], None]] | None = None,
                 audio: np.ndarray | None = None) -> None:
        self.n_total = int(round(seconds * SAMPLE_RATE))
        self.audio = audio
        self.actions = dict(actions or {})
        self.pos = 0
        self.conversation: Conversation | None = None

    def read(self, n: int) -> np.ndarray | None:
        if self.pos >= self.n_total:
            return None
        t = self.pos / SAMPLE_RATE
        for at in [a for a in self.actions if abs(a - t) < 1e-6]:
            self.actions.pop(at)(self.conversation)
        frame = (self.audio[self.pos:self.pos + n] if self.audio is not None else np.zeros(n, np.float32))
        self.pos += n
        return frame

    def discard(self, n: int) -> None:
        self.pos += n


@dataclass
class ScriptedRun:
    conversation: Conversation
    events: list[Event]
    output: np.ndarray           # the agent's channel as recorded (one frame late, as a device plays it)
    stats: DriveStats            # the loop's counters (frames, step times)

    def kinds(self, kind: str) -> list[Event]:
        return [e for e in self.events if e.kind == kind]


def run_scripted(agent: Agent | str, stack=None, seconds: float = 5.0,
                 actions: dict[float, Callable[[Conversation], None]] | None = None, skip: tuple[str, ...] = (),
                 cfg: Config | None = None, audio: np.ndarray | None = None) -> ScriptedRun:
    """One conversation of ``agent`` (an Agent, or an architecture name on ``stack``) on a settled clock."""
    if isinstance(agent, str):
        agent = make_agent(agent, stack, cfg or Config())
    clock = SettledClock(skip)
    conversation = agent.conversation(clock=clock)
    clock.watch(conversation)
    source = ScriptedSource(seconds, actions, audio)
    source.conversation = conversation
    recorder = Recorder()
    stats = drive(conversation, source, recorder, clock)
    return ScriptedRun(conversation, conversation.events.snapshot(), recorder.agent, stats)
