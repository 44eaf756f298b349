"""Timestamped events on the conversation clock.

Everything an agent does (VAD edges, transcripts, turn decisions, LLM tokens, TTS chunks, playback)
is an ``Event``. ``t`` is seconds on the conversation clock: 0 is the first sample of the user's
stream, and sample ``n`` of either stream is at ``n / SAMPLE_RATE``. Events are written as JSONL by
the recorder; ``turn`` groups the events of one user turn and its answer.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from .timebase import SAMPLE_RATE


@dataclass(frozen=True)
class Event:
    t: float
    kind: str
    turn: int | None = None
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def sample(self) -> int:
        return round(self.t * SAMPLE_RATE)

    def to_json(self) -> dict[str, Any]:
        row: dict[str, Any] = {"t": round(self.t, 6), "sample": self.sample, "kind": self.kind}
        if self.turn is not None:
            row["turn"] = self.turn
        row.update(self.data)
        return row

    @staticmethod
    def from_json(row: dict[str, Any]) -> "Event":
        data = {k: v for k, v in row.items() if k not in ("t", "sample", "kind", "turn")}
        return Event(t=float(row["t"]), kind=row["kind"], turn=row.get("turn"), data=data)


class EventLog:
    """Thread-safe list of events; workers and the audio path both append to it."""

    def __init__(self) -> None:
        self._events: list[Event] = []
        self._lock = threading.Lock()

    def add(self, event: Event) -> Event:
        with self._lock:
            self._events.append(event)
        return event

    def snapshot(self) -> list[Event]:
        with self._lock:
            return sorted(self._events, key=lambda e: e.t)

    def __len__(self) -> int:
        with self._lock:
            return len(self._events)


class ForwardingEventLog(EventLog):
    """An ``EventLog`` that also keeps the events not yet taken by a live reader (a client, a recording)."""

    def __init__(self) -> None:
        super().__init__()
        self._fresh: list[Event] = []

    def add(self, event: Event) -> Event:
        with self._lock:
            self._events.append(event)
            self._fresh.append(event)
        return event

    def take_fresh(self) -> list[Event]:
        with self._lock:
            fresh, self._fresh = self._fresh, []
        return fresh
