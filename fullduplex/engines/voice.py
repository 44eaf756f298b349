"""The agent's mouth: text pieces -> text-to-speech (a worker thread) -> playback.

Shared by every architecture that speaks with the TTS. Pieces are said with ``say()`` from worker
threads (it waits for room: backpressure on whoever writes the text); ``collect()`` moves finished
audio into playback on the audio path; ``frame()`` plays one frame and reports which pieces began.

Every reply is a *generation*: ``new_generation()`` supersedes whatever was said before, and audio
of an older generation is dropped wherever it is found (queued text is not even synthesised, and a
synthesis in progress is stopped: the shared voice is free for the next reply at once).

A reply's first piece is synthesised at once; the later ones *just in time*: each waits as text until
less than ``AHEAD_S`` of audio is left to play, and at the shared TTS it goes behind other
conversations' urgent requests until less than ``URGENT_S`` is left. So the one Piper session serves
the conversation whose user is waiting first (another call's first words before this call's third
sentence), and the pieces of a reply cut short by a barge-in are never synthesised (issue 17).
"""

from __future__ import annotations

import threading
from collections import deque
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
AHEAD_S = 2.5        # a later piece is synthesised when less than this is left to play: Piper takes ~0.1-0.3 s
                     # a sentence on a loaded 2-core box, and a piece may wait a few others' pieces at the TTS
URGENT_S = 1.0       # ... and waits behind other conversations' urgent requests until less than this is left


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
        self._later: deque[tuple[Piece, Callable[[], bool] | None]] = deque()   # later pieces, not yet needed
        self._later_lock = threading.Lock()    # said from worker threads, released from the audio path
        self._left_s = 0.0                     # audio left to play after this frame (written by the audio path)

    def new_generation(self) -> int:
        self.gen += 1
        with self._later_lock:   # an older generation's later pieces: never synthesised
            self._later = deque(entry for entry in self._later if entry[0].gen >= self.gen)
        running = self._synthesising
        if running is not None and running[0] < self.gen:
            running[1].stop()
        return self.gen

    def say(self, turn: int, gen: int, index: int, text: str, draft_until: Callable[[], bool] | None = None) -> int:
        """Queue one text piece for synthesis (worker threads only). Returns 1 if queued. A draft's piece
        (``draft_until``: whether its floor is taken) waits behind other conversations' answers at the TTS;
        a later piece of a reply with ``AHEAD_S`` or more still to play waits as text (``_release``)."""
        piece = Piece(turn, gen, index, text)
        if index > 0:
            with self._later_lock:
                if self._later or self._left_s >= AHEAD_S:
                    self._later.append((piece, draft_until))   # not needed yet: frame() releases it
                    return 1
            draft_until = self.needed(URGENT_S, draft_until)
        return int(self.speak.submit(lambda cancel: self._synthesize(piece, draft_until), wait_s=30.0))

    def needed(self, within_s: float, draft_until: Callable[[], bool] | None = None) -> Callable[[], bool]:
        """When more of this reply becomes urgent at a shared model (``speculative(until)``): less than
        ``within_s`` left to play (and, in a draft, its floor taken). A later piece at the TTS: ``URGENT_S``;
        the rest of a reply that let another conversation have the LLM: ``AHEAD_S``."""
        return lambda: self._left_s < within_s and (draft_until is None or draft_until())

    def _release(self) -> None:
        """Audio path: hand the next later piece to the TTS when little is left to play and none is in it."""
        if not self._later or self._left_s >= AHEAD_S or not self.speak.idle:
            return
        with self._later_lock:
            while self._later and self._later[0][0].gen != self.gen:
                self._later.popleft()    # superseded: never synthesised
            if not self._later:
                return
            piece, draft_until = self._later[0]
            until = self.needed(URGENT_S, draft_until)
            if self.speak.submit(lambda cancel: self._synthesize(piece, until)):
                self._later.popleft()

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
        self._left_s = seconds(self.playback.buffered)
        self._release()
        return out, self.playback.take_started()
