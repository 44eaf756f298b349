"""The agent's mouth: text pieces -> text-to-speech (a worker thread) -> playback.

Shared by every architecture that speaks with the TTS. Pieces are said with ``say()`` from worker
threads (it waits for room: backpressure on whoever writes the text); ``collect()`` moves finished
audio into playback on the audio path; ``frame()`` plays one frame and reports which pieces began.

Every reply is a *generation*: ``new_generation()`` supersedes whatever was said before, and audio
of an older generation is dropped wherever it is found (queued text is not even synthesised, and a
synthesis in progress is stopped: the shared voice is free for the next reply at once).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from ..audio.frames import seconds
from ..cputime import CpuAccount
from ..models.priority import speculative
from ..models.tts import Stop
from .playback import Playback
from .workers import JobFailed, Worker

SPEAK_DEPTH = 8      # text pieces waiting for TTS, and synthesised pieces waiting for playback


@dataclass
class Piece:
    """A unit of the agent's speech: its text and, once synthesised, its audio."""

    turn: int
    gen: int
    index: int
    text: str
    audio: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))


class Voice:
    def __init__(self, name: str, tts: Any, emit: Callable[..., Any], max_reply_s: float,
                 account: CpuAccount | None = None) -> None:
        self._tts = tts                  # the shared TTS model (loaded by the agent)
        self._emit = emit
        self.speak = Worker(f"{name}-speak", depth=SPEAK_DEPTH, account=account, model="tts")
        self.playback = Playback(max_reply_s)
        self.gen = 0
        self._synthesising: tuple[int, Stop] | None = None   # (generation, its stop) of the piece in the TTS now

    def new_generation(self) -> int:
        self.gen += 1
        running = self._synthesising
        if running is not None and running[0] < self.gen:
            running[1].stop()
        return self.gen

    def say(self, turn: int, gen: int, index: int, text: str, draft_until: Callable[[], bool] | None = None) -> int:
        """Queue one text piece for synthesis (worker threads only). Returns 1 if queued. A draft's piece
        (``draft_until``: whether its floor is taken) waits behind other conversations' answers at the TTS."""
        piece = Piece(turn, gen, index, text)
        return int(self.speak.submit(lambda cancel: self._synthesize(piece, draft_until), wait_s=30.0))

    def _synthesize(self, piece: Piece, draft_until: Callable[[], bool] | None) -> Piece | None:
        if piece.gen != self.gen:
            return None  # superseded before we got to it: do not spend the CPU
        chunks, stop = [], Stop()
        self._synthesising = (piece.gen, stop)
        if piece.gen != self.gen:
            return None  # superseded just now: new_generation() may not have seen this piece
        try:
            with speculative(draft_until):
                for chunk in self._tts.synthesize(piece.text, stop):
                    if piece.index == 0 and not chunks:
                        self._emit("tts.first_audio", piece.turn)
                    chunks.append(chunk)
        finally:
            self._synthesising = None
        if stop.stopped:
            self._emit("tts.stopped", piece.turn, index=piece.index, gen=piece.gen)
            return None
        piece.audio = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
        self._emit("tts.piece", piece.turn, index=piece.index, text=piece.text,
                   audio_s=round(seconds(len(piece.audio)), 3))
        return piece

    def collect(self, route: Callable[[Piece], Any] | None = None) -> int:
        """Move synthesised pieces of the current generation into playback (or hand each to ``route``,
        for an agent that holds some back); returns how many."""
        received = 0
        while (piece := self.speak.poll()) is not None:
            if isinstance(piece, JobFailed):
                self._emit("error", None, where="speak", message=str(piece.error))
                continue
            if piece.gen != self.gen:
                continue  # superseded: an override, a barge-in or a new turn
            received += 1
            if route is not None:
                route(piece)
            else:
                self.playback.push(piece.audio, piece)
        return received

    def frame(self, n: int) -> tuple[np.ndarray, list[Any]]:
        out = self.playback.next_frame(n)
        return out, self.playback.take_started()
