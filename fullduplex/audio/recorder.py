"""The recorder: both streams on one timeline, and the event log.

Writes, each atomically (a failed run leaves the previous files intact):
- ``conversation.wav``: stereo, user left, agent right;
- ``input.wav`` / ``output.wav``: the user's and the agent's channel alone, same length: the
  Full-Duplex-Bench layout (``output.wav`` is what its evaluation transcribes);
- ``timeline.jsonl``: one event per line, sorted by time.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..events import Event
from .frames import SAMPLE_RATE
from .io import write_text, write_wav


class Recorder:
    """Both streams of a run, as a device would have played them: a sink of ``runtime.drive``."""

    def __init__(self) -> None:
        self._user: list[np.ndarray] = []
        self._agent: list[np.ndarray] = []

    def frame(self, t: float, user_frame: np.ndarray, playing: np.ndarray, out: np.ndarray) -> None:
        """One step: the user's frame and what the agent played meanwhile (``out`` plays next)."""
        self.add(user_frame, playing)

    def gap(self, n: int) -> None:
        self.add(np.zeros(n, np.float32), np.zeros(n, np.float32))

    def add(self, user_frame: np.ndarray, agent_frame: np.ndarray) -> None:
        assert len(user_frame) == len(agent_frame), "both streams advance by the same frame"
        self._user.append(user_frame)
        self._agent.append(agent_frame)

    @property
    def user(self) -> np.ndarray:
        return np.concatenate(self._user) if self._user else np.zeros(0, np.float32)

    @property
    def agent(self) -> np.ndarray:
        return np.concatenate(self._agent) if self._agent else np.zeros(0, np.float32)

    def write(self, out_dir: str | Path, events: list[Event]) -> dict[str, Path]:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        user, agent = self.user, self.agent
        paths = {name: out / name for name in ("conversation.wav", "input.wav", "output.wav", "timeline.jsonl")}
        write_wav(paths["conversation.wav"], np.stack([user, agent], axis=1), SAMPLE_RATE)
        write_wav(paths["input.wav"], user, SAMPLE_RATE)
        write_wav(paths["output.wav"], agent, SAMPLE_RATE)
        write_text(paths["timeline.jsonl"], "".join(json.dumps(e.to_json()) + "\n" for e in events))
        return paths


def read_timeline(path: str | Path) -> list[Event]:
    with open(path, encoding="utf-8") as f:
        return [Event.from_json(json.loads(line)) for line in f if line.strip()]
