"""The duplex agent's ear: streaming recognition of the user's turn, never on the audio path.

One recogniser stream per user turn (opened at the turn's first speech, with the pre-roll), fed the
user's audio continuously, including while the agent speaks: listening never pauses. Audio goes in
100 ms batches through a bounded queue to the ear's own thread; if the thread falls behind and the
queue is full, a batch is dropped and counted (an event, once per turn) rather than letting latency grow.

Results come back through ``poll()``: the answer to ``refresh()`` (asked at a pause: "what has the
user said up to now?", a transcription of everything heard), and partial transcripts as the recogniser
refreshes them on its own, only where ``SttConfig.partial_interval_s`` asks for it (live captions: the
engine reads words only at pauses, and those refreshes were most of the recogniser's CPU). A turn's
stream is dropped, not finished, when the turn ends: its final transcript would be one more
transcription of the open line that nothing reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from ..audio.frames import SAMPLE_RATE
from ..cputime import CpuAccount
from .workers import JobFailed, Worker

BATCH = SAMPLE_RATE // 10   # samples per job: 100 ms
DEPTH = 40                  # 4 s of audio may wait; more means the recogniser cannot keep up


@dataclass(frozen=True)
class Heard:
    """A transcript of the user's turn ``turn``; ``asked`` if it answers a ``refresh()``."""

    turn: int
    text: str
    asked: bool
    audio_s: float      # seconds of the turn's audio it covers


class Ear:
    def __init__(self, stt: Any, emit: Callable[..., Any], account: CpuAccount | None = None) -> None:
        self._stt = stt             # the shared recogniser: this conversation opens its own streams on it
        self._emit = emit
        self.worker = Worker("ear", depth=DEPTH, account=account, model="stt")
        self.turn: int | None = None
        self._pending = np.zeros(0, np.float32)
        self._stream = None         # touched only by the ear thread
        self._fed = 0               # samples fed to the current stream (ear thread)
        self.dropped = 0

    def open(self, turn: int, preroll: np.ndarray) -> None:
        self.turn = turn
        self._pending = np.zeros(0, np.float32)
        self._submit(lambda cancel: self._start(turn, preroll))

    def push(self, audio: np.ndarray) -> None:
        if self.turn is None:
            return
        self._pending = np.concatenate([self._pending, audio])
        if len(self._pending) >= BATCH:
            chunk, self._pending = self._pending, np.zeros(0, np.float32)
            turn = self.turn
            self._submit(lambda cancel: self._feed(turn, chunk))

    def refresh(self) -> None:
        """Ask for the transcript of everything heard so far (answered through ``poll``)."""
        if self.turn is None:
            return
        chunk, self._pending = self._pending, np.zeros(0, np.float32)
        turn = self.turn
        self._submit(lambda cancel: self._refresh(turn, chunk))

    def close(self) -> None:
        """End the current turn's stream (its result, if any, is not needed)."""
        self.turn = None
        self._submit(lambda cancel: self._end())

    def poll(self) -> list[Heard]:
        out = []
        while (item := self.worker.poll()) is not None:
            if isinstance(item, JobFailed):
                self._emit("error", None, where="ear", message=str(item.error))
            elif item.turn == self.turn:
                out.append(item)
        return out

    def _submit(self, job) -> None:
        if not self.worker.submit(job):
            self.dropped += 1
            self._emit("ear.dropped", self.turn, queue=DEPTH)

    # -- the ear thread ----------------------------------------------------------------------------
    def _start(self, turn: int, preroll: np.ndarray) -> None:
        self._end()
        self._stream, self._stream_turn, self._fed = self._stt.stream(), turn, 0
        return self._feed(turn, preroll)

    def _feed(self, turn: int, chunk: np.ndarray) -> Heard | None:
        if self._stream is None or self._stream_turn != turn or len(chunk) == 0:
            return None
        partial = self._stream.push(chunk)
        self._fed += len(chunk)
        if partial is not None and partial.text:
            return Heard(turn, partial.text, False, self._fed / SAMPLE_RATE)
        return None

    def _refresh(self, turn: int, chunk: np.ndarray) -> Heard | None:
        if self._stream is None or self._stream_turn != turn:
            return None
        if len(chunk):
            self._stream.push(chunk)
            self._fed += len(chunk)
        return Heard(turn, self._stream.partial().text, True, self._fed / SAMPLE_RATE)

    def _end(self) -> None:
        if self._stream is not None:
            try:
                self._stream.close()
            finally:
                self._stream = None
