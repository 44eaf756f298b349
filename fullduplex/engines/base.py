"""The two-stream contract every architecture implements.

Each tick the runtime hands the agent one frame of the user's audio and takes back one frame of the
agent's audio (silence when it has nothing to say). Both streams always flow, so "the agent talked
over the user" or "the agent backchannelled" are facts on one timeline.

Rules for implementers:
- ``step()`` returns within its frame budget: heavy work (STT, LLM, TTS) runs in worker threads
  and comes back through bounded queues (``engines/workers.py``).
- Everything the agent does is an event (``self.emit``) on the conversation clock.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..audio.clock import Clock
from ..config import Config
from ..events import Event, EventLog
from .models import ModelStack


@dataclass
class Session:
    """What a running conversation gives its agent: the clock and the event log."""

    clock: Clock
    events: EventLog
    frame_samples: int


class Agent:
    name = "agent"
    description = ""

    def __init__(self, models: ModelStack, cfg: Config) -> None:
        self.models = models
        self.cfg = cfg
        self.session: Session | None = None

    def prepare(self) -> None:
        """Load the models this agent uses (before the clock starts) and check configured endpoints."""
        self.models.load_all()

    def start(self, session: Session) -> None:
        """Called once before the first frame; per-conversation state is created here."""
        self.session = session

    def step(self, user_frame: np.ndarray, t: float) -> np.ndarray:
        """Consume the user's frame that starts at ``t``; return the agent's next frame, which plays
        from the end of this one (``t + frame``): events about what it plays are stamped there."""
        raise NotImplementedError

    def close(self) -> None:
        """Stop workers; called once after the last frame, also on errors."""

    def workers(self) -> list:
        """The ``Worker``s this agent started (for the queue report: every queue bounded and measured)."""
        return []

    def emit(self, kind: str, turn: int | None = None, t: float | None = None, **data) -> Event:
        assert self.session is not None, "start() first"
        return self.session.events.add(Event(self.session.clock.now() if t is None else t, kind, turn, data))
