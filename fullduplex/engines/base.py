"""The two-stream contract every architecture implements: an ``Agent`` and its ``Conversation``s.

- An **agent** is an architecture, its configuration and the loaded models. It holds no state of any
  call: ``prepare()`` loads and warms everything the architecture uses, once (idempotent, thread-safe),
  and ``conversation()`` opens a call on it. Any number of conversations run on one agent at once.
- A **conversation** owns *all* the state of one call. Each tick the driver (``runtime/drive.py``)
  hands it one frame of the user's audio and takes back one frame of the agent's audio (silence when
  it has nothing to say): ``step(frame, t) -> frame``. Both streams always flow, so "the agent talked
  over the user" or "the agent backchannelled" are facts on one timeline.

Rules for implementers (a ``Conversation`` subclass is an architecture):
- ``__init__`` creates every piece of per-call state; ``step()`` never loads or synthesises a model
  and returns within its frame budget: heavy work (STT, LLM, TTS) runs in ``Worker`` threads and comes
  back through bounded queues (``engines/workers.py``).
- ``load(models, cfg)`` (a classmethod) loads what the architecture uses; the agent calls it once.
- Everything the conversation does is an event (``self.emit``) on the conversation clock.
"""

from __future__ import annotations

import dataclasses
import threading
from typing import Any

import numpy as np

from ..audio.clock import Clock, RealClock
from ..audio.frames import frame_samples
from ..config import Config
from ..cputime import CpuAccount
from ..events import Event, EventLog
from .stack import ModelStack
from .workers import Worker


class Conversation:
    name = "agent"
    description = ""

    @classmethod
    def load(cls, models: ModelStack, cfg: Config) -> None:
        """Load (and warm) every model this architecture uses; called once per agent, before any call."""
        models.load_all()

    @classmethod
    def capacity(cls, cfg: Config) -> int | None:
        """How many calls can run at once on one prepared agent (None: no fixed limit). Moshi: its slots."""
        return None

    def __init__(self, agent: "Agent", clock: Clock, events: EventLog, frame_samples: int) -> None:
        self.agent = agent
        self.models = agent.models
        self.cfg = agent.cfg
        self.clock = clock
        self.events = events
        self.frame_samples = frame_samples
        self.closed = False
        self.cpu = CpuAccount()   # CPU seconds by model, charged by the threads working for this call

    def step(self, user_frame: np.ndarray, t: float) -> np.ndarray:
        """Consume the user's frame that starts at ``t``; return the agent's next frame, which plays
        from the end of this one (``t + frame``): events about what it plays are stamped there."""
        raise NotImplementedError

    def workers(self) -> list[Worker]:
        """The ``Worker``s of this call (for the queue report: every queue bounded and measured)."""
        return []

    def close(self) -> None:
        """Stop this call's workers; idempotent. The driver calls it once after the last frame, also on errors."""
        if not self.closed:
            self.closed = True
            self._close()

    def _close(self) -> None:
        for worker in self.workers():
            worker.close()

    def cpu_summary(self, conversation_s: float) -> dict:
        """This call's CPU: seconds by model and per second of conversation (``cputime.CpuAccount``)."""
        return self.cpu.summary(conversation_s)

    def emit(self, kind: str, turn: int | None = None, t: float | None = None, **data) -> Event:
        return self.events.add(Event(self.clock.now() if t is None else t, kind, turn, data))

    def state(self) -> dict[str, Any]:
        """Everything this call holds, in one printable place (simple values and small records;
        models, workers and audio buffers are left out)."""
        out: dict[str, Any] = {}
        for key, value in list(vars(self).items()):   # a copy: another thread may read it mid-call (/api/status)
            if key in ("agent", "models", "cfg", "clock", "events"):
                continue
            if value is None or isinstance(value, (bool, int, float, str)):
                out[key] = value
            elif dataclasses.is_dataclass(value) and not isinstance(value, type):
                out[key] = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)
                            if isinstance(getattr(value, f.name), (bool, int, float, str, type(None)))}
        return out


class Agent:
    """An architecture (a ``Conversation`` type) with its configuration and loaded models."""

    def __init__(self, kind: type[Conversation], models: ModelStack, cfg: Config) -> None:
        self.kind = kind
        self.models = models
        self.cfg = cfg
        self._lock = threading.Lock()
        self._prepared = False
        self._capacity: int | None = None

    @property
    def name(self) -> str:
        return self.kind.name

    @property
    def description(self) -> str:
        return self.kind.description

    @property
    def prepared(self) -> bool:
        return self._prepared

    @property
    def capacity(self) -> int | None:
        """Calls that can run at once (a Moshi batch's slots), known once prepared; None: no fixed limit."""
        return self._capacity

    def prepare(self) -> None:
        """Load and warm every model this agent uses, and check configured endpoints; once (thread-safe)."""
        with self._lock:
            if not self._prepared:
                self.kind.load(self.models, self.cfg)
                self._capacity = self.kind.capacity(self.cfg)
                self._prepared = True

    def conversation(self, clock: Clock | None = None, events: EventLog | None = None,
                     frame_ms: int | None = None) -> Conversation:
        """A new call on this agent. Prepares the agent first if nobody has, so no frame is ever stepped
        on models that are still loading (do it before the clock starts: it may take seconds)."""
        self.prepare()
        n = frame_samples(frame_ms or self.cfg.runtime.frame_ms)
        return self.kind(self, clock or RealClock(), events if events is not None else EventLog(), n)
